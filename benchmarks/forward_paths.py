"""Median time per call of the "bmm" and "vmap" paths of ``BatchedForward``.

MLP 64-64, one observation per member (B=1), with one thread and with torch's default count.
Run: ``python benchmarks/forward_paths.py``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from gymnasium import spaces

from neuroes.agents import BatchedForward, MLPPolicy, num_params

CASES = [
    (4, spaces.Discrete(2), "Discrete(2)"),
    (17, spaces.Box(-1.0, 1.0, (6,), dtype=np.float32), "Box(6)"),
]
MEMBERS = (100, 1000)


def median_seconds(forward: BatchedForward, thetas: torch.Tensor, obs: torch.Tensor) -> float:
    """Median wall time of one call, over repeats lasting about 0.5 s in all."""
    for _ in range(5):
        forward(thetas, obs)
    start = time.perf_counter()
    forward(thetas, obs)
    repeats = max(20, min(2000, int(0.5 / max(time.perf_counter() - start, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(thetas, obs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    default_threads = torch.get_num_threads()
    header = f"{'threads':>7} {'obs':>4} {'actions':>11} {'P':>5} {'mode':>5}"
    print(f"{header} {'median us':>10} {'calls/s':>9} {'auto':>5}")
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        for obs_dim, action_space, action_name in CASES:
            observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float32)
            policy = MLPPolicy(observation_space, action_space, hidden=(64, 64))
            auto = BatchedForward(policy).mode
            for count in MEMBERS:
                thetas = torch.randn(count, num_params(policy)) * 0.1
                obs = torch.randn(count, 1, obs_dim)
                for mode in ("bmm", "vmap"):
                    seconds = median_seconds(BatchedForward(policy, mode), thetas, obs)
                    row = f"{threads:>7} {obs_dim:>4} {action_name:>11} {count:>5} {mode:>5}"
                    print(f"{row} {seconds * 1e6:>10.1f} {1 / seconds:>9.0f} {auto:>5}")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
