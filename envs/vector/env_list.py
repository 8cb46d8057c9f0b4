"""The fallback batch: ordinary environments, one per episode, stepped one after another.

Only sub-environments whose episodes are still running are stepped: a simulator step (MuJoCo,
Box2D) is the expensive part. Each runs the single environment's own code, so its results are
those of a plain loop over the environment, bitwise.
"""

from __future__ import annotations

import numpy as np

from neuroes.envs.descriptors import Descriptor
from neuroes.envs.vector.base import EnvFailure, EnvSource, Step, make_env


class EnvList:
    """Environments built from ``env`` (an id, with ``env_kwargs``, or a factory); positions
    come from ``descriptor``, a function of a single environment."""

    releases_gil = False

    def __init__(self, env: EnvSource, env_kwargs: dict | None, descriptor: Descriptor | None):
        self.source, self.env_kwargs, self.descriptor = env, env_kwargs, descriptor
        first = make_env(env, env_kwargs, disable_env_checker=True)
        self.envs = [first]
        self.observation_space, self.action_space = first.observation_space, first.action_space

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        while len(self.envs) < len(seeds):
            self.envs.append(make_env(self.source, self.env_kwargs, disable_env_checker=True))
        self.active = self.envs[: len(seeds)]
        first = [env.reset(seed=int(s))[0] for env, s in zip(self.active, seeds, strict=True)]
        self.observations = np.stack([self._checked(j, obs) for j, obs in enumerate(first)])
        return self.observations

    def step(self, actions: np.ndarray, running: np.ndarray) -> Step:
        n = len(self.active)
        self.observations = observations = self.observations.copy()
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for j in np.flatnonzero(running):
            try:
                obs, rewards[j], terminated[j], truncated[j], _ = self.active[j].step(actions[j])
            except Exception as error:
                raise EnvFailure(j, f"raised {type(error).__name__}: {error}") from error
            observations[j] = self._checked(j, obs)
        return observations, rewards, terminated, truncated

    def _checked(self, j: int, obs) -> np.ndarray:
        obs, shape = np.asarray(obs), self.observation_space.shape
        if obs.shape != shape:
            raise EnvFailure(j, f"returned an observation of shape {obs.shape}, expected {shape}")
        return obs

    def positions(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.descriptor(self.active[j]) for j in rows])
