"""Novelty search against NES on the hard maze: who escapes the trap and reaches the goal?

    python benchmarks/novelty.py                  # 4 algorithms x 5 seeds, about 13 minutes
    python benchmarks/novelty.py --seeds 0 --generations 20 --jobs 1    # a smoke test

``neuroes/DeceptiveMaze-v0`` rewards getting closer to a goal behind a U-shaped trap; following
the reward leads into the trap's far wall. Every algorithm trains from each seed with the same
budget (``--generations``, ``--popsize``), ``--jobs`` runs at a time; a run reaches the goal
when its mean policy ends within ``--radius`` of it on average over the 10 evaluation episodes
and then over 100 fresh ones (the trainer's ``--target-return``, the start's distance minus the
radius). Prints, per algorithm, the seeds that reached the goal and the median generations they
took, and writes one figure with every algorithm's seed-0 archive of mean-policy positions
(NES: its last population's final positions) to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from neuroes import Normal, checkpoint  # noqa: E402
from neuroes.envs import DECEPTIVE_MAZE_ID  # noqa: E402
from neuroes.envs.maze import GOAL, HARD_MAZE, HARD_MAZE_HALF_SIZE  # noqa: E402
from neuroes.rollout import Evaluator  # noqa: E402
from neuroes.train import train  # noqa: E402

ALGORITHMS = ("nes", "ns", "nsr", "nsra")


def run(args: argparse.Namespace, folder: Path, algo: str, seed: int) -> tuple:
    """One training run: (reached the goal, generations, seconds, run folder)."""
    summary = train(
        DECEPTIVE_MAZE_ID, algo=algo, seed=seed, generations=args.generations,
        popsize=args.popsize, target_return=math.hypot(*GOAL) - args.radius, progress=False,
        scatter_every=10**9, logdir=str(folder / f"{algo}-{seed}"),
    )  # fmt: skip
    return summary.solved, summary.generations, summary.wall_time, summary.run_dir


def positions(run_dir: Path) -> np.ndarray:
    """The run's archive of mean-policy positions; for NES, the final positions of 100 members
    drawn from its last search distribution."""
    saved = checkpoint.read(run_dir / "checkpoint.pt")
    state = saved["algorithm"]
    if "archive" in state:
        return np.asarray(state["archive"])
    p = Normal(state["mu"], float(state["log_sigma"].exp()), generator=0)
    evaluator = Evaluator(DECEPTIVE_MAZE_ID, saved["policy"], normalizer=saved["normalizer"])
    return evaluator.evaluate(p.sample(100), seed=0).behaviors


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    cli.add_argument("--generations", type=int, default=1500, help="budget per run")
    cli.add_argument("--popsize", type=int, default=100)
    cli.add_argument("--radius", type=float, default=0.2, help="goal radius")
    cli.add_argument("--jobs", type=int, default=2, help="runs at a time (one per core)")
    cli.add_argument("--out", default="benchmarks/results", help="folder of the figure")
    args = cli.parse_args(argv)
    print(f"{DECEPTIVE_MAZE_ID}: goal {GOAL}, radius {args.radius}, {args.generations} "
          f"generations of {args.popsize}, seeds {args.seeds}")  # fmt: skip
    print(
        f"{'algorithm':>9} {'reached':>8} {'median generations':>19} {'longest run':>12}  per seed"
    )
    archives = {}
    pool = ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"))
    with tempfile.TemporaryDirectory() as folder, pool:
        one_run = functools.partial(run, args, Path(folder))
        for algo in ALGORITHMS:
            results = list(pool.map(one_run, [algo] * len(args.seeds), args.seeds))
            reached = [generations for solved, generations, *_ in results if solved]
            median = f"{statistics.median(reached):.0f}" if reached else "-"
            longest = f"{max(seconds for *_, seconds, _ in results):.0f} s"
            seeds = " ".join(f"{g}{'*' if s else ''}" for s, g, *_ in results)
            print(f"{algo:>9} {len(reached)}/{len(results):<6} {median:>19} {longest:>12}  {seeds}")
            archives[algo] = positions(results[0][-1])
    print("* reached the goal (generations it took); otherwise the budget")
    figure, axes = plt.subplots(1, len(ALGORITHMS), figsize=(4 * len(ALGORITHMS), 4))
    for ax, (algo, points) in zip(axes, archives.items(), strict=True):
        for xmin, ymin, xmax, ymax in HARD_MAZE:
            ax.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, color="0.3"))
        ax.scatter(points[:, 0], points[:, 1], s=6)
        ax.scatter(*GOAL, marker="*", s=150, color="tab:red")
        h = HARD_MAZE_HALF_SIZE
        ax.set(xlim=(-h, h), ylim=(-h, h), aspect="equal", title=f"{algo}, seed {args.seeds[0]}")
    figure.tight_layout()
    out = Path(args.out) / "novelty_hard_maze.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
