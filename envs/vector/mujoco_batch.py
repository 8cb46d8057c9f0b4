"""MuJoCo environments as one ``MjData`` per sub-environment, stepped in C.

Each step sets a running sub-environment's controls and calls ``mujoco.mj_step`` with the
environment's frame skip (and ``mj_rnePostConstraint`` where contact forces are read, as
Gymnasium's ``MujocoEnv`` does after every step); the arrays the task reads are then stacked
over the batch, and the task (:mod:`neuroes.envs.vector.locomotion`) computes the
observations, rewards and terminations of the whole batch in numpy. ``mj_step`` releases the
GIL, so batches on different threads step in parallel (``releases_gil``).

Starts: for each distinct seed the single Gymnasium environment is reset with
``reset(seed=s)`` and its whole ``MjData`` copied (``mj_copyData``) into the sub-environments
that start from it, so reset noise is drawn by Gymnasium's own code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import gymnasium as gym
import mujoco
import numpy as np

from neuroes.envs.vector.base import EnvFailure, Step, by_seed


class Task(Protocol):
    """What one environment computes from its simulator state, for a batch.

    ``fields`` maps a name to a function of an ``MjData`` returning a live view of an array
    read after every step; the task receives these arrays stacked, (n, *shape), in the dict
    ``f``. ``progress(f)`` is the coordinate whose velocity is rewarded (None if none);
    ``position_columns`` the leading ``qpos`` columns that make the final-position descriptor.
    """

    fields: dict[str, Callable[[mujoco.MjData], np.ndarray]]
    position_columns: int

    def progress(self, f: dict[str, np.ndarray]) -> np.ndarray | None: ...

    def observe(self, f: dict[str, np.ndarray]) -> np.ndarray: ...

    def reward(
        self, f: dict[str, np.ndarray], velocity: np.ndarray | None, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rewards (n,) and ``terminated`` (n,) after a step with ``actions``."""
        ...


class MujocoBatch:
    """Sub-environments of ``env`` (a Gymnasium ``MujocoEnv``, possibly wrapped by
    ``gym.make``), computed by ``task``."""

    releases_gil = True

    def __init__(self, env: gym.Env, task: Task) -> None:
        self.single = env.unwrapped
        self.model, self.frame_skip = self.single.model, self.single.frame_skip
        self.dt = self.single.dt
        self.limit = env.spec.max_episode_steps if env.spec else None
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.task = task
        self.contact_forces = "cfrc_ext" in task.fields
        self.datas: list[mujoco.MjData] = []

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        n = len(seeds)
        while len(self.datas) < n:
            self.datas.append(mujoco.MjData(self.model))
        self.active = self.datas[:n]
        for data, start in zip(self.active, by_seed(seeds, self._start), strict=True):
            mujoco.mj_copyData(data, self.model, start)
        self.controls = [data.ctrl for data in self.active]
        fields = self.task.fields.items()
        views = {name: [read(data) for data in self.active] for name, read in fields}
        self.f = {name: np.stack(arrays) for name, arrays in views.items()}
        # Gathering = concatenating the views along their first axis into the stacked rows.
        self.gather = [
            (arrays, self.f[name].reshape(-1, *self.f[name].shape[2:]))
            for name, arrays in views.items()
        ]
        self.before = self._progress()
        self.steps = 0
        return self.task.observe(self.f)

    def _start(self, seed: int) -> mujoco.MjData:
        self.single.reset(seed=seed)
        start = mujoco.MjData(self.model)
        mujoco.mj_copyData(start, self.model, self.single.data)
        return start

    def _progress(self) -> np.ndarray | None:
        progress = self.task.progress(self.f)
        return None if progress is None else progress.copy()

    def step(self, actions: np.ndarray, running: np.ndarray) -> Step:
        n, nu = len(self.active), self.model.nu
        if actions.shape[1:] != (nu,):
            raise EnvFailure(
                0,
                "raised ValueError: Action dimension mismatch. "
                f"Expected {(nu,)}, found {actions.shape[1:]}",
            )
        model, skip, datas, controls = self.model, self.frame_skip, self.active, self.controls
        mj_step, contact_forces = mujoco.mj_step, self.contact_forces
        for j in np.flatnonzero(running).tolist():
            controls[j][:] = actions[j]
            try:
                mj_step(model, datas[j], skip)
            except Exception as error:
                raise EnvFailure(j, f"raised {type(error).__name__}: {error}") from error
            if contact_forces:
                mujoco.mj_rnePostConstraint(model, datas[j])
        for arrays, rows in self.gather:
            np.concatenate(arrays, out=rows)
        self.steps += 1
        after = self._progress()
        velocity = None if after is None else (after - self.before) / self.dt
        self.before = after
        rewards, terminated = self.task.reward(self.f, velocity, actions)
        truncated = np.full(n, self.limit is not None and self.steps >= self.limit)
        return self.task.observe(self.f), rewards, terminated, truncated

    def positions(self, rows: np.ndarray) -> np.ndarray:
        return self.f["qpos"][rows, : self.task.position_columns].copy()
