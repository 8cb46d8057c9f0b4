"""Behavior descriptors, reward wrappers, custom environments (``neuroes/PointMaze-v0``) and the
evaluator's batches of environments (:mod:`neuroes.envs.vector`).

Importing this package registers the custom environments with Gymnasium.
"""

from __future__ import annotations

import gymnasium as gym

from neuroes.envs.descriptors import (
    DESCRIPTORS,
    VECTOR_DESCRIPTORS,
    Descriptor,
    VectorDescriptor,
    car_x,
    cart_x,
    descriptor_for,
    family,
    hull_x,
    lander_xy,
    point_xy,
    torso_x,
    torso_xy,
    vector_cart_x,
    vector_descriptor_for,
    vector_point_xy,
)
from neuroes.envs.maze import GOAL, HARD_MAZE, HARD_MAZE_HALF_SIZE, Maze
from neuroes.envs.point_maze import EPISODE_STEPS, PointMazeEnv, PointMazeVectorEnv
from neuroes.envs.wrappers import RemoveAliveBonus, RemoveControlCost

POINT_MAZE_ID = "neuroes/PointMaze-v0"
DECEPTIVE_MAZE_ID = "neuroes/DeceptiveMaze-v0"  # HARD_MAZE, rewarded toward GOAL

MAZES = {
    POINT_MAZE_ID: {},
    DECEPTIVE_MAZE_ID: {"walls": HARD_MAZE, "goal": GOAL, "half_size": HARD_MAZE_HALF_SIZE},
}
for env_id, kwargs in MAZES.items():
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point="neuroes.envs.point_maze:PointMazeEnv",
            vector_entry_point="neuroes.envs.point_maze:PointMazeVectorEnv",
            max_episode_steps=EPISODE_STEPS,
            kwargs=kwargs,
        )

__all__ = [
    "DECEPTIVE_MAZE_ID",
    "DESCRIPTORS",
    "EPISODE_STEPS",
    "POINT_MAZE_ID",
    "VECTOR_DESCRIPTORS",
    "Descriptor",
    "Maze",
    "PointMazeEnv",
    "PointMazeVectorEnv",
    "RemoveAliveBonus",
    "RemoveControlCost",
    "VectorDescriptor",
    "car_x",
    "cart_x",
    "descriptor_for",
    "family",
    "hull_x",
    "lander_xy",
    "point_xy",
    "torso_x",
    "torso_xy",
    "vector_cart_x",
    "vector_descriptor_for",
    "vector_point_xy",
]
