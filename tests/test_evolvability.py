"""Evolvability ES spreads final positions where NES concentrates them (PointMaze)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from neuroes import checkpoint
from neuroes.config import Config
from neuroes.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import evolvability  # noqa: E402


def test_coverage_counts_sectors_holding_five_percent_beyond_the_radius() -> None:
    angles = np.linspace(-math.pi, math.pi, 800, endpoint=False) + 0.01
    ring = np.stack([np.cos(angles), np.sin(angles)], 1)
    assert evolvability.coverage(2 * ring, radius=1.0) == 8
    assert evolvability.coverage(0.5 * ring, radius=1.0) == 0
    cluster = np.array([2.0, 0.3]) + 0.05 * np.random.default_rng(0).standard_normal((500, 2))
    assert evolvability.coverage(cluster, radius=1.0) == 1
    strays = np.concatenate([cluster, 2 * ring[::100]])  # one far sample in each other sector
    assert evolvability.coverage(strays, radius=1.0) == 1  # 1/508 of the far ones: not 5%
    assert evolvability.coverage(np.array([[2.0], [3.0], [-0.1]]), radius=1.0) == 1
    assert evolvability.coverage(np.array([[2.0], [-3.0]]), radius=1.0) == 2


def test_the_benchmark_runs_end_to_end(tmp_path, capsys) -> None:
    argv = ["--seeds", "0", "--generations", "2", "--samples", "30", "--out", str(tmp_path)]
    assert evolvability.main(argv) == 0
    out = capsys.readouterr().out
    assert "| maxent |" in out and "R = " in out
    assert (tmp_path / "evolvability_neuroes_PointMaze-v0.png").stat().st_size > 10_000


def test_another_population_trains_in_its_own_folder(tmp_path) -> None:
    argv = ["--seeds", "0", "--generations", "1", "--samples", "20", "--algos", "maxvar"]
    assert evolvability.main([*argv, "--popsize", "10", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "runs" / "popsize10" / "neuroes_PointMaze-v0-maxvar-seed0"
    assert json.loads((folder / "config.json").read_text())["popsize"] == 10
    assert not (tmp_path / "runs" / "neuroes_PointMaze-v0-maxvar-seed0").exists()
    assert (tmp_path / "evolvability_neuroes_PointMaze-v0_popsize10.png").exists()
    assert not (tmp_path / "evolvability_neuroes_PointMaze-v0.png").exists()


def test_reuse_continues_a_run_to_a_larger_budget_as_if_trained_at_once(tmp_path, capsys) -> None:
    def bench(generations: int, out: str) -> str:
        argv = ["--seeds", "0", "--samples", "30", "--algos", "maxent", "--reuse"]
        assert evolvability.main([*argv, "--generations", str(generations), "--out", out]) == 0
        return capsys.readouterr().out

    def mean(out: str) -> torch.Tensor:
        path = Path(out) / "runs" / "neuroes_PointMaze-v0-maxent-seed0" / "checkpoint.pt"
        return checkpoint.read(path)["algorithm"]["mu"]

    continued, at_once = str(tmp_path / "continued"), str(tmp_path / "at_once")
    first = bench(2, continued)
    assert "(2 generations" in first and "trained)" in first
    assert "continued from 2 generations" in bench(3, continued)
    assert "trained)" in bench(3, at_once)
    assert torch.equal(mean(continued), mean(at_once))
    assert "reused)" in bench(3, continued)
    assert "trained)" in bench(2, continued)  # a larger saved budget is not read as this one


def _coverage(algo: str, tmp_path: Path) -> int:
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
    positions = evolvability.final_positions(summary.run_dir, 100)
    return evolvability.coverage(positions, radius=0.5)


def test_maxent_covers_many_directions_and_nes_few(tmp_path) -> None:
    assert _coverage("nes", tmp_path) <= 2
    assert _coverage("maxent", tmp_path) >= 5
    assert list((tmp_path / "maxent").glob("behaviors_*.png")), "scatter plots are written"
