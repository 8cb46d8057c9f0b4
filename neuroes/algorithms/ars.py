"""ARS, augmented random search (Mania, Guy and Recht, 2018, "Simple random search provides a
competitive approach to reinforcement learning", Algorithm 2).

Of the ``N = popsize / 2`` mirrored directions ``delta_k``, the ``b = top`` with the largest
``max(r+, r-)`` are kept, and ``M += alpha / (b * sigma_R) * sum_k (r+ - r-) delta_k``, with
``sigma_R`` the standard deviation of the ``2b`` returns used. The step is the gradient of one
:func:`neuroes.expectation` of the kept returns scaled by ``popsize / b * sigma / sigma_R`` (the
others weigh zero), stepped by plain SGD (``lr`` is alpha) unless another optimizer is chosen.

ARS V1 and V2 differ in the observations, not in this update: V2 normalizes them by running
statistics of the states visited, which is the trainer's ``--normalize`` (the default; its
variance floor is 1e-2, where the reference code zeroes features of std below 1e-7), and V1 is
``--no-normalize``. ``top`` below ``N`` gives V1-t and V2-t. The reference code also subtracts a
per-step survival bonus ("shift") on Hopper, Walker2d, Ant and Humanoid; here the returns are the
environment's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neuroes.algorithms.base import option
from neuroes.algorithms.gaussian import GaussianES, GaussianOptions, returns_tensor
from neuroes.distributions import Normal
from neuroes.expectation import expectation
from neuroes.rollout import Rollouts


@dataclass
class ARSOptions(GaussianOptions):
    lr: float = option("alpha, the step size", 0.02)
    top: int | None = option(
        "b: the directions used, those with the best max(r+, r-) of the popsize / 2 "
        "(default: all, ARS V1/V2; fewer: V1-t/V2-t)",
        None,
    )


def top_directions(returns: Tensor, top: int) -> tuple[Tensor, Tensor]:
    """The ``top`` mirrored pairs of ``returns`` (2N,) with the largest ``max(r+, r-)`` (ties:
    the first), as (their indices (top,), their returns (top, 2))."""
    pairs = returns.view(-1, 2)
    kept = pairs.max(1).values.argsort(descending=True, stable=True)[:top]
    return kept, pairs[kept]


class ARS(GaussianES):
    """ARS with noise ``sigma`` (the paper's nu), ``lr`` (alpha) and ``top`` (b, default all)."""

    Options = ARSOptions
    default_optimizer = "sgd"

    def __init__(
        self,
        mu: Tensor,
        sigma: float,
        popsize: int,
        lr: float = 0.02,
        *,
        top: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(mu, sigma, popsize, lr, True, **kwargs)
        directions = popsize // 2
        self.top = directions if top is None else top
        if not 1 <= self.top <= directions:
            raise ValueError(
                f"top must be between 1 and popsize / 2 ({directions} directions), got {top}"
            )

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        returns = returns_tensor(rollouts).double()
        kept, used = top_directions(returns, self.top)
        std = used.std(unbiased=False)
        weights = torch.zeros_like(returns).view(-1, 2)
        if std > 0:
            scale = len(returns) / self.top * self.sigma / std
            weights[kept] = used * scale
        return expectation(weights.flatten().float(), sample, p)
