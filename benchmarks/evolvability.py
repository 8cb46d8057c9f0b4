"""Evolvability ES against NES: where do the samples of each trained distribution end?

    python benchmarks/evolvability.py                     # PointMaze, seeds 0 1 2: ~3 minutes
    python benchmarks/evolvability.py --protocol ant      # Ant-v5: 20-30 minutes per run
    python benchmarks/evolvability.py --protocol ant --popsize 100 --minutes 30  # first protocol
    python benchmarks/evolvability.py --protocol ant --popsize 100 --minutes 45 --reuse
    python benchmarks/evolvability.py --protocol ant --algos maxvar --popsize 1000  # ~41 min/run
    python benchmarks/evolvability.py --seeds 0 --generations 2 --samples 40   # a smoke run

Each algorithm (NES, MaxVar, MaxEnt) trains from each seed under one protocol (``PROTOCOLS``).
Then ``--samples`` members drawn from its final search distribution play one episode each and
their final positions give:

- distance: the median and 90th percentile of the final distance from the start;
- coverage: the number of 8 direction sectors around the start that each hold at least 5% of
  the samples farther than R. R is fixed before training, from a measured baseline: a factor
  of the protocol times the 90th percentile of the distances of as many samples of the
  *initial* distribution (first seed): 3 on Ant; 1.5 on PointMaze, whose initial policies
  already travel half of the reachable distance (3 x would put R beyond reach).

Figures in ``--out``: the final positions of every algorithm's samples on one set of axes
(first seed), and the median distance of each generation's population over training
(``behavior/distance_median`` of ``metrics.jsonl``, first seed).

Protocols, following Gajewski et al. (2019) where the budget allows: behaviors are final (x, y)
positions, sigma 0.02 (Ant), Adam, L2 0.005 (OpenAI-ES's ``l2coeff``), tanh MLP, no reward for
MaxVar and MaxEnt; NES maximizes the environment's reward.

- ``pointmaze``: ``neuroes/PointMaze-v0`` (4 x 4 arena, a wall ahead of the start) with
  episodes cut at 30 steps of at most 0.05: a member can travel 1.5, inside the arena, so a
  spread of final positions is a spread and not a pile-up in the corners (100-step episodes
  reach 5 units). Population 100, 60 generations, sigma 0.1 (the environment's preset).
- ``ant``: Ant-v5, population 400 for 60 generations, at most 30 minutes of training per run on
  2 cores. The arithmetic: the batched MuJoCo path plays about 5k Ant steps a second on 2 idle
  cores here (the seed-0 NES run of the first protocol: 9.5M steps in 30 minutes), and a
  generation of 400 members with 250-step episodes plays at most 100k steps (and 10 evaluation
  episodes): 60 generations are at most 6M steps, 20 minutes at that speed (14 to 26 minutes
  measured, the longer ones beside other jobs), which leaves room within 30 minutes for a
  slower machine. Why 400 and not 100 members for about 400 generations (the first protocol,
  ``--popsize 100 --minutes 30``): at 100, MaxEnt's coverage varied from 4 to 7 sectors with
  the seed and did not rise with more generations; at 400 its gradient is less noisy and it
  covered 6 of 8 on both seeds (``benchmarks/README.md`` has the figures); MaxVar needs 1000
  members (41 minutes a run here) for 6 of 8. Departures from the
  paper, for that budget: population 400 instead of 10,000, episodes of 250 steps instead of
  1000, an MLP 64-64 instead of 256-256, and NES on Ant's own reward (forward velocity plus
  the healthy bonus, minus costs) rather than the final x alone. ``--reuse`` keeps finished
  runs, so a second seed costs only its own runs, and continues them to a larger budget:
  ``--minutes 45 --reuse`` continues 30-minute runs to 45 minutes, in their folder (resumes
  are exact: the generations a 45-minute run would have trained).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from neuroes import Normal, checkpoint  # noqa: E402
from neuroes.config import Config  # noqa: E402
from neuroes.rollout import Evaluator  # noqa: E402
from neuroes.train import train  # noqa: E402
from neuroes.trainer import Run  # noqa: E402

ALGORITHMS = ("nes", "maxvar", "maxent")
SECTORS, SHARE = 8, 0.05
PROTOCOLS = {
    "pointmaze": {
        "env_id": "neuroes/PointMaze-v0", "radius_factor": 1.5, "popsize": 100,
        "generations": 60, "max_steps": 30,
    },
    "ant": {
        "env_id": "Ant-v5", "radius_factor": 3.0, "popsize": 400, "generations": 60,
        "max_steps": 250, "sigma": 0.02, "lr": 0.01, "weight_decay": 0.005, "hidden": (64, 64),
    },
}  # fmt: skip


def distances(positions: np.ndarray) -> np.ndarray:
    """Distance of each final position (n, k) from the start, the origin."""
    return np.linalg.norm(positions[:, :2], axis=1)


def coverage(positions: np.ndarray, radius: float) -> int:
    """Direction sectors (8; 2 for 1-D behaviors) that each hold at least 5% of the positions
    farther than ``radius`` from the start."""
    far = positions[distances(positions) > radius]
    if not len(far):
        return 0
    if positions.shape[1] == 1:
        counts = np.array([(far[:, 0] < 0).sum(), (far[:, 0] > 0).sum()])
    else:
        angles = np.arctan2(far[:, 1], far[:, 0])
        sector = np.floor((angles + math.pi) / (2 * math.pi) * SECTORS).astype(int) % SECTORS
        counts = np.bincount(sector, minlength=SECTORS)
    return int((counts >= SHARE * len(far)).sum())


def sample_positions(
    env_id: str, policy, normalizer, mu: torch.Tensor, sigma: float, samples: int, max_steps
) -> np.ndarray:
    """Final positions of ``samples`` members of N(mu, sigma^2), one episode each."""
    members = Normal(mu, sigma, generator=12345).sample(samples)
    evaluator = Evaluator(env_id, policy, normalizer=normalizer)
    return evaluator.evaluate(members, max_steps=max_steps, seed=777).behaviors


def initial_positions(config: Config, samples: int) -> np.ndarray:
    """Final positions of samples of the distribution a run of ``config`` starts from."""
    with tempfile.TemporaryDirectory() as folder:
        run = Run.fresh(config.resolved(), Path(folder) / "run")
        try:
            mean, sigma = run.algorithm.mean, run.algorithm.sigma
            return sample_positions(
                config.env_id, run.policy, run.normalizer, mean, sigma, samples, config.max_steps
            )
        finally:
            run.close()


def final_positions(run_dir: Path, samples: int) -> np.ndarray:
    """Final positions of ``samples`` members of the run's last search distribution."""
    saved = checkpoint.read(run_dir / "checkpoint.pt")
    state, config = saved["algorithm"], Config.from_dict(saved["config"])
    sigma = float(state["log_sigma"].exp())
    return sample_positions(
        saved["env_id"], saved["policy"], saved["normalizer"], state["mu"], sigma, samples,
        config.max_steps,
    )  # fmt: skip


