"""Draw learning curves of runs into a PNG: the mean policy's evaluation return.

python -m neuroes.plot runs/CartPole-v1-nes-... --out curves.png
python -m neuroes.plot runs/seed-* --x env_steps     # several runs: median and range

Each run folder's scalars are read from its ``metrics.jsonl`` (one JSON object per
generation), or from its TensorBoard event files when it has none.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neuroes.cli import Parser

RETURN = "eval/return"
AXES = {  # --x: (the scalar's key, the axis label)
    "generation": ("generation", "generation"),
    "env_steps": ("time/env_steps", "environment steps"),
    "wall": ("time/wall", "wall time (s)"),
}


def curve(run_dir: str | Path, x: str = "generation") -> tuple[np.ndarray, np.ndarray]:
    """The run's ``eval/return`` (y) against ``x`` (a key of ``AXES``), one point per evaluated
    generation; a one-line ValueError for a folder without them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {str(run_dir)!r} does not exist")
    key = AXES[x][0]
    points = [(row[key], row[RETURN]) for row in _rows(run_dir) if RETURN in row and key in row]
    if not points:
        raise ValueError(
            f"{str(run_dir)!r} is not a run folder: it has no {RETURN} and {key} in metrics.jsonl "
            f"or TensorBoard event files"
        )
    xs, ys = np.array(sorted(points), dtype=np.float64).T
    return xs, ys


def _rows(run_dir: Path) -> list[dict]:
    """One dict per generation: ``generation`` and the scalars by tag."""
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every one
    events.Reload()
    rows: dict[int, dict] = {}
    tags = {RETURN, *(key for key, _ in AXES.values())} & set(events.Tags()["scalars"])
    for tag in tags:
        for event in events.Scalars(tag):
            rows.setdefault(event.step, {"generation": event.step})[tag] = event.value
    return [rows[generation] for generation in sorted(rows)]


def band(
    curves: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, median, min, max) across curves, on every x of any curve within the range all cover;
    each curve is interpolated linearly between its own points."""
    start, end = max(xs[0] for xs, _ in curves), min(xs[-1] for xs, _ in curves)
    grid = np.unique(np.concatenate([xs for xs, _ in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    if not len(grid):
        raise ValueError("the runs share no range of the x axis")
    ys = np.stack([np.interp(grid, xs, values) for xs, values in curves])
    return grid, np.median(ys, 0), ys.min(0), ys.max(0)


def plot(run_dirs: list[str | Path], out: str | Path = "curves.png", x: str = "generation") -> Path:
    """Draw the runs' learning curves against ``x`` (generation, env_steps or wall) into
    ``out``: the curve of one run, or the median and range of several. Returns ``out``."""
    if x not in AXES:
        raise ValueError(f"x must be one of {', '.join(AXES)}, got {x!r}")
    if not run_dirs:
        raise ValueError("give at least one run folder")
    grid, median, low, high = band([curve(run_dir, x) for run_dir in run_dirs])
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    if len(run_dirs) == 1:
        axes.plot(grid, median, label=Path(run_dirs[0]).name)
    else:
        axes.plot(grid, median, label=f"median of {len(run_dirs)} runs")
        axes.fill_between(grid, low, high, alpha=0.3, label="range")
    axes.set_xlabel(AXES[x][1])
    axes.set_ylabel("evaluation return (mean policy)")
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    cli = Parser(prog="python -m neuroes.plot", description=__doc__.splitlines()[0])
    cli.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by training"
    )
    cli.add_argument("--out", default="curves.png", help="the PNG to write (default: curves.png)")
    cli.add_argument(
        "--x", choices=list(AXES), default="generation", help="the x axis (default: generation)"
    )
    args = cli.parse_args(argv)
    try:
        out = plot(args.run_dirs, args.out, args.x)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
