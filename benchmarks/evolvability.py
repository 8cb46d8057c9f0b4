"""Evolvability ES against NES: where do samples of the trained population end up?

    python benchmarks/evolvability.py                        # PointMaze, about a minute
    python benchmarks/evolvability.py --env Ant-v5 --generations 60 --max-steps 200 --workers 2
    python benchmarks/evolvability.py --env HalfCheetah-v5 --generations 60 --max-steps 200

Each algorithm trains from the same seed; then ``--samples`` members drawn from its final search
distribution are evaluated and their final positions are summarized: the standard deviation
per axis, the mean distance from the start, and the angular coverage (the fraction of 8
direction sectors around the start reached beyond ``--radius``; 1-D behaviors use the two
directions). Scatter plots go to ``--out`` as PNG files.
"""

from __future__ import annotations

import argparse
import math
import sys
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

ALGORITHMS = ("nes", "maxvar", "maxent")


def coverage(positions: np.ndarray, radius: float, sectors: int = 8) -> float:
    """Fraction of direction sectors holding a final position farther than ``radius``."""
    if positions.shape[1] == 1:
        far = positions[np.abs(positions[:, 0]) > radius, 0]
        return len(set(np.sign(far))) / 2
    far = positions[np.linalg.norm(positions[:, :2], axis=1) > radius]
    angles = np.arctan2(far[:, 1], far[:, 0])
    reached = np.floor((angles + math.pi) / (2 * math.pi) * sectors).astype(int) % sectors
    return len(set(reached)) / sectors


def final_positions(run_dir: Path, samples: int, max_steps: int | None) -> np.ndarray:
    """Final positions of ``samples`` fresh members of the run's last search distribution."""
    saved = checkpoint.read(run_dir / "checkpoint.pt")
    state = saved["algorithm"]
    p = Normal(state["mu"], float(state["log_sigma"].exp()), generator=12345)
    evaluator = Evaluator(saved["env_id"], saved["policy"], normalizer=saved["normalizer"])
    return evaluator.evaluate(p.sample(samples), max_steps=max_steps, seed=777).behaviors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="neuroes/PointMaze-v0", help="environment id")
    parser.add_argument("--generations", type=int, default=60, help="generations per algorithm")
    parser.add_argument("--popsize", type=int, default=100, help="population size")
    parser.add_argument("--max-steps", type=int, default=None, help="episode cut")
    parser.add_argument("--samples", type=int, default=200, help="members drawn after training")
    parser.add_argument("--radius", type=float, default=0.5, help="coverage distance threshold")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument("--workers", type=int, default=1, help="local evaluation processes")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the plots")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless maxvar and maxent cover >= 6/8 sectors and nes <= 2/8",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    cover = {}
    print(
        f"{args.env}: {args.generations} generations, population {args.popsize}, "
        f"max steps {args.max_steps}, {args.samples} samples, radius {args.radius}"
    )
    for algo, ax in zip(ALGORITHMS, axes, strict=True):
        config = Config(
            env_id=args.env,
            algo=algo,
            generations=args.generations,
            popsize=args.popsize,
            max_steps=args.max_steps,
            seed=args.seed,
            workers=args.workers,
            target_return=math.inf,
            progress=False,
            logdir=str(out / f"runs/{args.env.replace('/', '_')}-{algo}"),
        )
        summary = train(config)
        positions = final_positions(summary.run_dir, args.samples, args.max_steps)
        cover[algo] = coverage(positions, args.radius)
        distance = np.linalg.norm(positions, axis=1).mean()
        spread = ", ".join(f"{s:.2f}" for s in positions.std(0))
        print(
            f"{algo:7s} std per axis [{spread}], mean distance {distance:.2f}, "
            f"coverage {cover[algo]:.3f} ({summary.wall_time:.0f} s training)"
        )
        y = positions[:, 1] if positions.shape[1] > 1 else np.zeros(len(positions))
        ax.scatter(positions[:, 0], y, s=8)
        ax.scatter([0], [0], marker="x", color="red")
        ax.set_title(f"{algo}: coverage {cover[algo]:.2f}")
        ax.set_xlabel("final x")
    axes[0].set_ylabel("final y")
    figure.suptitle(f"{args.env}: final positions of {args.samples} samples after training")
    figure.tight_layout()
    plot = out / f"evolvability_{args.env.replace('/', '_')}.png"
    figure.savefig(plot, dpi=90)
    print(f"wrote {plot}")
    if args.check:
        good = cover["maxvar"] >= 0.75 and cover["maxent"] >= 0.75 and cover["nes"] <= 0.25
        return 0 if good else 1
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