def saved_run(config: Config) -> tuple[int, float] | None:
    """(generations, wall time) of a run of ``config`` already in its folder, with the same
    settings and a budget (generations, time limit) no larger; None if there is none."""
    folder = Path(config.logdir)
    try:
        saved = Config.from_dict(json.loads((folder / "config.json").read_text()))
        last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
    budget = {"logdir": config.logdir, "generations": 1, "time_limit": None}  # the path as given
    same = saved.updated(**budget).resolved() == config.updated(**budget).resolved()
    within = saved.generations <= config.generations and (saved.time_limit or math.inf) <= (
        config.time_limit or math.inf
    )
    return (last["generation"], last["time/wall"]) if same and within else None


def finished(config: Config, generations: int, wall_time: float) -> bool:
    """Whether a run at ``generations`` after ``wall_time`` seconds has used ``config``'s budget."""
    return generations >= config.generations or wall_time >= (config.time_limit or math.inf)


def run(config: Config, reuse: bool) -> tuple[int, float, str]:
    """Trains ``config``'s run, or with ``reuse`` reads it when a run with its settings already
    finished in its folder, or continues one with a smaller budget (resumes are exact, so this
    equals training from scratch): (generations, wall time, what was done)."""
    saved = saved_run(config) if reuse else None
    if saved and finished(config, *saved):
        return (*saved, "reused")
    if saved:
        folder = Path(config.logdir)
        resumed = Config(config.env_id, resume=str(folder / "checkpoint.pt"), logdir=str(folder))
        budget = {"generations": config.generations, "time_limit": config.time_limit}
        summary = train(resumed, **budget, progress=config.progress)
        return summary.generations, summary.wall_time, f"continued from {saved[0]} generations"
    summary = train(config)
    return summary.generations, summary.wall_time, "trained"


