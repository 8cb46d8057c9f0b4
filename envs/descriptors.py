"""Final-position behavior descriptors, read from an environment's true state.

A descriptor is called right after the last step of an episode, before any reset, and returns
a float64 vector. Single-environment descriptors take any (possibly wrapped) environment;
vector descriptors take a native vector environment and return one row per sub-environment.
Positions are in the simulator's own units.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv

Descriptor = Callable[[gym.Env], np.ndarray]
VectorDescriptor = Callable[[VectorEnv], np.ndarray]


def cart_x(env: gym.Env) -> np.ndarray:
    """CartPole: the cart's x."""
    return np.array([env.unwrapped.state[0]], dtype=np.float64)


def car_x(env: gym.Env) -> np.ndarray:
    """MountainCar and MountainCarContinuous: the car's position along the valley."""
    return np.array([env.unwrapped.state[0]], dtype=np.float64)


def torso_x(env: gym.Env) -> np.ndarray:
    """Planar MuJoCo robots and Swimmer: the root's x, ``qpos[0]``."""
    return np.array(env.unwrapped.data.qpos[:1], dtype=np.float64)


def torso_xy(env: gym.Env) -> np.ndarray:
    """MuJoCo robots with a free root joint (Ant, Humanoid): the root's (x, y)."""
    return np.array(env.unwrapped.data.qpos[:2], dtype=np.float64)


def lander_xy(env: gym.Env) -> np.ndarray:
    """LunarLander: the lander body's world (x, y); the pad's centre is (10, helipad_y)."""
    position = env.unwrapped.lander.position
    return np.array([position.x, position.y], dtype=np.float64)


def hull_x(env: gym.Env) -> np.ndarray:
    """BipedalWalker: the hull's world x."""
    return np.array([env.unwrapped.hull.position.x], dtype=np.float64)


def point_xy(env: gym.Env) -> np.ndarray:
    """PointMaze: the robot's (x, y)."""
    return np.array(env.unwrapped.position, dtype=np.float64)


def vector_cart_x(env: VectorEnv) -> np.ndarray:
    """Gymnasium's CartPoleVectorEnv: the carts' x, (num_envs, 1); ``state`` is (4, num_envs)."""
    return np.array(env.unwrapped.state[:1].T, dtype=np.float64)


def vector_point_xy(env: VectorEnv) -> np.ndarray:
    """PointMazeVectorEnv: the robots' (x, y), (num_envs, 2)."""
    return np.array(env.unwrapped.position, dtype=np.float64)


DESCRIPTORS: dict[str, Descriptor] = {
    "CartPole": cart_x,
    "MountainCar": car_x,
    "MountainCarContinuous": car_x,
    "HalfCheetah": torso_x,
    "Hopper": torso_x,
    "Walker2d": torso_x,
    "Swimmer": torso_x,
    "Ant": torso_xy,
    "Humanoid": torso_xy,
    "LunarLander": lander_xy,
    "LunarLanderContinuous": lander_xy,
    "BipedalWalker": hull_x,
    "BipedalWalkerHardcore": hull_x,
    "PointMaze": point_xy,
    "DeceptiveMaze": point_xy,
}

VECTOR_DESCRIPTORS: dict[str, VectorDescriptor] = {
    "CartPole": vector_cart_x,
    "PointMaze": vector_point_xy,
    "DeceptiveMaze": vector_point_xy,
}


_VERSION = re.compile(r"-v\d+$")


def family(env_id: str) -> str:
    """The id without namespace and version: ``"neuroes/PointMaze-v0"`` -> ``"PointMaze"``."""
    return _VERSION.sub("", env_id.rsplit("/", 1)[-1])


def descriptor_for(env_id: str) -> Descriptor | None:
    """The descriptor of ``env_id``'s family (``"HalfCheetah-v5"`` -> ``torso_x``), or None."""
    return DESCRIPTORS.get(family(env_id))


def vector_descriptor_for(env_id: str) -> VectorDescriptor | None:
    """The descriptor of ``env_id``'s native vector environment, or None."""
    return VECTOR_DESCRIPTORS.get(family(env_id))
