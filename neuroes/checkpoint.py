"""Checkpoints: atomic files of plain data that load without executing code.

A checkpoint is a ``torch.save`` zip archive of tensors and plain containers, read back with
``torch.load(weights_only=True)``, which refuses any other object. The policy is stored as its
architecture (``kind``, ``options``, spaces) and its parameters, and rebuilt from
``neuroes.agents.POLICIES``; the observation normalizer as its settings and buffers. A policy
of a kind not in ``POLICIES`` (a user-defined module) can only travel as code: it is stored
pickled, and loading it needs ``trust=True``, as does a checkpoint of format version 1 (a plain
cloudpickle file).
"""

from __future__ import annotations

import copy
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
    POLICIES,
    BatchedForward,
    GRUPolicy,
    MLPPolicy,
    ObservationNormalizer,
    Policy,
    flatten_observations,
    get_flat,
)
from neuroes.agents.spaces import space_from_data, space_to_data

FORMAT = "neuroes-checkpoint"
VERSION = 2
PICKLED_VERSION = 1  # cloudpickle files, read only when trusted
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
PICKLE_PROTO = b"\x80"  # the opcode that starts every pickle since protocol 2
TRUST_HINT = "load it with trust=True (--trust) only if you trust its source"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, untrusted, or not a neuroes checkpoint."""


def encode(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as the plain data a checkpoint holds (a copy, unaffected by later training).

    ``payload["policy"]`` and ``payload["normalizer"]`` are modules, stored as data; the other
    values must be tensors and plain containers.
    """
    data = {
        "format": FORMAT,
        "version": VERSION,
        **payload,
        "policy": _policy_to_data(payload["policy"]),
        "normalizer": _normalizer_to_data(payload["normalizer"]),
    }
    return copy.deepcopy(data)


def write(path: str | Path, data: dict[str, Any]) -> None:
    """Write :func:`encode`'s ``data`` to ``path`` atomically: a crash leaves the previous file
    intact. The data goes to a temporary file in the same folder, is flushed to disk, and then
    replaces ``path`` in one rename."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (see :func:`encode`) to ``path`` atomically (see :func:`write`)."""
    write(path, encode(payload))


def read(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """The payload of a checkpoint, with its policy and normalizer rebuilt as modules.

    Raises a one-line :class:`CheckpointError` for a missing, corrupt or foreign file, and for
    a file that holds code (a pickled policy, or format version 1) unless ``trust`` is set.
    """
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name} does not exist")
    with path.open("rb") as file:
        start = file.read(4)
    if start != ZIP_MAGIC:
        return _read_pickled(path, start, trust)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{name} holds objects other than tensors and plain data; it is not a neuroes "
            f"checkpoint, or a tampered one"
        ) from None
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {name} is corrupt or truncated ({type(error).__name__})"
        ) from None
    _check_format(payload, name, VERSION)
    try:
        policy = _policy_from_data(payload["policy"], trust)
        normalizer = _normalizer_from_data(payload["normalizer"])
    except CheckpointError as error:
        raise CheckpointError(f"checkpoint {name} {error}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"checkpoint {name} is damaged: its policy does not rebuild ({type(error).__name__})"
        ) from None
    return payload | {"policy": policy, "normalizer": normalizer}


