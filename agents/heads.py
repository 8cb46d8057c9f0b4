"""Action heads: parameter-free maps from a network output to actions of a Gymnasium space."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import Space
from gymnasium.spaces import Box, Discrete, MultiBinary, MultiDiscrete
from torch import Tensor, nn

BOX_MODES = ("tanh", "clip")


class ActionHead(nn.Module):
    """Maps network outputs ``(..., out_features)`` to actions ``(..., *space.shape)``.

    Discrete kinds give ``long`` actions, ``Box`` gives floats. Heads hold no parameters, so a
    policy's flat parameter vector is its network alone; their constant buffers follow the
    device of ``out``.
    """

    out_features: int

    def __init__(self, space: Space, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.shape = tuple(space.shape)
        self.dtype = np.dtype(space.dtype)

    def forward(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def to_numpy(self, actions: Tensor) -> np.ndarray:
        """Actions as a numpy array of the space's dtype."""
        return actions.detach().cpu().numpy().astype(self.dtype, copy=False)


class DiscreteHead(ActionHead):
    """Argmax over ``n`` outputs, offset by ``space.start``."""

    def __init__(self, space: Discrete) -> None:
        super().__init__(space, int(space.n))
        self.start = int(space.start)

    def forward(self, out: Tensor) -> Tensor:
        actions = out.argmax(-1)
        return actions + self.start if self.start else actions  # adding 0 costs as much


class BoxHead(ActionHead):
    """Continuous actions; one output per element of the space.

    ``squash=True``: dims with both bounds finite get ``tanh`` scaled to ``[low, high]``; the
    others pass through. Every dim is then clipped to its bounds (a no-op where infinite).
    """

    def __init__(self, space: Box, squash: bool) -> None:
        super().__init__(space, int(np.prod(space.shape, dtype=np.int64)))
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        bounded = np.isfinite(low) & np.isfinite(high)
        self.squash = squash
        finite_low, finite_high = np.where(bounded, low, 0.0), np.where(bounded, high, 0.0)
        buffers = {
            "low": low,
            "high": high,
            # Halves before the sum: no overflow for bounds near the float maximum.
            "center": finite_low / 2 + finite_high / 2,
            "half_range": finite_high / 2 - finite_low / 2,
        }
        for name, value in buffers.items():
            tensor = torch.as_tensor(value, dtype=torch.float32)
            self.register_buffer(name, tensor, persistent=False)
        self.register_buffer("bounded", torch.as_tensor(bounded), persistent=False)
        self.all_bounded = bool(bounded.all())

    def forward(self, out: Tensor) -> Tensor:
        buffers = self.low, self.high, self.center, self.half_range, self.bounded
        if self.low.device != out.device:
            buffers = tuple(buffer.to(out.device) for buffer in buffers)
        low, high, center, half_range, bounded = buffers
        if self.squash:
            squashed = center + half_range * torch.tanh(out)
            out = squashed if self.all_bounded else torch.where(bounded, squashed, out)
        return out.clamp(low, high).reshape(*out.shape[:-1], *self.shape)


class MultiBinaryHead(ActionHead):
    """One output per bit; a positive output sets the bit."""

    def __init__(self, space: MultiBinary) -> None:
        super().__init__(space, int(np.prod(space.shape, dtype=np.int64)))

    def forward(self, out: Tensor) -> Tensor:
        return (out > 0).long().reshape(*out.shape[:-1], *self.shape)


class MultiDiscreteHead(ActionHead):
    """Argmax per sub-action over consecutive blocks of ``nvec[k]`` outputs, plus ``start``."""

    def __init__(self, space: MultiDiscrete) -> None:
        sizes = [int(n) for n in space.nvec]
        super().__init__(space, sum(sizes))
        self.sizes = sizes
        start = torch.as_tensor(space.start, dtype=torch.long)
        self.register_buffer("start", start, persistent=False)

    def forward(self, out: Tensor) -> Tensor:
        blocks = out.split(self.sizes, dim=-1)
        actions = torch.stack([block.argmax(-1) for block in blocks], dim=-1)
        return actions + self.start.to(out.device)


def make_head(space: Space, box: str = "tanh") -> ActionHead:
    """The head for ``space``; ``box`` ("tanh" or "clip") picks how Box actions are bounded."""
    if box not in BOX_MODES:
        raise ValueError(f"unknown box mode {box!r}; accepted: {', '.join(BOX_MODES)}")
    if isinstance(space, Discrete):
        return DiscreteHead(space)
    if isinstance(space, Box):
        return BoxHead(space, squash=box == "tanh")
    if isinstance(space, MultiBinary):
        return MultiBinaryHead(space)
    if isinstance(space, MultiDiscrete):
        if space.nvec.ndim != 1:
            raise ValueError(f"unsupported action space {space!r}; MultiDiscrete needs a flat nvec")
        return MultiDiscreteHead(space)
    raise ValueError(
        f"unsupported action space {space!r}; supported: Box, Discrete, MultiBinary, MultiDiscrete"
    )
