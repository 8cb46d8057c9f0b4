"""Native vector environments whose ``reset`` takes one seed per sub-environment.

Any environment registered with a ``vector_entry_point`` whose ``reset(seed=[s0, s1, ...])``
seeds sub-environment j with ``s_j`` as the single environment's ``reset(seed=s_j)`` would
(``neuroes/PointMaze-v0``), with a vector descriptor in
:data:`neuroes.envs.descriptors.VECTOR_DESCRIPTORS`.
"""

from __future__ import annotations

import numpy as np

from neuroes.envs.descriptors import vector_descriptor_for
from neuroes.envs.vector.base import Step, make_env, native_vector


class SeededVector:
    """The sub-environments of one native vector environment of ``env_id``."""

    releases_gil = False

    def __init__(self, env_id: str, env_kwargs: dict | None) -> None:
        self.env_id, self.env_kwargs = env_id, env_kwargs or {}
        single = make_env(env_id, env_kwargs)
        self.observation_space, self.action_space = single.observation_space, single.action_space
        self.position_of = vector_descriptor_for(env_id)
        self.vector = None

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self.vector = native_vector(self.env_id, len(seeds), self.env_kwargs, self.vector)
        return self.vector.reset(seed=[int(s) for s in seeds])[0]

    def step(self, actions: np.ndarray, running: np.ndarray) -> Step:
        observations, rewards, terminated, truncated, _ = self.vector.step(actions)
        return observations, rewards, terminated, truncated

    def positions(self, rows: np.ndarray) -> np.ndarray:
        return self.position_of(self.vector)[rows]


def build(env_id: str, env_kwargs: dict | None) -> SeededVector:
    return SeededVector(env_id, env_kwargs)