def _check_format(payload: Any, name: str, version: int) -> None:
    """CheckpointError unless ``payload`` is a neuroes checkpoint of format ``version``."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a neuroes checkpoint")
    if payload.get("version") != version:
        raise CheckpointError(
            f"checkpoint {name} has format version {payload.get('version')}; this neuroes reads "
            f"version {VERSION} (and {PICKLED_VERSION} when trusted)"
        )


def _read_pickled(path: Path, start: bytes, trust: bool) -> dict[str, Any]:
    """A format-1 checkpoint (a cloudpickle file): unpickled only when ``trust`` is set."""
    name = repr(str(path))
    if not start.startswith(PICKLE_PROTO):
        raise CheckpointError(f"{name} is not a neuroes checkpoint")
    if not trust:
        raise CheckpointError(
            f"checkpoint {name} is a pickle (neuroes format version {PICKLED_VERSION}, or a "
            f"foreign file): loading it runs code from the file; {TRUST_HINT}"
        )
    try:
        with path.open("rb") as file:
            payload = pickle.load(file)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {name} is corrupt or truncated ({type(error).__name__})"
        ) from None
    _check_format(payload, name, PICKLED_VERSION)
    return payload | {
        "policy": _upgrade_policy(payload["policy"]),
        "normalizer": _upgrade_normalizer(payload["normalizer"]),
    }


def _upgrade_policy(old: Policy) -> Policy:
    """A version-1 policy (pickled before policies described their options) as today's."""
    if type(old) not in POLICIES.values():
        return old
    options = {"box": "clip" if getattr(old.head, "squash", True) is False else "tanh"}
    if type(old) is MLPPolicy:
        options |= {"hidden": [layer.out_features for layer in old.layers[:-1]]}
        options |= {"activation": old.activation}
    if type(old) is GRUPolicy:
        options |= {"hidden_size": old.hidden_size}
    policy = type(old)(old.observation_space, old.action_space, **options)
    policy.load_state_dict(old.state_dict())
    return policy


def _upgrade_normalizer(old: ObservationNormalizer | None) -> ObservationNormalizer | None:
    """A version-1 normalizer (std floored at 1e-8) refreshed with today's variance floor."""
    if old is None:
        return None
    normalizer = ObservationNormalizer(len(old.mean), clip=old.clip)
    normalizer.update(float(old.count), old.total, old.total_sq)
    return normalizer


def _policy_to_data(policy: Policy) -> dict:
    if POLICIES.get(policy.kind) is type(policy):
        return {
            "kind": policy.kind,
            "options": policy.options(),
            "observation_space": space_to_data(policy.observation_space),
            "action_space": space_to_data(policy.action_space),
            "parameters": policy.state_dict(),
        }
    return {"kind": None, "pickled": cloudpickle.dumps(policy)}


def _policy_from_data(data: dict, trust: bool) -> Policy:
    if data["kind"] is None:
        if not trust:
            raise CheckpointError(
                f"holds a user-defined policy saved as code: loading it runs that code; "
                f"{TRUST_HINT}"
            )
        return cloudpickle.loads(data["pickled"])
    if data["kind"] not in POLICIES:
        raise CheckpointError(
            f"holds a policy of kind {data['kind']!r}; known kinds: {', '.join(POLICIES)}"
        )
    policy = POLICIES[data["kind"]](
        space_from_data(data["observation_space"]),
        space_from_data(data["action_space"]),
        **data["options"],
    )
    policy.load_state_dict(data["parameters"])
    return policy


def _normalizer_to_data(normalizer: ObservationNormalizer | None) -> dict | None:
    if normalizer is None:
        return None
    return {
        "dim": normalizer.dim,
        "clip": normalizer.clip,
        "min_variance": normalizer.min_variance,
        "buffers": normalizer.state_dict(),
    }


def _normalizer_from_data(data: dict | None) -> ObservationNormalizer | None:
    if data is None:
        return None
    normalizer = ObservationNormalizer(data["dim"], data["clip"], data["min_variance"])
    normalizer.load_state_dict(data["buffers"])
    return normalizer


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


def load(path: str | Path, trust: bool = False) -> Agent:
    """Load a saved policy from a checkpoint written by training.

    ``trust=True`` also loads checkpoints that hold code (a user-defined policy, or format
    version 1); never set it for a file from a source you do not trust.
    """
    payload = read(path, trust)
    return Agent(
        payload["policy"],
        payload["normalizer"],
        payload["env_id"],
        payload["env_kwargs"],
        payload["config"],
        payload["generation"],
        payload.get("eval_return"),
    )