def median_distances(run_dir: Path) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [row for row in rows if "behavior/distance_median" in row]
    return [row["generation"] for row in rows], [row["behavior/distance_median"] for row in rows]


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--protocol", choices=list(PROTOCOLS), default="pointmaze")
    cli.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    cli.add_argument("--generations", type=int, help="override the protocol's generations")
    cli.add_argument("--minutes", type=float, help="override the protocol's time limit per run")
    cli.add_argument("--popsize", type=int, help="override the protocol's population")
    cli.add_argument(
        "--algos", nargs="+", choices=ALGORITHMS, default=ALGORITHMS, help="algorithms to run"
    )
    cli.add_argument("--samples", type=int, default=1000, help="members drawn per distribution")
    cli.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    cli.add_argument(
        "--reuse", action="store_true",
        help="read runs that finished in --out/runs with the same settings instead of "
        "retraining them, and continue those with a smaller budget",
    )  # fmt: skip
    args = cli.parse_args(argv)
    protocol = dict(PROTOCOLS[args.protocol])
    if args.generations:
        protocol |= {"generations": args.generations, "time_limit": None}
    if args.minutes:
        protocol |= {"generations": 10**6, "time_limit": 60 * args.minutes}
    env_id, factor = protocol.pop("env_id"), protocol.pop("radius_factor")
    name = env_id.replace("/", "_")
    runs, stem = args.out / "runs", args.out / f"evolvability_{name}"
    if args.popsize:  # runs of another population: their own folders and figure
        protocol["popsize"], runs = args.popsize, runs / f"popsize{args.popsize}"
        stem = stem.with_name(f"{stem.name}_popsize{args.popsize}")
    args.out.mkdir(parents=True, exist_ok=True)

    def config(algo: str, seed: int) -> Config:
        folder = runs / f"{name}-{algo}-seed{seed}"
        settings = protocol | {"seed": seed, "logdir": str(folder), "overwrite": True}
        return Config(env_id, algo, target_return=math.inf, progress=False).updated(**settings)

    baseline = distances(initial_positions(config("nes", args.seeds[0]), args.samples))
    radius = factor * float(np.percentile(baseline, 90))
    print(f"{env_id}, protocol {args.protocol}, seeds {args.seeds}, {args.samples} samples")
    print(f"initial distribution: median distance {np.median(baseline):.3f}, 90th percentile "
          f"{np.percentile(baseline, 90):.3f}; R = {radius:.3f}")  # fmt: skip
    rows, shown, curves = [], {}, {}
    for algo in args.algos:
        per_seed = []
        for seed in args.seeds:
            settings = config(algo, seed)
            generations, wall_time, done = run(settings, args.reuse)
            run_dir = Path(settings.logdir)
            positions = final_positions(run_dir, args.samples)
            reach = distances(positions)
            per_seed.append(
                (np.median(reach), np.percentile(reach, 90), coverage(positions, radius))
            )
            median, p90, sectors = per_seed[-1]
            print(
                f"{algo:7s} seed {seed}: median distance {median:.3f}, 90th percentile "
                f"{p90:.3f}, {sectors}/{SECTORS} sectors beyond R ({generations} "
                f"generations, {wall_time:.0f} s, {done})"
            )
            if seed == args.seeds[0]:
                shown[algo], curves[algo] = positions, median_distances(run_dir)
        rows.append((algo, *zip(*per_seed, strict=True)))
    print(f"\n| algorithm | median distance | 90th percentile | sectors beyond R = {radius:.3f} |")
    print("|---|---|---|---|")
    for algo, medians, p90s, sectors in rows:
        print(f"| {algo} | {_band(medians)} | {_band(p90s)} | {_band(sectors, 'g')} |")
    _figures(shown, curves, radius, env_id, stem)
    return 0


def _band(values, spec: str = ".3f") -> str:
    """Median [min, max] of the seeds' values."""
    values = list(values)
    if len(values) == 1:
        return format(values[0], spec)
    low, high = min(values), max(values)
    return f"{format(statistics.median(values), spec)} [{format(low, spec)}, {format(high, spec)}]"


def _figures(shown: dict, curves: dict, radius: float, env_id: str, stem: Path) -> None:
    figure, (scatter, curve) = plt.subplots(1, 2, figsize=(12, 5))
    for algo, positions in shown.items():
        y = positions[:, 1] if positions.shape[1] > 1 else np.zeros(len(positions))
        scatter.scatter(positions[:, 0], y, s=5, alpha=0.5, label=algo)
        curve.plot(*curves[algo], label=algo)
    scatter.add_patch(plt.Circle((0, 0), radius, fill=False, linestyle="--", color="grey"))
    scatter.scatter([0], [0], marker="x", color="black", label="start")
    scatter.set_aspect("equal")
    scatter.set_xlabel("final x")
    scatter.set_ylabel("final y")
    scatter.set_title(f"final positions of samples of each final distribution (R = {radius:.2f})")
    scatter.legend(markerscale=3)
    curve.set_xlabel("generation")
    curve.set_ylabel("median distance of the population's final positions")
    curve.legend()
    figure.suptitle(env_id)
    figure.tight_layout()
    figure.savefig(f"{stem}.png", dpi=90)
    print(f"wrote {stem}.png")


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
