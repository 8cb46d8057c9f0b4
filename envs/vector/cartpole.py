"""CartPole: Gymnasium's native vector environment, with one seed per sub-environment.

The native ``reset`` draws every sub-environment's start from one generator, so the start of
sub-environment j would depend on j and on the population size. Each start is instead the
state ``CartPoleEnv.reset(seed=s)`` draws, written into the vector's state. All
sub-environments are stepped in one numpy call, finished ones included (stepping them costs
less than selecting the running ones).
"""

from __future__ import annotations

import numpy as np

from neuroes.envs.descriptors import vector_cart_x
from neuroes.envs.vector.base import Step, by_seed, make_env, native_vector


class CartPoleBatch:
    """CartPole sub-environments in one ``CartPoleVectorEnv``."""

    releases_gil = False

    def __init__(self, env_id: str, env_kwargs: dict | None) -> None:
        self.env_id, self.env_kwargs = env_id, env_kwargs or {}
        self.single = make_env(env_id, env_kwargs).unwrapped
        self.observation_space = self.single.observation_space
        self.action_space = self.single.action_space
        self.vector = None

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self.vector = native_vector(self.env_id, len(seeds), self.env_kwargs, self.vector)
        self.vector.reset(seed=0)
        self.vector.state = np.stack(by_seed(seeds, self._start), axis=1)
        return self.vector.state.T.astype(np.float32)

    def _start(self, seed: int) -> np.ndarray:
        self.single.reset(seed=seed)
        return np.array(self.single.state, dtype=np.float64)

    def step(self, actions: np.ndarray, running: np.ndarray) -> Step:
        observations, rewards, terminated, truncated, _ = self.vector.step(actions)
        return observations, rewards.astype(np.float64), terminated, truncated

    def positions(self, rows: np.ndarray) -> np.ndarray:
        return vector_cart_x(self.vector)[rows]


def build(env_id: str, env_kwargs: dict | None) -> CartPoleBatch:
    return CartPoleBatch(env_id, env_kwargs)
