"""Batches of environments (neuroes.envs.vector) against plain Gymnasium loops.

Each MuJoCo case plays a policy population in ``gymnasium.make(env_id, **kwargs)`` one episode
at a time and checks that the evaluator returns the same returns, lengths, final positions and
observation sums, and that the batch replays every observation, reward and termination of
those episodes. The episodes include early terminations and truncations at the spec's limit
(``max_episode_steps``, a ``gymnasium.make`` keyword).
"""

from __future__ import annotations

import time
from concurrent.futures import Future

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroes.agents import BatchedForward, get_flat, make_policy, num_params
from neuroes.envs import descriptor_for
from neuroes.envs.vector import EnvFailure, EnvList, make_batch
from neuroes.envs.vector.cartpole import CartPoleBatch
from neuroes.envs.vector.native import SeededVector
from neuroes.envs.vector.pendulum import PendulumBatch
from neuroes.rollout import Evaluator, RolloutError, Rollouts

mujoco = pytest.importorskip("mujoco")
from neuroes.envs.vector.locomotion import TASKS, InvertedPendulum  # noqa: E402
from neuroes.envs.vector.mujoco_batch import MujocoBatch  # noqa: E402

# InvertedDoublePendulum and Reacher observe numpy's sin/cos of a batch, whose SIMD kernels may
# round a batch differently from one row on some CPUs: compared within a relative 1e-9 (they
# are bitwise on the machines measured). Every other case is compared bitwise.
RELATIVE_TOLERANCE = 1e-9
LIMIT = {"max_episode_steps": 30}
SEED, EPISODES, MEMBERS = 5, 2, 3

# (id, kwargs, tolerance, how the episodes end: "limit", "early" or "both")
CASES = [
    ("HalfCheetah-v5", {}, 0.0, "limit"),
    ("HalfCheetah-v5", {"exclude_current_positions_from_observation": False}, 0.0, "limit"),
    ("Hopper-v5", {}, 0.0, "both"),
    ("Hopper-v5", {"terminate_when_unhealthy": False, "healthy_reward": 0.5}, 0.0, "limit"),
    ("Walker2d-v5", {}, 0.0, "both"),
    ("Walker2d-v5", {"xml_file": "walker2d.xml", "frame_skip": 5}, 0.0, "both"),  # another model
    ("Swimmer-v5", {"exclude_current_positions_from_observation": False}, 0.0, "limit"),
    ("Ant-v5", {}, 0.0, "both"),
    (
        "Ant-v5",
        {
            "include_cfrc_ext_in_observation": False,
            "healthy_z_range": (0.3, 0.8),
            "exclude_current_positions_from_observation": False,
            "forward_reward_weight": 2.0,
            "healthy_reward": 0.5,
        },
        0,
        "both",
    ),
    ("Humanoid-v5", {}, 0.0, "both"),
    (
        "Humanoid-v5",
        {
            "include_cinert_in_observation": False,
            "contact_cost_weight": 1e-3,
            "exclude_current_positions_from_observation": False,
        },
        0,
        "both",
    ),
    ("InvertedPendulum-v5", {}, 0.0, "early"),
    ("InvertedDoublePendulum-v5", {}, RELATIVE_TOLERANCE, "early"),
    (
        "Reacher-v5",
        {"reward_control_weight": 0.5, "reward_dist_weight": 2.0},
        RELATIVE_TOLERANCE,
        "limit",
    ),
]


def _policy(env_id: str, kwargs: dict | None = None):
    env = gym.make(env_id, **(kwargs or {}))
    torch.manual_seed(0)
    return make_policy("mlp", env.observation_space, env.action_space, hidden=(16,))


def _population(policy, n: int, scale: float = 0.5) -> torch.Tensor:
    """The policy's parameters plus noise, scaled from 0 (the first member) to ``scale``."""
    noise = torch.randn(n, num_params(policy), generator=torch.Generator().manual_seed(1))
    return get_flat(policy) + torch.linspace(0, scale, n)[:, None] * noise


