"""The interface of a batch of environments that plays one episode per sub-environment.

:class:`BatchEnv` is what the evaluator steps: ``reset`` starts one episode per seed, ``step``
advances the sub-environments whose episodes are still running, ``positions`` reads final
positions. Sub-environment ``j`` reset with seed ``s`` starts where ``reset(seed=s)`` of the
single environment starts. An implementation is one module of :mod:`neuroes.envs.vector` with
a ``build`` function (see :data:`neuroes.envs.vector.FAMILIES`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import Space

EnvSource = str | Callable[[], gym.Env]
Step = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # obs, rewards, terminated, truncated
T = TypeVar("T")


class BatchEnv(Protocol):
    """Sub-environments of one environment, one episode each.

    ``observation_space`` and ``action_space`` are the single environment's. ``releases_gil``
    says that ``step`` spends most of its time in C without the GIL (MuJoCo), so that batches
    stepped on several threads run in parallel.
    """

    observation_space: Space
    action_space: Space
    releases_gil: bool

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        """Starts one episode per seed (n,); returns the first observations (n, ...)."""
        ...

    def step(self, actions: np.ndarray, running: np.ndarray) -> Step:
        """Advances the sub-environments where ``running`` (n,) is set by ``actions`` (n, ...).

        Returns observations (n, ...), float64 rewards (n,), ``terminated`` and ``truncated``
        (n,); rows that are not running hold any finite values. Raises :class:`EnvFailure`
        naming the row of a sub-environment that failed.
        """
        ...

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """The final-position descriptor (len(rows), k) of the given rows, in float64."""
        ...


class EnvFailure(Exception):
    """Sub-environment ``index`` failed; ``what`` says how, e.g. "raised ValueError: ..."."""

    def __init__(self, index: int, what: str) -> None:
        super().__init__(what)
        self.index, self.what = index, what


def make_env(env: EnvSource, env_kwargs: dict | None = None, **make_kwargs) -> gym.Env:
    """One environment from an id or a factory; an unknown id is a one-line ValueError."""
    if callable(env):
        return env()
    try:
        return gym.make(env, **(env_kwargs or {}), **make_kwargs)
    except gym.error.Error as error:
        raise ValueError(f"unknown environment {env!r}: {error}") from None


def by_seed(seeds: np.ndarray, start: Callable[[int], T]) -> list[T]:
    """``start(s)`` for each seed ``s`` of ``seeds``, in order, calling it once per distinct
    seed (a population's episodes share a few seeds)."""
    drawn = {s: start(int(s)) for s in np.unique(seeds)}
    return [drawn[s] for s in seeds]


def native_vector(
    env_id: str, num_envs: int, env_kwargs: dict, vector: gym.vector.VectorEnv | None
):
    """``vector`` if it has ``num_envs`` sub-environments, else the environment's own vector
    form (``vector_entry_point``) of that size, unwrapped."""
    if vector is not None and vector.num_envs == num_envs:
        return vector
    return gym.make_vec(
        env_id, num_envs, vectorization_mode="vector_entry_point", **env_kwargs
    ).unwrapped
