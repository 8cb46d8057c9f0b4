"""SNES, separable natural evolution strategies (Schaul, Glasmachers and Schmidhuber, 2011, "High
Dimensions and Heavy Tails for Natural Evolution Strategies", Algorithm 2).

With ``s_k`` the unit noise of sample ``k`` and ``u_k`` its utility (:func:`neuroes.shaping
.utilities`), the natural gradients are ``sum_k u_k s_k`` for the mean and ``sum_k u_k (s_k^2 -
1)`` for log-sigma, and the steps ``mu += eta_mu * sigma * grad_mu`` and ``sigma *= exp(eta_sigma
/ 2 * grad_sigma)``. Both gradients come out of one :func:`neuroes.expectation` of ``n * u``;
:class:`DiagonalES` turns the mean's into the natural gradient, and :meth:`SNES.step_sigma` is the
exponential step. Samples are drawn independently, as in the paper (no mirroring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from neuroes.algorithms.base import option
from neuroes.algorithms.gaussian import DiagonalES, SigmaOptions, returns_tensor
from neuroes.distributions import Normal
from neuroes.expectation import expectation
from neuroes.rollout import Rollouts
from neuroes.shaping import utilities


@dataclass
class SNESOptions(SigmaOptions):
    lr: float = option("eta_mu, the learning rate of the mean", 1.0)


class SNES(DiagonalES):
    """SNES with ``lr`` as eta_mu and ``sigma_lr`` as eta_sigma (default: the paper's
    ``(3 + ln d) / (5 sqrt d)``); with the default ``sgd`` optimizer, the paper's step."""

    Options = SNESOptions
    default_optimizer = "sgd"

    def __init__(self, mu: Tensor, sigma: float, popsize: int, lr: float = 1.0, **kwargs) -> None:
        super().__init__(mu, sigma, popsize, lr, False, **kwargs)

    def default_sigma_lr(self, dim: int) -> float:
        return (3 + math.log(dim)) / (5 * math.sqrt(dim))

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        return expectation(len(sample) * utilities(returns_tensor(rollouts)), sample, p)

    def step_sigma(self, gradient: Tensor) -> Tensor:
        return self.log_sigma + self.sigma_lr / 2 * gradient