def _gymnasium_episode(env_id, kwargs, policy, theta) -> list[dict]:
    """Plays ``theta`` in gymnasium.make(env_id) for EPISODES episodes, recording each step."""
    forward, episodes = BatchedForward(policy), []
    for episode in range(EPISODES):
        env = gym.make(env_id, **kwargs)
        obs, _ = env.reset(seed=SEED + episode)
        record = {"first": obs, "actions": [], "obs": [], "rewards": [], "ends": []}
        done = False
        while not done:
            with torch.no_grad():
                flat = torch.as_tensor(obs, dtype=torch.float32).reshape(1, 1, -1)
                output, _ = forward(theta[None], flat)
                action = policy.head.to_numpy(policy.head(output))[0, 0]
            obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            for key, value in zip(
                ("actions", "obs", "rewards", "ends"),
                (action, obs, reward, (terminated, truncated)),
                strict=True,
            ):
                record[key].append(value)
        describe = descriptor_for(env_id)
        record["position"] = describe(env) if describe else np.zeros(0)
        episodes.append(record)
    return episodes


def _seen_sums(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """The float64 sums of the float32 observations the policy acted on, step by step."""
    total = total_sq = 0.0
    for obs in [record["first"], *record["obs"][:-1]]:
        seen = obs.astype(np.float32).astype(np.float64)
        total, total_sq = total + seen, total_sq + seen * seen
    return total, total_sq


def _replay(batch, records: list[dict], rtol: float) -> None:
    """Steps ``batch`` with the recorded actions and compares everything it returns."""
    seeds = np.array([SEED + e for _ in range(MEMBERS) for e in range(EPISODES)])
    obs = batch.reset(seeds)
    np.testing.assert_allclose(obs, [r["first"] for r in records], rtol=rtol, atol=0)
    running, step = np.ones(len(records), dtype=bool), 0
    while running.any():
        actions = np.stack(
            [r["actions"][min(step, len(r["actions"]) - 1)] for r in records]
        )  # rows that ended repeat their last action; they are not stepped
        obs, rewards, terminated, truncated = batch.step(actions, running)
        for j in np.flatnonzero(running):
            record = records[j]
            np.testing.assert_allclose(obs[j], record["obs"][step], rtol=rtol, atol=0)
            assert rewards[j] == record["rewards"][step], (j, step)
            assert (terminated[j], truncated[j]) == record["ends"][step], (j, step)
            if terminated[j] or truncated[j]:
                running[j] = False
                position = batch.positions(np.array([j]))[0]
                np.testing.assert_array_equal(position, record["position"])
        step += 1


@pytest.mark.parametrize("env_id, kwargs, rtol, ends", CASES)
def test_mujoco_batch_and_evaluator_match_gymnasium(env_id, kwargs, rtol, ends) -> None:
    kwargs = {**LIMIT, **kwargs}
    policy = _policy(env_id, kwargs)
    thetas = _population(policy, MEMBERS, scale=1.0)
    records = [
        r for i in range(MEMBERS) for r in _gymnasium_episode(env_id, kwargs, policy, thetas[i])
    ]
    lengths = np.array([len(r["rewards"]) for r in records])
    at_limit = lengths == LIMIT["max_episode_steps"]
    how = {"limit": at_limit.all(), "early": not at_limit.any(), "both": 0 < at_limit.mean() < 1}
    assert how[ends], lengths
    batch = make_batch(env_id, kwargs, descriptor_for(env_id))
    assert isinstance(batch, MujocoBatch)
    _replay(batch, records, rtol)

    result = Evaluator(env_id, policy, kwargs, threads=2).evaluate(thetas, EPISODES, seed=SEED)
    per_member = lengths.reshape(MEMBERS, EPISODES)
    np.testing.assert_array_equal(result.lengths, per_member.mean(1))
    np.testing.assert_array_equal(result.steps, per_member.sum(1))
    returns = np.array([sum(r["rewards"], 0.0) for r in records]).reshape(MEMBERS, EPISODES)
    np.testing.assert_array_equal(result.returns, returns.mean(1))
    positions = np.stack([r["position"] for r in records]).reshape(MEMBERS, EPISODES, -1)
    np.testing.assert_array_equal(result.behaviors, positions.mean(1))
    sums = [_seen_sums(r) for r in records]
    for k, name in enumerate(("observation_sum", "observation_sum_sq")):
        expected = np.stack([s[k] for s in sums]).reshape(MEMBERS, EPISODES, -1).sum(1)
        np.testing.assert_allclose(getattr(result, name), expected, rtol=rtol, atol=0)


def _gymnasium_outcome(env, velocity: float, action: np.ndarray) -> tuple[float, bool]:
    """The reward and termination that ``env``'s step computes from its current state, the
    rewarded coordinate having moved at ``velocity``."""
    name = type(env).__name__
    if name == "InvertedPendulumEnv":
        obs = env._get_obs()
        terminated = bool(not np.isfinite(obs).all() or np.abs(obs[1]) > 0.2)
        return float(not terminated), terminated
    if name == "InvertedDoublePendulumEnv":
        x, _, y = env.data.site_xpos[0]
        return env._get_rew(x, y, bool(y <= 1))[0], bool(y <= 1)
    if name == "ReacherEnv":
        return env._get_rew(action)[0], False
    terminated = hasattr(env, "is_healthy") and not env.is_healthy and env._terminate_when_unhealthy
    return env._get_rew(velocity, action)[0], terminated


@pytest.mark.parametrize("env_id, kwargs, rtol, ends", CASES)
def test_tasks_compute_what_gymnasium_computes_from_any_state(env_id, kwargs, rtol, ends) -> None:
    """States that short episodes never reach, one row each: heights and angles on both sides
    of every healthy range, speeds from 1 to 300 (past the observations' clips at 10 and
    Hopper's state range of 100), contact forces past Ant's clip and constraint forces past
    InvertedDoublePendulum's, and a non-finite row. The task's observations, rewards and
    terminations of the whole batch equal those Gymnasium computes from each state."""
    env = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=0)
    task, rng = TASKS[type(env)](env), np.random.default_rng(0)
    frames, velocities, actions, expected = [], rng.normal(0.0, 2.0, 16), [], []
    for row in range(16):
        qvel = rng.normal(0.0, 1.0, env.model.nv) * 10.0 ** rng.uniform(0.0, 2.5)
        qpos = env.init_qpos + rng.normal(0.0, 0.5, env.model.nq)
        if row in (5, 6):  # the pendulums' carts past the ends of their rail: large forces
            qpos[0] = 1.2 * (-1) ** row
        env.set_state(qpos, qvel)
        mujoco.mj_rnePostConstraint(env.model, env.data)  # the contact forces, as a step does
        if row == 3:
            env.data.qvel[0] = np.nan
        action = rng.uniform(-1.0, 1.0, env.model.nu).astype(np.float32)
        env.data.ctrl[:] = action
        frames.append({name: np.array(get(env.data)) for name, get in task.fields.items()})
        expected.append((env._get_obs(), *_gymnasium_outcome(env, velocities[row], action)))
        actions.append(action)
    f = {name: np.stack([frame[name] for frame in frames]) for name in task.fields}
    velocity = None if task.progress(f) is None else velocities
    rewards, terminated = task.reward(f, velocity, np.stack(actions))
    observations, gym_rewards, gym_terminated = map(np.array, zip(*expected, strict=True))
    np.testing.assert_allclose(task.observe(f), observations, rtol=rtol, atol=0)
    np.testing.assert_allclose(rewards, gym_rewards, rtol=rtol, atol=0)
    np.testing.assert_array_equal(terminated, gym_terminated)
    if ends != "limit":
        assert 0 < gym_terminated.mean() < 1, "the states should end some episodes, not all"


