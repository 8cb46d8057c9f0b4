"""python -m neuroes.plot: learning curves of runs, median and range across several."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from neuroes.config import Config
from neuroes.plot import AXES, band, curve, main
from neuroes.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    logdir = tmp_path_factory.mktemp("plot")
    return [
        train(
            Config(
                "CartPole-v1",
                generations=3,
                popsize=16,
                seed=seed,
                progress=False,
                logdir=str(logdir / f"seed-{seed}"),
            )
        ).run_dir
        for seed in (0, 1)
    ]


@pytest.mark.parametrize(
    "x, count",
    # Two runs share a range of generations; their wall times and env steps need not overlap
    # in runs this short (the first run pays the warm-up), so those axes draw one run.
    [("generation", 2), *((x, 1) for x in AXES)],
)
def test_runs_make_a_png(runs, tmp_path, x, count) -> None:
    out = tmp_path / "curves.png"
    assert main([*map(str, runs[:count]), "--out", str(out), "--x", x]) == 0
    assert out.stat().st_size > 10_000
    assert iio.imread(out).shape[:2] == (400, 600)


def test_runs_without_a_common_range_exit_2_with_one_line(tmp_path, capsys) -> None:
    folders = []
    for seed, walls in enumerate(([1.0, 2.0], [3.0, 4.0])):
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        rows = [{"generation": 1, "eval/return": 1.0, "time/wall": wall} for wall in walls]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        folders.append(str(folder))
    assert main([*folders, "--out", str(tmp_path / "c.png"), "--x", "wall"]) == 2
    assert capsys.readouterr().err.strip() == "error: the runs share no range of the x axis"


def test_the_event_files_give_the_curve_of_metrics_jsonl(runs, tmp_path) -> None:
    events_only = shutil.copytree(runs[0], tmp_path / "events-only")
    (events_only / "metrics.jsonl").unlink(missing_ok=True)
    for x in AXES:
        xs, ys = curve(runs[0], x)
        assert len(xs) == 3  # one evaluation per generation
        assert np.allclose(curve(events_only, x), (xs, ys), rtol=1e-6)  # events hold float32


def test_median_and_range_across_runs_of_different_lengths(tmp_path) -> None:
    folders = []
    for seed, returns in enumerate(([10.0, 20.0, 30.0], [30.0, 40.0], [20.0, 60.0, 50.0])):
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        rows = [
            {"generation": g + 1, "eval/return": value, "time/env_steps": 100 * (g + 1)}
            for g, value in enumerate(returns)
        ]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        folders.append(folder)
    grid, median, low, high = band([curve(folder, "env_steps") for folder in folders])
    assert grid.tolist() == [100, 200]  # the range all runs cover
    assert median.tolist() == [20, 40] and low.tolist() == [10, 20] and high.tolist() == [30, 60]


def test_a_folder_without_a_run_exits_2_with_one_line(runs, tmp_path, capsys) -> None:
    cases = [(tmp_path / "missing", "does not exist"), (tmp_path, "is not a run folder")]
    for folder, message in cases:
        assert main([str(runs[0]), str(folder), "--out", str(tmp_path / "c.png")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "c.png").exists()
