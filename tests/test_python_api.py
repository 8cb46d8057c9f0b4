"""The Python API: a hand-written ask/tell loop, any nn.Module as the policy, several seeds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from neuroes import checkpoint, train
from neuroes.agents import ObservationNormalizer, get_flat, make_policy
from neuroes.algorithms import Setup, make_algorithm
from neuroes.config import Config
from neuroes.rollout import Evaluator
from neuroes.trainer import TRAINING, stream_seed


def test_an_ask_tell_loop_through_the_evaluator_equals_train(tmp_path) -> None:
    """The loop ``train`` runs, written with public pieces: same seed, same parameters."""
    seed, generations = 3, 4
    logdir = str(tmp_path / "run")
    summary = train.train("CartPole-v1", popsize=16, generations=generations, seed=seed,
                          target_return=math.inf, progress=False, logdir=logdir)  # fmt: skip
    env = gym.make("CartPole-v1")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy = make_policy("mlp", env.observation_space, env.action_space, hidden=(16,))
    normalizer = ObservationNormalizer(4)
    nes = make_algorithm("nes", Setup(policy, popsize=16, sigma=0.1, seed=seed), {"lr": 0.2})
    evaluator = Evaluator("CartPole-v1", policy, normalizer=normalizer)
    for generation in range(generations):
        population = nes.ask()
        episode_seed = stream_seed(seed, generation, TRAINING)
        rollouts = evaluator.evaluate(population.thetas, 1, None, episode_seed)
        normalizer.update(*rollouts.observation_stats)
        nes.tell(population, rollouts)
    saved = checkpoint.read(summary.run_dir / "checkpoint.pt")
    assert torch.equal(get_flat(saved["policy"]), nes.mean)


def _network(observation_space, action_space) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def test_a_plain_module_policy_trains_cartpole(tmp_path) -> None:
    summary = train.train("CartPole-v1", policy=_network, generations=15, seed=1,
                          progress=False, logdir=str(tmp_path / "run"))  # fmt: skip
    assert summary.best_return >= 200
    with pytest.raises(checkpoint.CheckpointError, match="trust=True"):
        checkpoint.read(summary.run_dir / "best.pt")
    agent = __import__("neuroes").load(summary.run_dir / "best.pt", trust=True)
    assert agent.act(gym.make("CartPole-v1").reset(seed=0)[0]) in (0, 1)


class _Unbatchable(nn.Module):
    """Data-dependent control flow: ``torch.func.vmap`` cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.linear(obs)
        return out if out.sum() > 0 else -out


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda o, a: _Unbatchable(), "cannot be batched over the population"),
        (lambda o, a: nn.Linear(4, 3), r"to \(2, 3\); this action space needs \(B, 2\)"),
        (lambda o, a: "not a module", "a policy must be an nn.Module, got str"),
    ],
)
def test_a_policy_that_cannot_work_is_one_line(factory, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message) as error:
        train.train("CartPole-v1", policy=factory, progress=False, logdir=str(tmp_path / "r"))
    assert "\n" not in str(error.value)


def test_seeds_make_sibling_runs_and_a_table(tmp_path) -> None:
    logdir = tmp_path / "seeds"
    done = subprocess.run(
        [sys.executable, "-m", "neuroes.train", "CartPole-v1", "--seeds", "0-2",
         "--generations", "2", "--popsize", "8", "--no-progress", "--logdir", str(logdir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in logdir.iterdir()) == ["seed-0", "seed-1", "seed-2"]
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["seed", "generations", "final", "best"]
    assert [line.split()[0] for line in lines[1:4]] == ["0", "1", "2"]
    assert lines[-2].startswith("final: median") and lines[-1].startswith("best: median")
    for seed in range(3):
        assert (
            Config.from_dict(
                checkpoint.read(logdir / f"seed-{seed}" / "checkpoint.pt")["config"]
            ).seed
            == seed
        )


def test_importing_neuroes_registers_its_environments() -> None:
    code = "import gymnasium, neuroes; print(gymnasium.make('neuroes/PointMaze-v0').spec.id)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "neuroes/PointMaze-v0", done.stderr


def test_wandb_gets_the_same_scalars_in_offline_mode(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = train.train("CartPole-v1", generations=2, popsize=8, wandb="neuroes-tests",
                          progress=False, logdir=str(tmp_path / "run"))  # fmt: skip
    (log,) = (summary.run_dir / "wandb").glob("offline-run-*/run-*.wandb")  # what a sync uploads
    recorded = log.read_bytes()
    for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines():
        for tag, value in json.loads(line).items():
            text = json.dumps(int(value) if float(value).is_integer() else value)  # as W&B writes
            assert tag.encode() in recorded and text.encode() in recorded, (tag, text)


def pole_angle(env: gym.Env) -> np.ndarray:
    """A descriptor of the finished CartPole episode: its final pole angle."""
    return np.array([env.unwrapped.state[2]])


def test_a_descriptor_function_from_python_and_the_command_line(tmp_path) -> None:
    summary = train.train("CartPole-v1", algo="maxvar", descriptor=pole_angle, generations=2,
                          popsize=8, progress=False, logdir=str(tmp_path / "python"))  # fmt: skip
    config = json.loads((summary.run_dir / "config.json").read_text())
    assert config["descriptor"] == f"{__name__}:pole_angle"
    rows = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").open()]
    assert all(row["behavior/variance"] > 0 for row in rows)
    (tmp_path / "angles.py").write_text(
        "import numpy as np\n\ndef pole(env):\n    return np.array([env.unwrapped.state[2]])\n"
    )
    argv = ["CartPole-v1", "--algo", "maxvar", "--descriptor", "angles:pole", "--generations",
            "2", "--popsize", "8", "--no-progress", "--logdir", str(tmp_path / "cli")]  # fmt: skip
    environment = os.environ | {"PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "neuroes.train", *argv], env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cli_rows = [json.loads(line) for line in (tmp_path / "cli" / "metrics.jsonl").open()]
    assert [row["behavior/variance"] for row in cli_rows] == [r["behavior/variance"] for r in rows]
    bad = train.main(["CartPole-v1", "--descriptor", "nowhere:fn", "--logdir", str(tmp_path / "x")])
    assert bad == 2


def test_threads_change_nothing_but_speed(tmp_path) -> None:
    def final(threads: int) -> torch.Tensor:
        logdir = str(tmp_path / str(threads))
        summary = train.train("InvertedPendulum-v5", threads=threads, generations=2, popsize=8,
                              max_steps=100, progress=False, logdir=logdir)  # fmt: skip
        return get_flat(checkpoint.read(summary.run_dir / "checkpoint.pt")["policy"])

    assert torch.equal(final(1), final(2))
    assert train.main(["CartPole-v1", "--threads", "0", "--logdir", str(tmp_path / "x")]) == 2
