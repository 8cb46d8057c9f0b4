"""Pendulum: Gymnasium's ``PendulumEnv.step`` repeated elementwise over a batch in numpy.

Gymnasium has no vector Pendulum. This one computes in the single environment's dtypes (the
torque stays float32) and truncates at the spec's ``max_episode_steps``; starts are those
``PendulumEnv.reset(seed=s)`` draws. Each sub-environment matches the single environment to
the last bit of numpy's array ``sin``, ``cos`` and ``power``: bitwise where they equal the
scalar libm calls, within a relative 1e-9 of returns on CPUs where they take other SIMD kernels
(AVX-512).
"""

from __future__ import annotations

import numpy as np

from neuroes.envs.vector.base import Step, by_seed, make_env


def _square(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` through numpy's ``power``, as the single environment's scalar ``** 2`` computes
    it (libm ``pow``, which can differ in the last bit from the ``x * x`` of ``array ** 2``);
    where numpy's array ``power`` takes SIMD kernels (AVX-512) it can differ from the scalar in
    the last bit too."""
    return np.power(x, np.full_like(x, 2.0))


class PendulumBatch:
    """Pendulum sub-environments as (n, 2) float64 states: angle and angular speed."""

    releases_gil = False

    def __init__(self, env_id: str, env_kwargs: dict | None) -> None:
        env = make_env(env_id, env_kwargs)
        self.single = env.unwrapped
        self.limit = env.spec.max_episode_steps if env.spec else None
        self.observation_space, self.action_space = env.observation_space, env.action_space

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self.state = np.stack(by_seed(seeds, self._start))
        self.steps = 0
        return self._observe()

    def _start(self, seed: int) -> np.ndarray:
        self.single.reset(seed=seed)
        return np.array(self.single.state, dtype=np.float64)

    def step(self, actions: np.ndarray, running: np.ndarray) -> Step:
        env, (th, thdot) = self.single, self.state.T
        u = np.clip(actions[:, 0], -env.max_torque, env.max_torque)
        angle = ((th + np.pi) % (2 * np.pi)) - np.pi
        costs = _square(angle) + 0.1 * _square(thdot) + 0.001 * _square(u)
        change = 3 * env.g / (2 * env.l) * np.sin(th) + 3.0 / (env.m * env.l**2) * u
        thdot = np.clip(thdot + change * env.dt, -env.max_speed, env.max_speed)
        self.state = np.stack([th + thdot * env.dt, thdot], axis=1)
        self.steps += 1
        truncated = np.full(len(th), self.limit is not None and self.steps >= self.limit)
        return self._observe(), -costs, np.zeros(len(th), dtype=bool), truncated

    def _observe(self) -> np.ndarray:
        th, thdot = self.state.T
        return np.stack([np.cos(th), np.sin(th), thdot], axis=1).astype(np.float32)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        return np.zeros((len(rows), 0))  # Pendulum has no final-position descriptor


def build(env_id: str, env_kwargs: dict | None) -> PendulumBatch:
    return PendulumBatch(env_id, env_kwargs)
