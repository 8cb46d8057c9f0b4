"""python -m neuroes.evaluate: batched evaluation of a saved policy, equal to a plain loop."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import neuroes
from neuroes.config import Config
from neuroes.evaluate import evaluate, main
from neuroes.train import train


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("evaluate") / "run"
    config = Config("CartPole-v1", generations=3, popsize=16, progress=False, logdir=str(logdir))
    return train(config).run_dir / "checkpoint.pt"


def _plain_loop(path: Path, episodes: int, seed: int, max_steps: int | None):
    """Returns and lengths of ``agent.act`` in a Gymnasium loop, episode e from seed + e."""
    agent = neuroes.load(path)
    env = agent.make_env()
    returns, lengths = [], []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        agent.reset()
        total, steps, done = 0.0, 0, False
        while not done and steps != max_steps:
            observation, reward, terminated, truncated, _ = env.step(agent.act(observation))
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


@pytest.mark.parametrize("max_steps", [None, 30])
def test_returns_equal_a_plain_gymnasium_loop_with_the_same_seeds(saved, max_steps) -> None:
    result = evaluate(saved, episodes=12, seed=5, max_steps=max_steps)
    returns, lengths = _plain_loop(saved, 12, 5, max_steps)
    assert result["returns"] == returns and result["lengths"] == lengths
    assert result["mean"] == np.mean(returns) and result["std"] == np.std(returns)
    assert (result["min"], result["max"]) == (min(returns), max(returns))
    assert result["mean_length"] == np.mean(lengths)
    if max_steps is None:
        assert len(set(returns)) > 1  # the seeds give different episodes


def test_cli_prints_a_summary_or_one_json_object(saved, capsys) -> None:
    argv = [str(saved), "--episodes", "4", "--seed", "2"]
    assert main(argv) == 0
    result = evaluate(neuroes.load(saved), episodes=4, seed=2)
    summary = capsys.readouterr().out
    assert f"return {result['mean']:.2f} +- {result['std']:.2f}" in summary
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result


def test_bad_input_exits_2_with_one_line(saved, tmp_path, capsys) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(100))
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"weights": [0.0]}))
    cases = [
        ([str(tmp_path / "missing.pt")], "does not exist"),
        ([str(corrupt)], "is corrupt or truncated"),
        ([str(foreign)], "loading it runs code from the file"),
        ([str(saved), "--episodes", "0"], "episodes must be a positive integer, got 0"),
        ([str(saved), "--max-steps", "-1"], "max_steps must be a positive integer, got -1"),
        ([str(saved), "--episodes", "two"], "invalid int value: 'two'"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exited:
            sys.exit(main(argv))
        assert exited.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_a_checkpoint_that_holds_code_is_evaluated_only_with_trust(capsys) -> None:
    format1 = Path(__file__).parent / "data" / "cartpole-format1.pkl"
    assert main([str(format1)]) == 2
    assert "--trust" in capsys.readouterr().err
    assert main([str(format1), "--trust", "--episodes", "2"]) == 0
    assert "over 2 episodes" in capsys.readouterr().out
