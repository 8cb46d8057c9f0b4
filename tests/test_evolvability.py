"""Evolvability ES spreads final positions where NES concentrates them (PointMaze)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from neuroes.config import Config
from neuroes.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import evolvability  # noqa: E402


def test_coverage_counts_sectors_beyond_the_radius() -> None:
    ring = np.stack([np.cos(np.linspace(-3, 3, 8)), np.sin(np.linspace(-3, 3, 8))], 1)
    assert evolvability.coverage(2 * ring, radius=1.0) == 1.0
    assert evolvability.coverage(0.5 * ring, radius=1.0) == 0.0
    assert evolvability.coverage(np.array([[2.0], [3.0], [-0.1]]), radius=1.0) == 0.5


def _coverage(algo: str, tmp_path: Path) -> float:
    config = Config(
        env_id="neuroes/PointMaze-v0",
        algo=algo,
        generations=25,
        popsize=60,
        seed=0,
        target_return=math.inf,
        progress=False,
        scatter_every=5,
        logdir=str(tmp_path / algo),
    )
    summary = train(config)
    positions = evolvability.final_positions(summary.run_dir, 100, None)
    return evolvability.coverage(positions, radius=0.5)


def test_maxent_covers_many_directions_and_nes_few(tmp_path) -> None:
    assert _coverage("nes", tmp_path) <= 0.25
    assert _coverage("maxent", tmp_path) >= 0.625
    assert list((tmp_path / "maxent").glob("behaviors_*.png")), "scatter plots are written"
