"""Checkpoints: plain data that loads without running code, atomic writes, trust for code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete, MultiDiscrete
from torch import nn

import neuroes
from neuroes import checkpoint, render, train
from neuroes.agents import ObservationNormalizer, Policy, get_flat, make_policy

FORMAT1 = Path(__file__).parent / "data" / "cartpole-format1.pkl"  # written by neuroes 0.1


def _payload(policy: Policy, normalizer: ObservationNormalizer | None = None, **extra) -> dict:
    return {"env_id": "CartPole-v1", "policy": policy, "normalizer": normalizer} | extra


def _cartpole_policy(kind: str = "mlp", **options) -> Policy:
    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    return make_policy(kind, env.observation_space, env.action_space, **options)


@pytest.mark.parametrize(
    "kind, observation_space, action_space, options",
    [
        ("mlp", Box(-1, 1, (3,)), Discrete(4, start=2), {"hidden": [5, 6], "activation": "relu"}),
        ("linear", Box(-np.inf, np.inf, (2, 2)), Box(-2, 3, (2,)), {"box": "clip"}),
        ("gru", Discrete(5), MultiDiscrete([3, 2]), {"hidden_size": 7}),
    ],
)
def test_policies_round_trip_as_data(kind, observation_space, action_space, options, tmp_path):
    torch.manual_seed(1)
    policy = make_policy(kind, observation_space, action_space, **options)
    normalizer = ObservationNormalizer(policy.obs_dim)
    observations = np.random.default_rng(0).random((9, policy.obs_dim))
    normalizer.update(*ObservationNormalizer.statistics(observations))
    path = tmp_path / "c.pt"
    checkpoint.save(path, _payload(policy, normalizer, generation=3, genomes=[(1, (2**62, 3))]))
    saved = checkpoint.read(path)
    restored = saved["policy"]
    assert type(restored) is type(policy) and restored.options() == policy.options()
    assert restored.observation_space == observation_space
    assert restored.action_space == action_space
    assert torch.equal(get_flat(restored), get_flat(policy))
    for name, buffer in normalizer.state_dict().items():
        assert torch.equal(saved["normalizer"].state_dict()[name], buffer)
    assert saved["generation"] == 3 and saved["genomes"] == [(1, (2**62, 3))]


class _Exploit:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_file_that_runs_code_when_unpickled_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    as_pickle = tmp_path / "evil.pkl"
    as_pickle.write_bytes(pickle.dumps({"format": checkpoint.FORMAT, "x": _Exploit(marker)}))
    as_archive = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 2, "x": _Exploit(marker)}, as_archive)
    for path, message in ((as_pickle, "runs code from the file"), (as_archive, "tampered")):
        with pytest.raises(checkpoint.CheckpointError, match=message):
            neuroes.load(path)
        assert render.main([str(path)]) == 2
        assert train.main(["CartPole-v1", "--resume", str(path)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and all(message in line for line in lines)
        assert not marker.exists()


def test_truncated_and_foreign_archives_are_one_line_errors(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, _payload(_cartpole_policy()))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:-200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = [(truncated, "corrupt or truncated"), (foreign, "not a neuroes checkpoint")]
    for bad, message in [*cases, (text, "not a neuroes checkpoint")]:
        with pytest.raises(checkpoint.CheckpointError, match=message) as error:
            checkpoint.read(bad)
        assert "\n" not in str(error.value)


def test_write_is_atomic_when_the_write_itself_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    policy = _cartpole_policy()
    checkpoint.save(path, _payload(policy, generation=1))

    def failing_fsync(descriptor: int) -> None:
        raise OSError("disk full")  # after part of the new data reached the temporary file

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, _payload(policy, generation=2))
    assert checkpoint.read(path)["generation"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class _CustomPolicy(Policy):
    """A user-defined policy: not in ``POLICIES``, so it is saved as code."""

    def __init__(self, observation_space, action_space) -> None:
        super().__init__(observation_space, action_space)
        self.linear = nn.Linear(self.obs_dim, self.head.out_features)

    def forward(self, obs, state=None):
        return self.linear(obs), None


def test_a_user_defined_policy_loads_only_when_trusted(tmp_path):
    env = gym.make("CartPole-v1")
    policy = _CustomPolicy(env.observation_space, env.action_space)
    path = tmp_path / "custom.pt"
    checkpoint.save(path, _payload(policy, env_kwargs={}, config={}, generation=0))
    with pytest.raises(checkpoint.CheckpointError, match="user-defined policy.*trust=True"):
        neuroes.load(path)
    agent = neuroes.load(path, trust=True)
    assert torch.equal(get_flat(agent.policy), get_flat(policy))


def test_format_1_checkpoints_load_and_resume_only_when_trusted(tmp_path, capsys):
    with pytest.raises(checkpoint.CheckpointError, match=r"trust=True \(--trust\)"):
        neuroes.load(FORMAT1)
    agent = neuroes.load(FORMAT1, trust=True)
    assert agent.policy.options() == {"box": "tanh", "hidden": [8], "activation": "tanh"}
    assert agent.normalizer.std.min() >= 0.1  # refreshed with today's variance floor
    assert agent.act(agent.make_env().reset(seed=0)[0]) in (0, 1)
    assert render.main([str(FORMAT1), "--episodes", "1"]) == 2
    assert "--trust" in capsys.readouterr().err
    logdir = str(tmp_path / "resumed")
    argv = ["CartPole-v1", "--resume", str(FORMAT1), "--logdir", logdir, "--no-progress"]
    assert train.main([*argv, "--generations", "3", "--trust"]) == 0
    resumed = checkpoint.read(Path(logdir) / "checkpoint.pt")  # today's format: no trust needed
    assert resumed["generation"] == 3 and resumed["policy"].options()["hidden"] == [8]


@pytest.mark.parametrize(
    ("kind", "options", "squash", "expected"),
    [
        ("mlp", {"hidden": [5, 6]}, False, {"box": "clip", "hidden": [5, 6], "activation": "tanh"}),
        ("mlp", {"hidden": [5]}, True, {"box": "tanh", "hidden": [5], "activation": "tanh"}),
        ("gru", {"hidden_size": 7}, False, {"box": "clip", "hidden_size": 7}),
    ],
)
def test_format_1_box_policies_keep_their_options(kind, options, squash, expected):
    """A version-1 head said ``squash``; the upgraded policy says ``box``, keeps its layers and
    its weights."""
    old = make_policy(kind, Box(-1, 1, (3,)), Box(-2, 2, (2,)), **options)
    old.head.squash = squash
    upgraded = checkpoint._upgrade_policy(old)
    assert upgraded.options() == expected
    assert torch.equal(get_flat(upgraded), get_flat(old))


def test_trusted_pickles_that_are_corrupt_or_foreign_are_one_line_errors(tmp_path):
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(FORMAT1.read_bytes()[:-100])
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=4))
    cases = [
        (truncated, f"checkpoint '{truncated}' is corrupt or truncated (UnpicklingError)"),
        (foreign, f"'{foreign}' is not a neuroes checkpoint"),
    ]
    for bad, message in cases:
        with pytest.raises(checkpoint.CheckpointError) as error:
            checkpoint.read(bad, trust=True)
        assert str(error.value) == message


def test_format_1_normalizers_keep_their_clip_and_statistics():
    old = ObservationNormalizer(3, clip=2.5)
    old.update(4.0, torch.tensor([4.0, 8.0, -4.0]), torch.tensor([8.0, 20.0, 6.0]))
    upgraded = checkpoint._upgrade_normalizer(old)
    assert upgraded.clip == 2.5 and float(upgraded.count) == 4.0
    assert torch.equal(upgraded.mean, old.mean) and torch.equal(upgraded.total_sq, old.total_sq)


def test_an_agent_holds_what_was_saved_and_makes_its_environment_with_it(tmp_path):
    env = gym.make("Pendulum-v1")
    policy = make_policy("linear", env.observation_space, env.action_space)
    path = tmp_path / "pendulum.pt"
    saved = {"env_id": "Pendulum-v1", "env_kwargs": {"g": 3.5}, "config": {"seed": 3}}
    checkpoint.save(path, _payload(policy, **saved, generation=7, eval_return=-12.5))
    agent = neuroes.load(path)
    assert (agent.config, agent.generation, agent.eval_return) == ({"seed": 3}, 7, -12.5)
    made = agent.make_env(render_mode="rgb_array")
    assert made.unwrapped.g == 3.5 and made.render_mode == "rgb_array"


def test_a_recurrent_agent_carries_its_state_until_reset(tmp_path):
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    policy = make_policy("gru", env.observation_space, env.action_space, hidden_size=8)
    path = tmp_path / "gru.pt"
    saved = {"env_id": "Pendulum-v1", "env_kwargs": {}, "config": {}, "generation": 0}
    checkpoint.save(path, _payload(policy, **saved))
    agent = neuroes.load(path)
    observations = [env.observation_space.sample() for _ in range(5)]
    first = [agent.act(o) for o in observations]
    carried = [agent.act(o) for o in observations]
    agent.reset()
    assert np.array_equal(first, [agent.act(o) for o in observations])
    assert not np.allclose(first, carried)
    state, actions = policy.initial_state(1), []
    for o in observations:  # the policy's own recurrence, one step at a time
        out, state = policy(torch.as_tensor(o)[None, None], state)
        actions.append(policy.head.to_numpy(policy.head(out))[0, 0])
    np.testing.assert_allclose(first, actions, rtol=1e-5, atol=1e-6)
