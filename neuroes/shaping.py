"""Fitness shaping: pure functions from raw scores to the values an estimator averages.

``SHAPINGS`` maps the names used in configs and on the command line to the functions.

Weight decay convention: ``weight_decay(mu, c)`` returns ``-0.5 * c * ||mu||^2``. Adding it to
the maximized objective adds ``-c * mu`` to the gradient of ``mu``. The Gaussian algorithms pass
``c / sigma``, so that their coefficient is OpenAI-ES's ``l2coeff`` (see
:mod:`neuroes.algorithms.base`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def centered_ranks(x: Tensor) -> Tensor:
    """Ranks of ``x`` along dim 0 scaled to [-0.5, 0.5]; tied values share their mean rank."""
    n = len(x)
    if n < 2:
        return torch.zeros_like(x, dtype=torch.float32)
    flat = x.reshape(n, -1)
    ranks = torch.empty_like(flat, dtype=torch.float64)
    positions = torch.arange(n, dtype=torch.float64).unsqueeze(1).expand_as(flat)
    ranks.scatter_(0, flat.argsort(dim=0), positions)
    for column in range(flat.shape[1]):  # tied values: their mean rank
        values, inverse = flat[:, column].unique(return_inverse=True)
        total = torch.zeros(len(values), dtype=torch.float64)
        total.scatter_add_(0, inverse, ranks[:, column])
        ranks[:, column] = (total / torch.bincount(inverse))[inverse]
    return (ranks / (n - 1) - 0.5).to(torch.float32).reshape(x.shape)


def utilities(x: Tensor) -> Tensor:
    """NES utilities of the scores ``x`` (n,) (Wierstra et al., 2014, as SNES uses them): the
    k-th best of n gets ``max(0, ln(n/2 + 1) - ln k) / sum_j max(0, ln(n/2 + 1) - ln j) - 1/n``.
    They sum to zero; tied scores share their mean utility."""
    n = len(x)
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    raw = (math.log(n / 2 + 1) - rank.log()).clamp(min=0)
    by_rank = raw / raw.sum() - 1 / n
    values = torch.empty(n, dtype=torch.float64)
    values[x.argsort(descending=True)] = by_rank
    distinct, inverse = x.unique(return_inverse=True)  # tied scores: their mean utility
    total = torch.zeros(len(distinct), dtype=torch.float64).scatter_add_(0, inverse, values)
    return (total / torch.bincount(inverse))[inverse].to(torch.float32)


def zscore(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / std`` along dim 0; a constant column maps to zeros, never NaN."""
    x = x.to(torch.float32) if not x.is_floating_point() else x
    centered = x - x.mean(0)
    std = x.std(0, unbiased=False)
    return centered / torch.clamp(std, min=eps) * (std > eps)


def identity(x: Tensor) -> Tensor:
    """No shaping."""
    return x.to(torch.float32) if not x.is_floating_point() else x


def weight_decay(mu: Tensor, coefficient: float | Tensor) -> Tensor:
    """The L2 term ``-0.5 * sum(coefficient * mu**2)`` to add to a maximized objective; the
    coefficient is a number or one per parameter."""
    return -0.5 * (coefficient * mu.pow(2)).sum()


SHAPINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "centered_ranks": centered_ranks,
    "zscore": zscore,
    "utilities": utilities,
    "none": identity,
}
