"""EvoGrad's one-dimensional demos, reproduced with the neuroes expectation API.

    python benchmarks/evograd_demos.py            # all three demos
    python benchmarks/evograd_demos.py maxent     # one of: nes, maxvar, maxent

Each demo prints its progress and the script exits with status 1 if a demo misses its goal.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from neuroes import Normal
from neuroes.objectives import fitness, maxent, maxvar
from neuroes.shaping import zscore

PEAK = math.pi / 0.4  # the interference pattern's envelope 5*sin(0.2x) peaks here


def interference(x: torch.Tensor) -> torch.Tensor:
    """EvoGrad's behavior: a fast oscillation under a slow envelope, 5 sin(0.2x) sin(20x)."""
    return 5 * torch.sin(0.2 * x) * torch.sin(20 * x)


def nes(steps: int = 300, popsize: int = 100, seed: int = 0) -> float:
    """Maximize -(x - 5)^2 from mu = 1 with a fixed sigma; returns the final mu."""
    mu = torch.tensor([1.0], requires_grad=True)
    optimizer = torch.optim.SGD([mu], lr=0.2)
    p = Normal(mu, 0.5, mirrored=True, generator=seed)
    for step in range(steps):
        x = p.sample(popsize)
        loss = -fitness(-(x - 5.0).pow(2).squeeze(-1), x, p, shaping=zscore)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"nes     step {step:4d}  mu {mu.item():7.3f}")
    return mu.item()


def evolvability(objective: str, steps: int = 300, popsize: int = 500, seed: int = 0) -> float:
    """Maximize the variance or entropy of the interference behavior from mu = 1."""
    mu = torch.tensor([1.0], requires_grad=True)
    optimizer = torch.optim.Adam([mu], lr=0.1)
    p = Normal(mu, 0.5, generator=seed)
    for step in range(steps):
        x = p.sample(popsize)
        behaviors = interference(x)
        if objective == "maxvar":
            gain = maxvar(behaviors, x, p)
        else:
            gain = maxent(behaviors, x, p, bandwidth=0.5)
        optimizer.zero_grad()
        (-gain).backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"{objective:7s} step {step:4d}  mu {mu.item():7.3f}")
    return mu.item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "demo", nargs="?", default="all", choices=["all", "nes", "maxvar", "maxent"]
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed of every demo")
    args = parser.parse_args(argv)
    failures = []
    if args.demo in ("all", "nes"):
        mu = nes(seed=args.seed)
        print(f"nes: final mu {mu:.3f}, goal 5 +- 0.1")
        if abs(mu - 5.0) > 0.1:
            failures.append("nes")
    for objective in ("maxvar", "maxent"):
        if args.demo in ("all", objective):
            mu = evolvability(objective, seed=args.seed)
            print(f"{objective}: final mu {mu:.3f}, goal {PEAK:.2f} +- 0.5")
            if abs(mu - PEAK) > 0.5:
                failures.append(objective)
    if failures:
        print(f"missed the goal: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
