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
from neuroes.noise import Draws
from neuroes.shaping import centered_ranks, zscore


def fitness(
    returns: Tensor,
    sample: Tensor | Draws,
    p: Distribution,
    shaping: Callable[[Tensor], Tensor] = centered_ranks,
) -> Tensor:
    """NES: the expected shaped fitness E[shaping(returns)]."""
    _check_members(returns, sample, "returns")
    return expectation(shaping(returns.detach()), sample, p)


def maxvar(behaviors: Tensor, sample: Tensor | Draws, p: Distribution) -> Tensor:
    """MaxVar evolvability (Gajewski et al., 2019): the total variance of the behaviors,
    ``E[|b - mean|^2]`` summed over the behavior dimensions.

    Behaviors have shape (n, k). They are centered on the population's mean and divided by one
    pooled scale, the square root of their mean variance per dimension (detached), so the
    objective is unit-free and its value is ``k`` at every step; the gradient is that of the
    total variance, which a wide dimension dominates, as in the paper. (Scaling each dimension
    separately would instead follow the sum of the log variances.)
    """
    behaviors = _as_matrix(behaviors, sample).detach()
    centered = behaviors - behaviors.mean(0)
    scale = centered.pow(2).mean().sqrt()
    z = centered / torch.clamp(scale, min=1e-8) * (scale > 1e-8)
    return expectation(z.pow(2).sum(1), sample, p)


def silverman(members: int, dims: int) -> float:
    """Silverman's rule of thumb for a Gaussian kernel: the bandwidth, in standard deviations,
    ``(4 / (k + 2))^(1 / (k + 4)) * n^(-1 / (k + 4))`` for ``n`` points in ``k`` dimensions."""
    return (4 / (dims + 2)) ** (1 / (dims + 4)) * members ** (-1 / (dims + 4))


def maxent(
    behaviors: Tensor, sample: Tensor | Draws, p: Distribution, bandwidth: float | None = None
) -> Tensor:
    """MaxEnt evolvability: the kernel-density entropy of the z-scored behaviors.

    ``H = -E_i[log E_j[K(z_i - z_j)]]`` with a Gaussian kernel of ``bandwidth`` (z-score units;
    default: :func:`silverman`'s rule), leave-one-out (``K(0)`` of a member with itself left
    out) and without the additive constant ``(k/2) log(2 pi h^2) + log(n / (n - 1))``, which
    would only add noise to the gradient. Both expectations are differentiable in ``p``, the
    inner one over the (symmetric) pairwise kernel matrix. With the default bandwidth the
    gradient estimates the entropy's own gradient (``tests/test_shaping_objectives.py``: within
    15% for a Gaussian behavior at 20-200 members); a fixed bandwidth of 1 underestimates it by
    about 30%, by an amount that changes with the population.
    """
    behaviors = _as_matrix(behaviors, sample)
    n, k = behaviors.shape
    bandwidth = silverman(n, k) if bandwidth is None else bandwidth
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if n < 2:
        raise ValueError(
            f"maxent leaves each member out of its own density: it needs 2 or more, got {n}"
        )
    z = zscore(behaviors.detach())
    log_kernel = -torch.cdist(z, z).pow(2) / (2 * bandwidth**2)
    log_kernel.fill_diagonal_(-math.inf)
    # Each member's kernel values over its largest: a member far from all others keeps its
    # gradient (exp(-100) and less underflows in float32), the logarithm adds the shift back.
    shift = log_kernel.max(dim=0).values
    density = expectation(torch.exp(log_kernel - shift), sample, p)
    return expectation(-(density.log() + shift), sample, p)


def mix(terms: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """The weighted sum of objective terms, e.g. ``mix([fitness(...), maxvar(...)], [0.5, 1])``."""
    if len(terms) != len(weights):
        raise ValueError(f"got {len(terms)} terms but {len(weights)} weights")
    return sum(w * t for w, t in zip(weights, terms, strict=True))


def _check_members(values: Tensor, sample: Tensor | Draws, name: str) -> None:
    if len(values) != len(sample):
        raise ValueError(f"{name} has {len(values)} rows but there are {len(sample)} samples")


def _as_matrix(behaviors: Tensor, sample: Tensor | Draws) -> Tensor:
    _check_members(behaviors, sample, "behaviors")
    behaviors = behaviors.to(torch.float32)
    return behaviors.unsqueeze(1) if behaviors.dim() == 1 else behaviors.reshape(len(sample), -1)
