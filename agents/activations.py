"""Activations whose value for an element does not depend on the tensor around it.

On CPU, ``torch.sigmoid``, ``F.elu``, ``F.gelu`` and ``F.silu`` run a vectorized formula on
most elements and a scalar one, a few ulps apart, on the remainder of each loop, so one
member's output changes with the number of members batched with it. ``tanh``, ``expm1``,
``erf`` and the arithmetic operators agree on both paths; these activations use only them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))`` as ``0.5 * tanh(x / 2) + 0.5``."""
    return 0.5 * torch.tanh(0.5 * x) + 0.5


def elu(x: Tensor) -> Tensor:
    """``x`` where positive, ``exp(x) - 1`` elsewhere."""
    return torch.where(x > 0, x, torch.expm1(x.clamp(max=0)))


def gelu(x: Tensor) -> Tensor:
    """Exact GELU, ``x * Phi(x)``."""
    return 0.5 * x * (1 + torch.erf(x * (1 / math.sqrt(2))))


def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)``."""
    return x * sigmoid(x)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "elu": elu,
    "gelu": gelu,
    "silu": silu,
}
