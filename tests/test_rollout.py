"""The vectorized evaluator against single-member and plain sequential rollouts."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroes.agents import (
    BatchedForward,
    ObservationNormalizer,
    flatten_observations,
    get_flat,
    make_policy,
    num_params,
)
from neuroes.rollout import Evaluator, RolloutError, default_threads, evaluate


def _population(policy, n: int, seed: int = 0, scale: float = 0.5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, num_params(policy), generator=generator)
    return get_flat(policy) + scale * noise


def _policy(env_id: str, kind: str = "mlp", **kwargs):
    env = gym.make(env_id)
    torch.manual_seed(0)
    return make_policy(kind, env.observation_space, env.action_space, **kwargs)


def _normalizer(env_id: str) -> ObservationNormalizer:
    env = gym.make(env_id)
    obs = np.stack([env.observation_space.sample() for _ in range(50)]) * 0.1
    normalizer = ObservationNormalizer(obs.shape[1])
    normalizer.update(*ObservationNormalizer.statistics(obs))
    return normalizer


@pytest.mark.parametrize(
    "env_id, kind, max_steps",
    [
        ("CartPole-v1", "mlp", None),  # native vector environment, Discrete actions
        ("CartPole-v1", "gru", None),  # recurrent state through the batch
        ("MountainCarContinuous-v0", "mlp", 200),  # list of environments, Box actions
        ("HalfCheetah-v5", "mlp", 150),  # MuJoCo, Box actions
    ],
)
def test_member_of_a_batch_equals_its_single_member_rollout(env_id, kind, max_steps) -> None:
    policy = _policy(env_id, kind)
    evaluator = Evaluator(env_id, policy, normalizer=_normalizer(env_id))
    thetas = _population(policy, 7)
    batch = evaluator.evaluate(thetas, episodes=2, max_steps=max_steps, seed=11)
    assert batch.returns.shape == (7,) and batch.behaviors.shape == (7, 1)
    assert len(np.unique(batch.returns)) > 1, "members should differ"
    for i in range(7):
        single = evaluator.evaluate(thetas[i : i + 1], episodes=2, max_steps=max_steps, seed=11)
        assert single.returns[0] == batch.returns[i]
        assert single.lengths[0] == batch.lengths[i]
        np.testing.assert_array_equal(single.behaviors[0], batch.behaviors[i])


# Numpy re-implementations of an environment (Gymnasium's CartPole vector, our Pendulum) call
# numpy's array sin/cos, which on some CPUs (AVX-512) take SIMD kernels that differ in the last
# bit from the scalar libm calls of the single environment; they agree to RELATIVE_TOLERANCE.
# A list of environments runs the single environment's own scalar code: bitwise.
RELATIVE_TOLERANCE = 1e-9


@pytest.mark.parametrize(
    "env_id, max_steps, rtol",
    [
        ("CartPole-v1", None, RELATIVE_TOLERANCE),  # Gymnasium's native vector environment
        ("Pendulum-v1", None, RELATIVE_TOLERANCE),  # the evaluator's own numpy Pendulum
        ("HalfCheetah-v5", 60, 0.0),  # a list of environments: bitwise
    ],
)
def test_evaluator_matches_a_plain_sequential_loop(env_id, max_steps, rtol) -> None:
    """Returns, lengths and the true final position read from the environment itself.

    Actions come from the same forward path (a one-member ``BatchedForward``): a plain module
    call rounds differently in the last bit, which a chaotic simulator amplifies.
    """
    policy = _policy(env_id)
    forward = BatchedForward(policy)
    thetas = _population(policy, 3, seed=2)
    result = evaluate(env_id, policy, thetas, episodes=2, max_steps=max_steps, seed=5)
    for i in range(3):
        returns, lengths, positions = [], [], []
        for episode in range(2):
            env = gym.make(env_id)
            obs, _ = env.reset(seed=5 + episode)
            total, steps, done = 0.0, 0, False
            while not done:
                inputs = torch.from_numpy(flatten_observations(env.observation_space, obs[None]))
                with torch.no_grad():
                    output, _ = forward(thetas[i : i + 1], inputs[None])
                    action = policy.head.to_numpy(policy.head(output))[0, 0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total, steps = total + reward, steps + 1
                done = terminated or truncated or steps == max_steps
            if env_id.startswith("Cart"):
                positions.append(env.unwrapped.state[0])
            elif env_id.startswith("Half"):
                positions.append(env.unwrapped.data.qpos[0])
            returns.append(total)
            lengths.append(steps)
        assert result.lengths[i] == np.mean(lengths)
        np.testing.assert_allclose(result.returns[i], np.mean(returns), rtol=rtol, atol=0)
        if positions:
            np.testing.assert_allclose(result.behaviors[i, 0], np.mean(positions), rtol=rtol)
    assert result.env_steps == 2 * result.lengths.sum()


def test_same_seed_same_result_different_seed_different() -> None:
    policy = _policy("CartPole-v1")
    evaluator = Evaluator("CartPole-v1", policy)
    thetas = _population(policy, 10)
    a = evaluator.evaluate(thetas, seed=1)
    b = evaluator.evaluate(thetas, seed=1)
    c = evaluator.evaluate(thetas, seed=2)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.behaviors, b.behaviors)
    assert not np.array_equal(a.behaviors, c.behaviors)


def test_observation_statistics_cover_every_state_the_policies_saw() -> None:
    policy = _policy("Pendulum-v1")
    result = evaluate("Pendulum-v1", policy, _population(policy, 4), max_steps=30, seed=0)
    count, total, total_sq = result.observation_stats
    assert count == result.env_steps == 4 * 30
    assert total.dtype == np.float64 and total.shape == (3,)
    assert np.all(total_sq >= total**2 / count - 1e-9)


def test_finished_members_are_not_stepped() -> None:
    steps_taken = []

    class Counting(gym.Wrapper):
        def step(self, action):
            steps_taken.append(1)
            return super().step(action)

    policy = _policy("Pendulum-v1")
    result = evaluate(
        lambda: Counting(gym.make("Pendulum-v1")), policy, _population(policy, 5), max_steps=17
    )
    assert len(steps_taken) == result.env_steps == 5 * 17


class _Faulty(gym.Wrapper):
    """Pendulum that goes wrong at a given step."""

    def __init__(self, fault: str, at: int = 3):
        super().__init__(gym.make("Pendulum-v1"))
        self.fault, self.at, self.t = fault, at, 0

    def reset(self, **kwargs):
        self.t = 0
        return super().reset(**kwargs)

    def step(self, action):
        self.t += 1
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == self.at:
            if self.fault == "raise":
                raise RuntimeError("simulator exploded")
            if self.fault == "nan-reward":
                reward = float("nan")
            if self.fault == "nan-obs":
                obs = obs * np.nan
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize(
    "fault, message",
    [
        ("raise", "member 0, episode 0: environment raised RuntimeError: simulator exploded at"),
        ("nan-reward", "member 0, episode 0: environment returned a non-finite reward at step 3"),
        ("nan-obs", "member 0, episode 0: environment returned a non-finite observation at step 3"),
    ],
)
def test_environment_faults_name_the_member_and_step(fault, message) -> None:
    policy = _policy("Pendulum-v1")
    with pytest.raises(RolloutError, match=message):
        evaluate(lambda: _Faulty(fault), policy, _population(policy, 2))


class _FaultAtSeed(gym.Wrapper):
    """Pendulum whose episodes started from seed ``100 + k`` raise at step k."""

    def reset(self, *, seed=None, options=None):
        self.t, self.at = 0, seed - 100 if seed is not None and seed >= 100 else None
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        if self.t == self.at:
            raise RuntimeError("simulator exploded")
        return super().step(action)


@pytest.mark.parametrize("threads, chunk_bytes", [(1, None), (2, None), (1, 1), (2, 1)])
def test_the_error_reported_is_the_one_a_single_batch_meets_first(threads, chunk_bytes) -> None:
    """Members 1, 3 and 4 fail at steps 5, 2 and 2: whatever the shards (threads) and chunks,
    the error is the earliest step's, of its lowest member."""
    policy = _policy("Pendulum-v1")
    evaluator = Evaluator(lambda: _FaultAtSeed(gym.make("Pendulum-v1")), policy, threads=threads)
    if chunk_bytes is not None:
        evaluator.chunk_bytes = chunk_bytes  # one member per chunk
    message = "member 3, episode 0: environment raised RuntimeError: simulator exploded at step 2"
    with pytest.raises(RolloutError, match=message):
        evaluator.evaluate(_population(policy, 6), seed=[0, 105, 0, 102, 102, 0])


def test_evaluate_once_is_an_evaluator_from_seed_0() -> None:
    policy, thetas = _policy("CartPole-v1"), _population(_policy("CartPole-v1"), 4)
    once = evaluate("CartPole-v1", policy, thetas, 2, max_steps=60, descriptor=None)
    again = Evaluator("CartPole-v1", policy, descriptor=None).evaluate(thetas, 2, 60, seed=0)
    assert once.behaviors.shape == (4, 0) and len(np.unique(once.returns)) > 1
    np.testing.assert_array_equal(once.returns, again.returns)
    np.testing.assert_array_equal(once.observation_sum, again.observation_sum)


def test_default_threads_are_the_cores_this_process_may_use(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5, 7}, raising=False)
    assert default_threads() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert default_threads() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undetermined
    assert default_threads() == 1


def test_bad_input_is_rejected() -> None:
    policy = _policy("Pendulum-v1")
    with pytest.raises(ValueError, match="unknown environment 'NoSuchEnv-v0'"):
        Evaluator("NoSuchEnv-v0", policy)
    with pytest.raises(ValueError, match=r"thetas must have shape \(population, parameters\)"):
        evaluate("Pendulum-v1", policy, torch.zeros(num_params(policy)))
