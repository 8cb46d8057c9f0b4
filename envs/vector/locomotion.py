"""Gymnasium's v5 MuJoCo environments as tasks of a :class:`MujocoBatch`.

Each task repeats its environment's ``_get_obs``, ``_get_rew`` and ``is_healthy`` over a batch,
operation for operation and in the same dtypes (the control cost of an action is float32, as
in the single environment), with the weights, ranges and flags the environment was made with
(read from the environment itself, so every keyword argument of ``gymnasium.make`` applies).
Elementwise float64 arithmetic in the same order rounds as the scalar code does, and the row
reductions (``np.sum`` of a row, ``einsum`` over bodies) take numpy's loops for one row, so
every task matches its single environment bitwise; InvertedDoublePendulum and Reacher also
call numpy's ``sin``/``cos``, whose SIMD kernels may round a batch differently from a single
row on some CPUs.

``build`` covers an environment exactly of these classes, made from an id (any ``xml_file``,
``frame_skip`` and reward keyword) without a render mode or extra registered wrappers; for
anything else it returns None and the evaluator falls back to a list of environments.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.envs.mujoco.inverted_double_pendulum_v5 import InvertedDoublePendulumEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from neuroes.envs.vector.base import make_env
from neuroes.envs.vector.mujoco_batch import MujocoBatch

F = dict[str, np.ndarray]
Outcome = tuple[np.ndarray, np.ndarray]  # rewards, terminated
STATE = {"qpos": lambda d: d.qpos, "qvel": lambda d: d.qvel}


def control_cost(weight: float, actions: np.ndarray) -> np.ndarray:
    """``weight * np.sum(np.square(action))`` per row, in the actions' dtype."""
    return weight * np.sum(np.square(actions), axis=1)


