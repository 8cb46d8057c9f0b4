"""Gymnasium spaces as plain data (dicts of numbers, strings and tensors), and back.

Checkpoints store a policy's spaces this way, so that they load without unpickling objects.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import Space
from gymnasium.spaces import Box, Discrete, MultiBinary, MultiDiscrete


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True))


def space_to_data(space: Space) -> dict:
    """``space`` as a dict that :func:`space_from_data` turns back into an equal space."""
    dtype = str(np.dtype(space.dtype))
    if isinstance(space, Box):
        low, high = _tensor(space.low), _tensor(space.high)
        return {"type": "Box", "low": low, "high": high, "dtype": dtype}
    if isinstance(space, Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, MultiBinary):
        n = space.n
        return {"type": "MultiBinary", "n": int(n) if np.ndim(n) == 0 else [int(v) for v in n]}
    if isinstance(space, MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": _tensor(space.nvec),
            "start": _tensor(space.start),
            "dtype": dtype,
        }
    raise ValueError(
        f"cannot store space {space!r}; supported: Box, Discrete, MultiBinary, MultiDiscrete"
    )


def space_from_data(data: dict) -> Space:
    """The space that :func:`space_to_data` described."""
    kind = data.get("type")
    if kind == "Box":
        low, high = data["low"].numpy(), data["high"].numpy()
        return Box(low, high, shape=low.shape, dtype=np.dtype(data["dtype"]))
    if kind == "Discrete":
        return Discrete(data["n"], start=data["start"])
    if kind == "MultiBinary":
        return MultiBinary(data["n"])
    if kind == "MultiDiscrete":
        nvec, start = data["nvec"].numpy(), data["start"].numpy()
        return MultiDiscrete(nvec, dtype=np.dtype(data["dtype"]), start=start)
    raise ValueError(
        f"unknown space type {kind!r}; accepted: Box, Discrete, MultiBinary, MultiDiscrete"
    )
