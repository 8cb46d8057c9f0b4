"""Checkpoints: atomic cloudpickle files, and the agent that a saved policy loads into."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import torch

import neuroes.envs  # noqa: F401  (registers the custom environments)
from neuroes.agents import (
    BatchedForward,
    ObservationNormalizer,
    Policy,
    flatten_observations,
    get_flat,
)

FORMAT = "neuroes-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not a neuroes checkpoint."""


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the previous file intact.

    The data goes to a temporary file in the same folder, is flushed to disk, and then
    replaces ``path`` in one rename.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            cloudpickle.dump({"format": FORMAT, "version": VERSION, **payload}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint; a one-line :class:`CheckpointError` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with path.open("rb") as file:
            payload = pickle.load(file)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a neuroes checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload.get('version')}; "
            f"this neuroes reads version {VERSION}"
        )
    return payload


class Agent:
    """A trained policy ready to act: saved normalization applied, recurrent state kept.

    Attributes: ``policy`` (the module, holding the mean parameters), ``normalizer``,
    ``env_id``, ``env_kwargs``, ``config`` (the training configuration as a dict),
    ``generation`` and ``eval_return`` (the mean policy's evaluation when saved).
    """

    def __init__(
        self,
        policy: Policy,
        normalizer: ObservationNormalizer | None,
        env_id: str,
        env_kwargs: dict,
        config: dict,
        generation: int,
        eval_return: float | None,
    ) -> None:
        self.policy, self.normalizer = policy.eval(), normalizer
        self.env_id, self.env_kwargs, self.config = env_id, env_kwargs, config
        self.generation, self.eval_return = generation, eval_return
        # The evaluator's forward path, so that actions match training's evaluation bitwise.
        self.forward = BatchedForward(policy)
        self.theta = self.forward.prepare(get_flat(policy).unsqueeze(0))
        self.reset()

    def reset(self) -> None:
        """Start a new episode (clears a recurrent policy's state)."""
        state = self.policy.initial_state(1)
        self.state = None if state is None else state.to(self.theta).unsqueeze(0)

    @torch.no_grad()
    def act(self, observation: Any) -> np.ndarray:
        """The action for one observation of the environment's observation space."""
        space = self.policy.observation_space
        flat = flatten_observations(space, np.asarray(observation)[None])
        inputs = torch.from_numpy(flat).to(self.theta.device).unsqueeze(0)
        if self.normalizer is not None:
            inputs = self.normalizer(inputs)
        outputs, self.state = self.forward(self.theta, inputs, self.state)
        return self.policy.head.to_numpy(self.policy.head(outputs))[0, 0]

    def make_env(self, **make_kwargs) -> gym.Env:
        """The environment the policy was trained on (e.g. ``render_mode="rgb_array"``)."""
        return gym.make(self.env_id, **self.env_kwargs, **make_kwargs)


def load(path: str | Path) -> Agent:
    """Load a saved policy from a checkpoint written by training."""
    payload = read(path)
    return Agent(
        payload["policy"],
        payload["normalizer"],
        payload["env_id"],
        payload["env_kwargs"],
        payload["config"],
        payload["generation"],
        payload.get("eval_return"),
    )