def test_inverted_pendulum_ends_the_rows_whose_state_is_not_finite() -> None:
    frames = {"qpos": np.array([[0.0, 0.1], [0.0, 0.1], [0.0, 0.3]]), "qvel": np.zeros((3, 2))}
    frames["qvel"][1, 0] = np.nan
    rewards, terminated = InvertedPendulum(None).reward(frames, None, np.zeros((3, 1)))
    assert terminated.tolist() == [False, True, True] and rewards.tolist() == [1.0, 0.0, 0.0]


def _same(a: Rollouts, b: Rollouts) -> None:
    for name in ("returns", "lengths", "behaviors", "steps", "observation_sum"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Ant-v5"])
def test_results_do_not_depend_on_threads_or_batching(env_id) -> None:
    policy = _policy(env_id)
    thetas, seeds = _population(policy, 7, scale=0.3), np.arange(7) % 3
    evaluate = Evaluator(env_id, policy, threads=1).evaluate
    alone = evaluate(thetas, episodes=2, max_steps=40, seed=seeds)
    assert len(np.unique(alone.lengths)) > 1, "episodes should end at different steps"
    for threads in (2, 3):
        threaded = Evaluator(env_id, policy, threads=threads)
        assert len(threaded.batches) == 1  # the others are built for the first evaluation
        _same(threaded.evaluate(thetas, episodes=2, max_steps=40, seed=seeds), alone)
    parts = [(0, 1), (1, 5), (5, 7)]
    split = [evaluate(thetas[a:b], episodes=2, max_steps=40, seed=seeds[a:b]) for a, b in parts]
    _same(Rollouts.concatenate(split), alone)


def _kind(env, env_kwargs=None, descriptor="auto"):
    return type(Evaluator(env, _policy("HalfCheetah-v5"), env_kwargs, descriptor).batches[0])


@pytest.mark.filterwarnings("ignore:.*HalfCheetah-v4 is out of date")
def test_which_environments_take_a_batch_and_which_fall_back() -> None:
    assert _kind("HalfCheetah-v5") is MujocoBatch
    assert _kind("HalfCheetah-v5", {"xml_file": "half_cheetah.xml", "frame_skip": 4}) is MujocoBatch
    assert _kind("HalfCheetah-v5", descriptor=None) is MujocoBatch
    assert _kind("HalfCheetah-v4") is EnvList  # another version: other classes
    assert _kind("HalfCheetah-v5", {"render_mode": "rgb_array"}) is EnvList  # renders each step
    assert _kind(lambda: gym.make("HalfCheetah-v5")) is EnvList  # a user factory
    assert _kind("HalfCheetah-v5", descriptor=lambda env: env.unwrapped.data.qpos[:2]) is EnvList
    assert type(make_batch("CartPole-v1")) is CartPoleBatch
    pendulum = make_batch("Pendulum-v1")
    assert type(pendulum) is PendulumBatch
    pendulum.reset(np.arange(3))
    assert pendulum.positions(np.array([0, 2])).shape == (2, 0)  # it has no descriptor
    assert type(make_batch("neuroes/PointMaze-v0")) is SeededVector
    assert type(make_batch("MountainCarContinuous-v0")) is EnvList


def test_a_native_vector_has_the_spaces_of_its_keywords() -> None:
    """A smaller arena bounds the observations more tightly, in the batch as in the env."""
    kwargs = {"half_size": 1.5}
    batch, single = (
        make_batch("neuroes/PointMaze-v0", kwargs),
        gym.make("neuroes/PointMaze-v0", **kwargs),
    )
    assert (
        batch.observation_space
        == single.observation_space
        != gym.make("neuroes/PointMaze-v0").observation_space
    )
    assert batch.action_space == single.action_space


def test_cartpole_batch_takes_keywords_as_gymnasium_does() -> None:
    """Sutton and Barto's reward: 0 a step, -1 when the pole falls."""
    kwargs, seeds = {"sutton_barto_reward": True}, np.array([0, 1])
    batch = make_batch("CartPole-v1", kwargs)
    assert type(batch) is CartPoleBatch
    batch.reset(seeds)
    envs = [gym.make("CartPole-v1", **kwargs) for _ in seeds]
    for env, seed in zip(envs, seeds.tolist(), strict=True):
        env.reset(seed=seed)
    actions, running = np.array([1, 0]), np.ones(2, dtype=bool)
    while running.any():  # both poles fall within a few steps of pushing one way
        _, rewards, terminated, _ = batch.step(actions, running)
        for j in np.flatnonzero(running):
            _, reward, fell, *_ = envs[j].step(actions[j])
            assert rewards[j] == reward and terminated[j] == fell
            assert reward == (-1 if fell else 0)
        running &= ~terminated


def test_pendulum_batch_clips_torques_and_takes_keywords_as_gymnasium_does() -> None:
    kwargs = {"g": 5.0, "max_episode_steps": 1}
    batch, seeds = make_batch("Pendulum-v1", kwargs), np.array([0, 1, 2])
    batch.reset(seeds)
    actions = np.array([[5.0], [-5.0], [0.5]], dtype=np.float32)  # the limit is 2
    obs, rewards, _, truncated = batch.step(actions, np.ones(3, dtype=bool))
    assert obs.dtype == batch.observation_space.dtype == np.float32 and truncated.all()
    for j, seed in enumerate(seeds.tolist()):
        env = gym.make("Pendulum-v1", **kwargs)
        env.reset(seed=seed)
        expected_obs, expected_reward, *_ = env.step(actions[j])
        np.testing.assert_allclose(obs[j], expected_obs, rtol=RELATIVE_TOLERANCE, atol=0)
        assert rewards[j] == pytest.approx(expected_reward, rel=RELATIVE_TOLERANCE, abs=0)


def test_a_simulator_error_names_its_row(monkeypatch) -> None:
    batch = make_batch("Hopper-v5")
    batch.reset(np.arange(3))
    step = mujoco.mj_step

    def failing(model, data, skip):
        if data is batch.active[1]:
            raise mujoco.FatalError("mj_stackAlloc: insufficient memory")
        step(model, data, skip)

    monkeypatch.setattr(mujoco, "mj_step", failing)
    with pytest.raises(EnvFailure) as failure:
        batch.step(np.zeros((3, 3), dtype=np.float32), np.ones(3, dtype=bool))
    assert failure.value.index == 1
    assert failure.value.what == "raised FatalError: mj_stackAlloc: insufficient memory"


def test_a_fallback_gives_the_same_results() -> None:
    policy = _policy("HalfCheetah-v5")
    thetas = _population(policy, 3)
    fast = Evaluator("HalfCheetah-v5", policy).evaluate(thetas, max_steps=20)
    listed = Evaluator("HalfCheetah-v5", policy, {"render_mode": "rgb_array"})
    _same(listed.evaluate(thetas, max_steps=20), fast)


@pytest.mark.parametrize("kwargs", [{}, {"render_mode": "rgb_array"}])
def test_non_finite_actions_name_the_member(kwargs) -> None:
    policy = _policy("HalfCheetah-v5")
    thetas = _population(policy, 3)
    thetas[1, 0] = float("nan")
    evaluator = Evaluator("HalfCheetah-v5", policy, kwargs)
    message = "member 1, episode 0: environment returned a non-finite reward at step 1$"
    with pytest.raises(RolloutError, match=message):
        evaluator.evaluate(thetas, max_steps=5)


def test_wrong_shaped_actions_fail_as_in_gymnasium() -> None:
    env = gym.make("HalfCheetah-v5")
    env.reset(seed=0)
    with pytest.raises(ValueError) as single:
        env.step(np.zeros(2))
    batch = make_batch("HalfCheetah-v5")
    batch.reset(np.zeros(3, dtype=np.int64))
    with pytest.raises(EnvFailure) as batched:
        batch.step(np.zeros((3, 2), dtype=np.float32), np.ones(3, dtype=bool))
    assert batched.value.what == str(batched.value) == f"raised ValueError: {single.value}"
    assert batched.value.index == 0  # every row has the wrong shape: the first is reported
    with pytest.raises(ValueError, match=r"maps 17 observations to actions of shape \(6,\); "):
        Evaluator("Hopper-v5", _policy("HalfCheetah-v5"))


class _Reshaped(gym.ObservationWrapper):
    """Pendulum whose observations lose a coordinate from step ``at`` on."""

    def __init__(self, at: int):
        super().__init__(gym.make("Pendulum-v1"))
        self.at, self.t = at, 0

    def reset(self, **kwargs):
        self.t = 0
        return super().reset(**kwargs)

    def step(self, action):
        self.t += 1
        return super().step(action)

    def observation(self, obs):
        return obs[:2] if self.t >= self.at else obs


@pytest.mark.parametrize("at, step", [(0, 0), (3, 3)])
def test_wrong_shaped_observations_name_the_member(at, step) -> None:
    policy = _policy("Pendulum-v1")
    message = (
        f"member 0, episode 0: environment returned an observation of shape \\(2,\\), "
        f"expected \\(3,\\) at step {step}$"
    )
    with pytest.raises(RolloutError, match=message):
        Evaluator(lambda: _Reshaped(at), policy).evaluate(_population(policy, 2))


def test_an_interrupted_threaded_evaluation_stops_its_shards(monkeypatch) -> None:
    policy = _policy("HalfCheetah-v5")
    thetas = _population(policy, 4)
    evaluator = Evaluator("HalfCheetah-v5", policy, threads=2)
    expected = evaluator.evaluate(thetas, max_steps=3)

    def interrupted(future, timeout=None):
        time.sleep(0.05)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Future, "exception", interrupted)
        with pytest.raises(KeyboardInterrupt):
            evaluator.evaluate(thetas)  # 1000-step episodes
    evaluator.executor.shutdown(wait=True)  # a shard still running would end its episodes
    assert all(batch.steps < 1000 for batch in evaluator.batches)
    evaluator.executor = None
    _same(evaluator.evaluate(thetas, max_steps=3), expected)
