"""neuroes.envs: descriptors on real environments, reward wrappers and the PointMaze envs."""

from __future__ import annotations

import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import neuroes.envs
from neuroes.envs import (
    EPISODE_STEPS,
    Maze,
    PointMazeEnv,
    PointMazeVectorEnv,
    RemoveAliveBonus,
    RemoveControlCost,
    car_x,
    cart_x,
    descriptor_for,
    hull_x,
    lander_xy,
    point_xy,
    torso_x,
    torso_xy,
    vector_cart_x,
    vector_descriptor_for,
    vector_point_xy,
)

POINT_MAZE = "neuroes/PointMaze-v0"


def play(env: gym.Env, seed: int = 0, max_steps: int = 10_000) -> tuple:
    """Random actions until the episode ends; the last step's (obs, terminated, info)."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(max_steps):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            return obs, terminated, info
    raise AssertionError("episode did not end")


# ---------------------------------------------------------------- descriptors


@pytest.mark.parametrize(
    "env_id", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5"]
)
def test_mujoco_descriptor_is_the_torso_position(env_id: str) -> None:
    mujoco = pytest.importorskip("mujoco")
    env = gym.make(env_id, max_episode_steps=25)
    _, _, info = play(env)
    behavior = descriptor_for(env_id)(env)
    assert behavior.dtype == np.float64
    assert behavior[0] == info["x_position"] and behavior[0] != 0.0
    if len(behavior) == 2:
        assert behavior[1] == info["y_position"]
    # The torso body's world position, recomputed from the final joint state.
    data = env.unwrapped.data
    mujoco.mj_kinematics(env.unwrapped.model, data)
    np.testing.assert_allclose(behavior, data.body("torso").xpos[: len(behavior)], atol=1e-12)


def test_cartpole_descriptor_is_the_cart_x_at_termination() -> None:
    env = gym.make("CartPole-v1")
    obs, terminated, _ = play(env)
    behavior = cart_x(env)
    assert terminated and behavior.shape == (1,) and behavior.dtype == np.float64
    assert np.float32(behavior[0]) == obs[0] and behavior[0] != 0.0


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "MountainCarContinuous-v0"])
def test_mountain_car_descriptor_is_the_position(env_id: str) -> None:
    env = gym.make(env_id, max_episode_steps=30)
    obs, _, _ = play(env)
    assert descriptor_for(env_id) is car_x
    assert np.float32(car_x(env)[0]) == obs[0]


def test_lunar_lander_descriptor_is_the_body_position_after_a_crash() -> None:
    pytest.importorskip("Box2D")
    from gymnasium.envs.box2d import lunar_lander as ll

    env = gym.make("LunarLander-v3")
    obs, terminated, _ = play(env)
    assert terminated
    # Undo the observation's normalization of the lander's position.
    half_w, half_h = ll.VIEWPORT_W / ll.SCALE / 2, ll.VIEWPORT_H / ll.SCALE / 2
    pad_y = env.unwrapped.helipad_y + ll.LEG_DOWN / ll.SCALE
    expected = [obs[0] * half_w + half_w, obs[1] * half_h + pad_y]
    np.testing.assert_allclose(lander_xy(env), expected, atol=1e-4)


def test_bipedal_walker_descriptor_is_the_hull_x() -> None:
    pytest.importorskip("Box2D")
    from gymnasium.envs.box2d import bipedal_walker as bw

    env = gym.make("BipedalWalker-v3", max_episode_steps=50)
    obs, _, _ = play(env)
    # The reward shaping of the last step is 130 * hull_x / SCALE - 5 * |hull angle|.
    expected = (env.unwrapped.prev_shaping + 5.0 * abs(obs[0])) * bw.SCALE / 130.0
    assert hull_x(env)[0] == pytest.approx(expected, abs=1e-5)


def test_point_maze_descriptor_is_the_final_position() -> None:
    env = gym.make(POINT_MAZE)
    obs, _, _ = play(env)
    np.testing.assert_array_equal(point_xy(env).astype(np.float32), obs[:2])


def test_cartpole_vector_descriptor_reads_each_cart() -> None:
    env = gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    env.action_space.seed(0)
    while True:
        obs, _, terminated, _, _ = env.step(env.action_space.sample())
        if terminated.any():
            break
    positions = vector_cart_x(env)
    assert positions.shape == (8, 1) and positions.dtype == np.float64
    np.testing.assert_array_equal(positions[:, 0].astype(np.float32), obs[:, 0])


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("HalfCheetah-v5", torso_x),
        ("HalfCheetah", torso_x),
        ("Swimmer-v5", torso_x),
        ("Humanoid-v5", torso_xy),
        ("Ant", torso_xy),
        ("CartPole-v1", cart_x),
        ("MountainCarContinuous-v0", car_x),
        ("LunarLander-v3", lander_xy),
        ("BipedalWalker-v3", hull_x),
        ("neuroes/PointMaze-v0", point_xy),
        ("PointMaze", point_xy),
        ("Pendulum-v1", None),
        ("ALE/Pong-v5", None),
        ("HalfCheetahX-v5", None),
    ],
)
def test_descriptor_for(env_id: str, expected) -> None:
    assert descriptor_for(env_id) is expected


def test_vector_descriptor_for() -> None:
    assert vector_descriptor_for("CartPole-v1") is vector_cart_x
    assert vector_descriptor_for("neuroes/PointMaze-v0") is vector_point_xy
    assert vector_descriptor_for("HalfCheetah-v5") is None


# ---------------------------------------------------------------- wrappers


def test_remove_alive_bonus_subtracts_the_bonus_actually_paid() -> None:
    plain = gym.make("Hopper-v5")
    wrapped = RemoveAliveBonus(gym.make("Hopper-v5"))
    plain.reset(seed=3)
    wrapped.reset(seed=3)
    actions = np.random.default_rng(3).uniform(-1, 1, (1000, 3))
    bonuses = []
    for action in actions:
        _, reward, terminated, _, info = plain.step(action)
        _, adjusted, _, _, _ = wrapped.step(action)
        bonuses.append(info["reward_survive"])
        assert adjusted == pytest.approx(reward - info["reward_survive"], abs=1e-12)
        assert adjusted == pytest.approx(info["reward_forward"] + info["reward_ctrl"], abs=1e-12)
        if terminated:
            break
    assert terminated and bonuses[0] == 1.0 and bonuses[-1] == 0.0


def test_remove_alive_bonus_rejects_an_environment_without_one() -> None:
    with pytest.raises(ValueError, match="alive bonus"):
        RemoveAliveBonus(gym.make("HalfCheetah-v5"))


def test_remove_control_cost() -> None:
    env = RemoveControlCost(gym.make("HalfCheetah-v5"))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.ones(6))
    assert info["reward_ctrl"] < 0
    assert reward == pytest.approx(info["reward_forward"], abs=1e-12)
    env = RemoveControlCost(gym.make("CartPole-v1"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reward_ctrl"):
        env.step(0)


# ---------------------------------------------------------------- PointMaze


def steered_actions(steps: int, n: int, seed: int) -> np.ndarray:
    """Actions (steps, n, 2): one heading per robot plus noise, reaching walls, some beyond +-1."""
    rng = np.random.default_rng(seed)
    heading = rng.uniform(-1.2, 1.2, (1, n, 2))
    return (heading + rng.normal(0, 0.4, (steps, n, 2))).astype(np.float32)


def test_vector_env_matches_single_envs_bitwise_whatever_the_batch() -> None:
    n, steps = 50, 2 * EPISODE_STEPS + 30
    seeds = [int(s) for s in np.random.default_rng(0).integers(0, 2**31, n)]
    actions = steered_actions(steps, n, seed=1)
    vector = PointMazeVectorEnv(n)
    obs, _ = vector.reset(seed=seeds)
    trace = [(obs, None, None, None)]
    for t in range(steps):
        trace.append(vector.step(actions[t])[:4])
    assert np.array_equal(vector_point_xy(vector).astype(np.float32), trace[-1][0][:, :2])

    blocked = 0
    for j in (0, 17, 49):
        single = gym.make(POINT_MAZE)  # PointMazeEnv under a TimeLimit of EPISODE_STEPS
        alone = PointMazeVectorEnv(1)
        np.testing.assert_array_equal(single.reset(seed=seeds[j])[0], trace[0][0][j])
        np.testing.assert_array_equal(alone.reset(seed=[seeds[j]])[0][0], trace[0][0][j])
        done = False
        for t in range(steps):
            if done:  # next-step autoreset: an unseeded reset, zero reward
                obs, reward, terminated, truncated = single.reset()[0], 0.0, False, False
            else:
                obs, reward, terminated, truncated, _ = single.step(actions[t, j])
            done = terminated or truncated
            expected = tuple(x[j] for x in trace[t + 1])
            assert np.array_equal(obs, expected[0]) and reward == expected[1], (j, t)
            assert (terminated, truncated) == (expected[2], expected[3]), (j, t)
            got = alone.step(actions[t, j : j + 1])
            assert np.array_equal(got[0][0], expected[0]) and got[1][0] == expected[1]
            blocked += bool((obs[2:] == 0).any())
    assert blocked > 0  # the comparison covered collisions


def test_vector_reset_with_one_int_seeds_sub_env_j_with_seed_plus_j() -> None:
    vector = PointMazeVectorEnv(3)
    obs, _ = vector.reset(seed=10)
    for j in range(3):
        np.testing.assert_array_equal(obs[j], PointMazeEnv().reset(seed=10 + j)[0])
    with pytest.raises(ValueError, match="expected 3 seeds"):
        vector.reset(seed=[1, 2])


def test_unseeded_vector_reset_continues_each_sub_env_like_a_single_env() -> None:
    vector = PointMazeVectorEnv(3)
    vector.reset(seed=[7, 7, 9])
    obs, _ = vector.reset()
    for j, seed in enumerate((7, 7, 9)):
        single = PointMazeEnv()
        single.reset(seed=seed)
        np.testing.assert_array_equal(obs[j], single.reset()[0])
    assert np.array_equal(obs[0], obs[1]) and not np.array_equal(obs[0], obs[2])


def test_reset_is_determined_by_the_seed() -> None:
    env = PointMazeEnv()
    first = env.reset(seed=5)[0]
    assert np.array_equal(env.reset(seed=5)[0], first)
    assert not np.array_equal(env.reset(seed=6)[0], first)
    assert np.all(np.abs(first[:2]) <= 0.01) and np.any(first[:2] != 0)


def test_reward_is_progress_in_x_and_the_wall_is_a_trap() -> None:
    env = PointMazeEnv()
    start = env.reset(seed=0)[0]
    total = 0.0
    for _ in range(EPISODE_STEPS):
        obs, reward, terminated, _, _ = env.step(np.array([1.0, 0.0], dtype=np.float32))
        total += reward
        assert not terminated
    assert env.position[0] == 0.5 and obs[2] == 0.0  # stopped exactly at the wall's face
    assert total == pytest.approx(0.5 - start[0], abs=1e-12)


def test_robot_slides_along_walls_and_goes_around() -> None:
    env = PointMazeEnv()
    env.reset(seed=0)
    for _ in range(15):
        env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert env.position[0] == 0.5 and env.position[1] > 0.7  # blocked in x, still moving in y
    for _ in range(10):
        env.step(np.array([0.0, 1.0], dtype=np.float32))
    for _ in range(40):
        env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert env.position[0] == 2.0 and env.position[1] > 1.0  # round the wall, at the east edge


def test_sliding_along_a_wall_of_adjacent_boxes_does_not_snag_at_the_seam() -> None:
    env = PointMazeEnv(walls=[(-0.3, 0.3, 0.1, 0.5), (0.1, 0.3, 0.5, 0.5)])
    env.reset(seed=0)
    for _ in range(10):
        env.step(np.array([0.0, 1.0], dtype=np.float32))
    assert env.position[1] == 0.3
    for _ in range(8):
        env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert env.position[1] == 0.3 and env.position[0] > 0.35  # past the seam at x = 0.1


def test_thin_walls_are_not_tunnelled() -> None:
    env = PointMazeEnv(walls=[(0.3, -1.0, 0.3001, 1.0)])
    env.reset(seed=0)
    for _ in range(20):
        env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert env.position[0] == 0.3


def test_no_move_ever_crosses_a_wall() -> None:
    corners = [(-1.5 + 0.5 * i, -1.5 + 0.5 * k) for i in range(7) for k in range(7)]
    walls = [(x, y, x + 0.3, y + 0.3) for x, y in corners if (x, y) != (0.0, 0.0)]
    box = np.array(walls)
    n = 500
    vector = PointMazeVectorEnv(n, walls=walls, half_size=1.6)
    vector.reset(seed=0)
    blocked = 0
    for action in steered_actions(EPISODE_STEPS - 1, n, seed=2):
        before = vector.position.copy()
        obs = vector.step(action)[0]
        after = vector.position
        blocked += (obs[:, 2:] == 0).any(1).sum()
        # Moves go along x first, then along y: neither leg may overlap a wall's interior.
        for (lo, hi), across, axis in (
            ((before[:, 0], after[:, 0]), before[:, 1], 0),
            ((before[:, 1], after[:, 1]), after[:, 0], 1),
        ):
            low, high = np.minimum(lo, hi)[:, None], np.maximum(lo, hi)[:, None]
            in_band = (box[:, 1 - axis] < across[:, None]) & (across[:, None] < box[:, 3 - axis])
            overlaps = (low < box[:, axis + 2]) & (high > box[:, axis])
            assert not (in_band & overlaps).any()
    assert np.abs(vector.position).max() <= 1.6 and blocked > 1000


def test_walls_over_the_start_are_rejected() -> None:
    with pytest.raises(ValueError, match="start region"):
        PointMazeEnv(walls=[(-0.1, -0.1, 0.1, 0.1)])
    with pytest.raises(ValueError, match="finite boxes"):
        Maze(walls=[(1.0, 0.0, 0.5, 1.0)])


def test_check_env_passes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(POINT_MAZE).unwrapped)
        check_env(gym.make(POINT_MAZE, render_mode="rgb_array").unwrapped)


def test_make_vec_with_vector_entry_point_truncates_and_autoresets() -> None:
    env = gym.make_vec(POINT_MAZE, num_envs=8, vectorization_mode="vector_entry_point")
    assert isinstance(env.unwrapped, PointMazeVectorEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8, 6) and env.single_observation_space.contains(obs[0])
    right = np.tile(np.array([1.0, 0.0], dtype=np.float32), (8, 1))
    for t in range(EPISODE_STEPS):
        obs, rewards, terminated, truncated, _ = env.step(right)
        assert not terminated.any() and truncated.all() == (t == EPISODE_STEPS - 1)
    assert (obs[:, 0] == 0.5).all()
    obs, rewards, _, truncated, _ = env.step(right)
    assert (rewards == 0).all() and not truncated.any() and (np.abs(obs[:, :2]) <= 0.01).all()


def test_rgb_array_render_shows_walls_and_robot() -> None:
    env = gym.make(POINT_MAZE, render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(10):
        env.step(np.array([0.0, -1.0], dtype=np.float32))
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    colors = {tuple(c) for c in frame.reshape(-1, 3)}
    assert {(60, 60, 60), (220, 50, 50), (70, 130, 220)} <= colors
    robot_rows = np.flatnonzero((frame == (220, 50, 50)).all(2).any(1))
    assert robot_rows.mean() > 128  # moved down, drawn below the centre


def test_registration_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(neuroes.envs)
    assert gym.spec(POINT_MAZE).max_episode_steps == EPISODE_STEPS


def test_the_deceptive_maze_rewards_progress_to_a_goal_behind_a_trap() -> None:
    """Straight at the goal ends on the trap's far wall; the way around scores more. The vector
    form gives the single environment's rewards bitwise."""
    env = gym.make("neuroes/DeceptiveMaze-v0")

    def play(plan: list[tuple[tuple[float, float], int]]) -> float:
        env.reset(seed=0)
        total = 0.0
        for action, steps in plan:
            for _ in range(steps):
                total += env.step(np.array(action, dtype=np.float32))[1]
        return total

    straight = play([((1, 0), 100)])
    assert env.unwrapped.position[0] == 0.5 and straight == pytest.approx(0.5, abs=0.01)
    around = play([((-1, 0), 12), ((0, 1), 16), ((1, 0), 26), ((1, -1), 16), ((0, 0), 30)])
    assert around > straight + 0.5
    vector = gym.make_vec("neuroes/DeceptiveMaze-v0", 4, vectorization_mode="vector_entry_point")
    vector.reset(seed=3)
    actions = steered_actions(EPISODE_STEPS, 4, seed=2)
    rewards = np.stack([vector.step(actions[t])[1] for t in range(EPISODE_STEPS)])
    for j in range(4):
        env.reset(seed=3 + j)
        single = [env.step(actions[t, j])[1] for t in range(EPISODE_STEPS)]
        assert np.array_equal(rewards[:, j], single)