def within(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """``low < x < high``."""
    return (bounds[0] < x) & (x < bounds[1])


def squared(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` of each float64 as a scalar computes it (libm ``pow``, not ``x * x``)."""
    return np.array([v**2 for v in x.tolist()])


class Forward:
    """HalfCheetah and Swimmer: paid for progress in x, never terminated.

    Observations skip the first ``skipped`` coordinates of ``qpos`` when the environment
    excludes current positions.
    """

    fields = STATE
    position_columns = 1

    def __init__(self, env: MujocoEnv, skipped: int) -> None:
        self.skip = skipped if env._exclude_current_positions_from_observation else 0
        self.forward, self.ctrl = env._forward_reward_weight, env._ctrl_cost_weight

    def progress(self, f: F) -> np.ndarray:
        return f["qpos"][:, 0]

    def velocities(self, f: F) -> np.ndarray:
        return f["qvel"]

    def observe(self, f: F) -> np.ndarray:
        return np.concatenate([f["qpos"][:, self.skip :], self.velocities(f)], axis=1)

    def reward(self, f: F, velocity: np.ndarray, actions: np.ndarray) -> Outcome:
        rewards = self.forward * velocity - control_cost(self.ctrl, actions)
        return rewards, np.zeros(len(rewards), dtype=bool)


class Hopping(Forward):
    """Hopper and Walker2d: clipped velocities, an alive bonus, termination when unhealthy."""

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env, 1)
        self.alive, self.terminate = env._healthy_reward, env._terminate_when_unhealthy
        self.z, self.angle = env._healthy_z_range, env._healthy_angle_range
        self.state = getattr(env, "_healthy_state_range", None)  # Hopper only

    def velocities(self, f: F) -> np.ndarray:
        return np.clip(f["qvel"], -10, 10)

    def healthy(self, f: F) -> np.ndarray:
        qpos = f["qpos"]
        healthy = within(qpos[:, 1], self.z) & within(qpos[:, 2], self.angle)
        if self.state is not None:
            state = np.concatenate([qpos, f["qvel"]], axis=1)[:, 2:]
            healthy &= within(state, self.state).all(axis=1)
        return healthy

    def reward(self, f: F, velocity: np.ndarray, actions: np.ndarray) -> Outcome:
        healthy, ctrl = self.healthy(f), control_cost(self.ctrl, actions)
        rewards = (self.forward * velocity + healthy * self.alive) - ctrl
        return rewards, ~healthy & self.terminate


class Ant:
    """Paid for the main body's progress in x; contact forces clipped, observed and costed."""

    position_columns = 2

    def __init__(self, env: MujocoEnv) -> None:
        self.skip = 2 if env._exclude_current_positions_from_observation else 0
        self.forward, self.ctrl = env._forward_reward_weight, env._ctrl_cost_weight
        self.contact, self.force_range = env._contact_cost_weight, env._contact_force_range
        self.alive, self.terminate = env._healthy_reward, env._terminate_when_unhealthy
        self.z, self.forces = env._healthy_z_range, env._include_cfrc_ext_in_observation
        body = env.data.body(env._main_body).id
        self.fields = {**STATE, "cfrc_ext": lambda d: d.cfrc_ext, "body": lambda d: d.xpos[body]}

    def progress(self, f: F) -> np.ndarray:
        return f["body"][:, 0]

    def contact_forces(self, f: F) -> np.ndarray:
        return np.clip(f["cfrc_ext"], *self.force_range)

    def observe(self, f: F) -> np.ndarray:
        parts = [f["qpos"][:, self.skip :], f["qvel"]]
        if self.forces:
            parts.append(self.contact_forces(f)[:, 1:].reshape(len(f["qpos"]), -1))
        return np.concatenate(parts, axis=1)

    def reward(self, f: F, velocity: np.ndarray, actions: np.ndarray) -> Outcome:
        qpos, n = f["qpos"], len(f["qpos"])
        state = np.concatenate([qpos, f["qvel"]], axis=1)
        healthy = np.isfinite(state).all(axis=1) & (self.z[0] <= qpos[:, 2])
        healthy &= qpos[:, 2] <= self.z[1]
        squares = np.square(self.contact_forces(f)).reshape(n, -1)
        contact = self.contact * np.sum(squares, axis=1)
        costs = control_cost(self.ctrl, actions) + contact
        rewards = (velocity * self.forward + healthy * self.alive) - costs
        return rewards, ~healthy & self.terminate


class Humanoid:
    """Paid for the centre of mass's progress in x; observes the body quantities it includes."""

    position_columns = 2
    INCLUDED = {  # flag -> (field, first row or column kept)
        "_include_cinert_in_observation": ("cinert", 1),
        "_include_cvel_in_observation": ("cvel", 1),
        "_include_qfrc_actuator_in_observation": ("qfrc_actuator", 6),
        "_include_cfrc_ext_in_observation": ("cfrc_ext", 1),
    }

    def __init__(self, env: MujocoEnv) -> None:
        self.skip = 2 if env._exclude_current_positions_from_observation else 0
        self.forward, self.ctrl = env._forward_reward_weight, env._ctrl_cost_weight
        self.contact, self.cost_range = env._contact_cost_weight, env._contact_cost_range
        self.alive, self.terminate = env._healthy_reward, env._terminate_when_unhealthy
        self.z = env._healthy_z_range
        self.mass, self.total_mass = env.model.body_mass, env.model.body_mass.sum()
        self.included = [kept for flag, kept in self.INCLUDED.items() if getattr(env, flag) is True]
        self.fields = {**STATE}
        for name in ("ctrl", "xipos", "cinert", "cvel", "qfrc_actuator", "cfrc_ext"):
            self.fields[name] = lambda d, name=name: getattr(d, name)

    def progress(self, f: F) -> np.ndarray:
        return (np.einsum("b,pbj->pj", self.mass, f["xipos"]) / self.total_mass)[:, 0]

    def observe(self, f: F) -> np.ndarray:
        n = len(f["qpos"])
        parts = [f["qpos"][:, self.skip :], f["qvel"]]
        parts += [f[name][:, first:].reshape(n, -1) for name, first in self.included]
        return np.concatenate(parts, axis=1)

    def reward(self, f: F, velocity: np.ndarray, actions: np.ndarray) -> Outcome:
        n, z = len(f["qpos"]), f["qpos"][:, 2]
        healthy = within(z, self.z)
        contact = self.contact * np.sum(np.square(f["cfrc_ext"]).reshape(n, -1), axis=1)
        costs = control_cost(self.ctrl, f["ctrl"]) + np.clip(contact, *self.cost_range)
        rewards = (self.forward * velocity + healthy * self.alive) - costs
        return rewards, ~healthy & self.terminate


class InvertedPendulum:
    """Paid 1 per step until the pole leaves +-0.2 rad (or the state turns non-finite)."""

    fields = STATE
    position_columns = 0

    def __init__(self, env: MujocoEnv) -> None:
        pass

    def progress(self, f: F) -> None:
        return None

    def observe(self, f: F) -> np.ndarray:
        return np.concatenate([f["qpos"], f["qvel"]], axis=1)

    def reward(self, f: F, velocity: None, actions: np.ndarray) -> Outcome:
        observations = self.observe(f)
        terminated = ~np.isfinite(observations).all(axis=1) | (np.abs(observations[:, 1]) > 0.2)
        return (~terminated).astype(np.float64), terminated


class InvertedDoublePendulum:
    """Paid an alive bonus minus the tip's distance from upright and the joints' speeds."""

    position_columns = 0

    def __init__(self, env: MujocoEnv) -> None:
        self.alive = env._healthy_reward
        self.fields = {
            **STATE,
            "tip": lambda d: d.site_xpos[0],
            "qfrc_constraint": lambda d: d.qfrc_constraint,
        }

    def progress(self, f: F) -> None:
        return None

    def observe(self, f: F) -> np.ndarray:
        angles = np.ascontiguousarray(f["qpos"][:, 1:])
        parts = [f["qpos"][:, :1], np.sin(angles), np.cos(angles), np.clip(f["qvel"], -10, 10)]
        parts.append(np.clip(f["qfrc_constraint"], -10, 10)[:, :1])
        return np.concatenate(parts, axis=1)

    def reward(self, f: F, velocity: None, actions: np.ndarray) -> Outcome:
        x, y = f["tip"][:, 0], f["tip"][:, 2]
        v1, v2 = f["qvel"][:, 1], f["qvel"][:, 2]
        terminated = y <= 1
        distance = 0.01 * squared(x) + squared(y - 2)
        speed = 0.001 * squared(v1) + 0.005 * squared(v2)
        return self.alive * (~terminated) - distance - speed, terminated


class Reacher:
    """Paid minus the fingertip's distance to the target and the control cost."""

    position_columns = 0

    def __init__(self, env: MujocoEnv) -> None:
        self.dist, self.ctrl = env._reward_dist_weight, env._reward_control_weight
        tip, target = env.data.body("fingertip").id, env.data.body("target").id
        self.fields = {**STATE, "tip": lambda d: d.xpos[tip], "target": lambda d: d.xpos[target]}

    def progress(self, f: F) -> None:
        return None

    def observe(self, f: F) -> np.ndarray:
        theta = np.ascontiguousarray(f["qpos"][:, :2])
        reach = (f["tip"] - f["target"])[:, :2]
        parts = [np.cos(theta), np.sin(theta), f["qpos"][:, 2:], f["qvel"][:, :2], reach]
        return np.concatenate(parts, axis=1)

    def reward(self, f: F, velocity: None, actions: np.ndarray) -> Outcome:
        reach = f["tip"] - f["target"]
        distance = np.sqrt([row.dot(row) for row in reach])  # np.linalg.norm of one row
        rewards = -distance * self.dist + -np.sum(np.square(actions), axis=1) * self.ctrl
        return rewards, np.zeros(len(reach), dtype=bool)


TASKS = {
    HalfCheetahEnv: lambda env: Forward(env, 1),
    SwimmerEnv: lambda env: Forward(env, 2),
    HopperEnv: Hopping,
    Walker2dEnv: Hopping,
    AntEnv: Ant,
    HumanoidEnv: Humanoid,
    InvertedPendulumEnv: InvertedPendulum,
    InvertedDoublePendulumEnv: InvertedDoublePendulum,
    ReacherEnv: Reacher,
}


def build(env_id: str, env_kwargs: dict | None) -> MujocoBatch | None:
    """A batch of ``env_id`` made with ``env_kwargs``, or None where it does not apply."""
    env = make_env(env_id, env_kwargs, disable_env_checker=True)
    task = TASKS.get(type(env.unwrapped))
    if task is None or env.unwrapped.render_mode is not None or env.spec.additional_wrappers:
        return None
    return MujocoBatch(env, task(env.unwrapped))
