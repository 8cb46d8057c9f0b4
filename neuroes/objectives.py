"""Objectives to maximize, each a differentiable scalar built from :func:`expectation`.

Every objective takes scores of the sampled members and the distribution they came from, and
returns a scalar whose gradient with respect to the distribution's parameters is the
search gradient. Train with ``(-objective).backward()`` and any ``torch.optim`` optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from neuroes.distributions import Distribution
from neuroes.expectation import expectation
from neuroes.shaping import centered_ranks, zscore


def fitness(
    returns: Tensor,
    sample: Tensor,
    p: Distribution,
    shaping: Callable[[Tensor], Tensor] = centered_ranks,
) -> Tensor:
    """NES: the expected shaped fitness E[shaping(returns)]."""
    _check_members(returns, sample, "returns")
    return expectation(shaping(returns.detach()), sample, p)


def maxvar(behaviors: Tensor, sample: Tensor, p: Distribution) -> Tensor:
    """MaxVar evolvability: sum over behavior dimensions of E[z^2], z the z-scored behavior.

    Behaviors have shape (n, k). The z-score uses the population's mean and standard deviation,
    so the objective's value is ``k`` at every step; its gradient moves the distribution toward
    members with unusual behaviors, increasing the behavioral variance (Gajewski et al., 2019).
    """
    behaviors = _as_matrix(behaviors, sample)
    z = zscore(behaviors.detach())
    return expectation(z.pow(2).sum(1), sample, p)


def maxent(behaviors: Tensor, sample: Tensor, p: Distribution, bandwidth: float = 1.0) -> Tensor:
    """MaxEnt evolvability: the kernel-density entropy of z-scored behaviors.

    ``H = -E_i[log E_j[K(b_i - b_j)]]`` with a Gaussian kernel of the given bandwidth (in
    z-score units). Both expectations are differentiable in ``p``, the inner one over ``dim=1``
    of the pairwise kernel matrix, the outer one over the members.
    """
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    behaviors = _as_matrix(behaviors, sample)
    z = zscore(behaviors.detach())
    k = z.shape[1]
    squared = torch.cdist(z, z).pow(2)
    log_norm = -0.5 * k * math.log(2 * math.pi * bandwidth**2)
    kernel = torch.exp(-squared / (2 * bandwidth**2) + log_norm)
    density = expectation(kernel, sample, p, dim=1)
    return expectation(-density.log(), sample, p)


def mix(terms: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """The weighted sum of objective terms, e.g. ``mix([fitness(...), maxvar(...)], [0.5, 1])``."""
    if len(terms) != len(weights):
        raise ValueError(f"got {len(terms)} terms but {len(weights)} weights")
    return sum(w * t for w, t in zip(weights, terms, strict=True))


def _check_members(values: Tensor, sample: Tensor, name: str) -> None:
    if len(values) != len(sample):
        raise ValueError(f"{name} has {len(values)} rows but there are {len(sample)} samples")


def _as_matrix(behaviors: Tensor, sample: Tensor) -> Tensor:
    _check_members(behaviors, sample, "behaviors")
    behaviors = behaviors.to(torch.float32)
    return behaviors.unsqueeze(1) if behaviors.dim() == 1 else behaviors.reshape(len(sample), -1)
