"""Training end to end: learning, resume, checkpoints, rendering, TensorBoard, bad input."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import neuroes
from neuroes import checkpoint, render, train
from neuroes.config import Config
from neuroes.trainer import EVALUATION, stream_seed


def _config(tmp_path: Path, name: str, **overrides) -> Config:
    fields = {"env_id": "CartPole-v1", "logdir": str(tmp_path / name), "progress": False}
    return Config(**(fields | overrides))


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> train.Summary:
    tmp_path = tmp_path_factory.mktemp("cartpole")
    return train.train(_config(tmp_path, "run", seed=3, generations=25, target_return=math.inf))


def test_short_cartpole_run_improves_the_mean_policy(cartpole_run) -> None:
    evaluations = _scalars(cartpole_run.run_dir)["eval/return"]
    assert len(evaluations) == 25
    assert evaluations[0] < 100
    assert max(evaluations[-5:]) > 3 * evaluations[0] + 100


def test_tensorboard_has_the_documented_scalars(cartpole_run) -> None:
    tags = set(_scalars(cartpole_run.run_dir))
    expected = {
        "rollout/return_mean",
        "rollout/return_max",
        "rollout/return_min",
        "rollout/return_std",
        "rollout/length_mean",
        "eval/return",
        "es/objective",
        "es/sigma",
        "es/grad_norm",
        "es/param_norm",
        "time/env_steps",
        "time/steps_per_second",
        "time/wall",
    }
    assert expected <= tags, expected - tags
    assert (cartpole_run.run_dir / "config.json").is_file()


def test_saved_policy_loads_in_a_fresh_process_and_reproduces_its_evaluation(
    cartpole_run,
) -> None:
    best = cartpole_run.run_dir / "best.pt"
    saved = checkpoint.read(best)
    seed = stream_seed(saved["config"]["seed"], saved["generation"], EVALUATION)
    episodes = saved["config"]["eval_episodes"]
    script = (
        "import sys, numpy as np, neuroes; from neuroes.render import play;"
        f"agent = neuroes.load({str(best)!r});"
        f"returns, _ = play(agent, {episodes}, {seed});"
        "print(np.mean(returns), agent.env_id, agent.generation)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.split()
    assert float(out[0]) == pytest.approx(saved["eval_return"])
    assert out[1:] == ["CartPole-v1", str(saved["generation"])]


def test_render_writes_a_video_with_one_frame_per_step_and_reset(cartpole_run, tmp_path) -> None:
    video = tmp_path / "play.mp4"
    agent = neuroes.load(cartpole_run.run_dir / "checkpoint.pt")
    assert (
        render.main(
            [
                str(cartpole_run.run_dir / "checkpoint.pt"),
                "--episodes",
                "1",
                "--video",
                str(video),
                "--seed",
                "4",
            ]
        )
        == 0
    )
    returns, _ = render.play(agent, 1, seed=4)
    reader = imageio.get_reader(video)
    assert reader.count_frames() == sum(returns) + 1  # CartPole: one reward per step
    assert reader.get_data(0).shape[:2] == (400, 600)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path) -> None:
    common = {"seed": 1, "target_return": math.inf, "checkpoint_every": 1, "popsize": 16}
    whole = train.train(_config(tmp_path, "whole", generations=6, **common))
    half = train.train(_config(tmp_path, "half", generations=3, **common))
    resumed = train.train(
        Config(env_id="CartPole-v1", resume=str(half.run_dir / "checkpoint.pt")),
        generations=6,
        progress=False,
    )
    assert resumed.generations == 6
    a = checkpoint.read(whole.run_dir / "checkpoint.pt")
    b = checkpoint.read(resumed.run_dir / "checkpoint.pt")
    assert torch.equal(a["algorithm"]["mu"], b["algorithm"]["mu"])
    assert torch.equal(a["normalizer"].mean, b["normalizer"].mean)
    assert a["env_steps"] == b["env_steps"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["Nope-v0"], "unknown environment 'Nope-v0'"),
        (["Blackjack-v1"], "unsupported observation space"),
        (["CartPole-v1", "--popsize", "0"], "popsize must be a positive number"),
        (["CartPole-v1", "--popsize", "7"], "popsize must be even"),
        (["CartPole-v1", "--sigma", "-0.1"], "sigma must be a positive number"),
        (["CartPole-v1", "--algo", "cmaes"], "invalid choice: 'cmaes'"),
    ],
)
def test_bad_training_input_exits_2_with_one_line(argv, message, capsys, tmp_path) -> None:
    assert train.main([*argv, "--logdir", str(tmp_path / "run"), "--no-progress"]) == 2
    assert message in _one_error_line(capsys)


def test_bad_checkpoints_exit_2_with_one_line(capsys, tmp_path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(100))
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    cases = [
        (tmp_path / "missing.pt", "does not exist"),
        (corrupt, "is corrupt or truncated"),
        (foreign, "loading it runs code from the file"),
    ]
    for path, message in cases:
        assert render.main([str(path)]) == 2
        assert message in _one_error_line(capsys)
        assert train.main(["CartPole-v1", "--resume", str(path)]) == 2
        assert message in _one_error_line(capsys)


def test_cli_exit_status_in_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "neuroes.train", "Nope-v0"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown environment" in result.stderr
