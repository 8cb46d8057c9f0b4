"""PGPE, policy gradients with parameter-based exploration (Sehnke et al., 2010, "Parameter-
exploring policy gradients"), with symmetric sampling, the mean stepped by ClipUp (Toklu et al.,
2020) by default.

For directions ``eps_k`` drawn with per-parameter ``sigma`` and shaped returns ``f+``, ``f-`` of
``mu + eps_k`` and ``mu - eps_k`` (centered ranks), the paper's steps are
``mu += alpha * mean_k((f+ - f-) / 2 * eps_k)`` and
``sigma += alpha_sigma * mean_k(((f+ + f-) / 2 - b) * (eps_k^2 - sigma^2) / sigma)``,
its score-function gradients times the per-parameter step size ``sigma^2``. Both gradients come
out of one :func:`neuroes.expectation` of ``f - b``; :class:`DiagonalES` scales them. As in
evotorch and the ClipUp paper, the baseline ``b`` is the generation's mean shaped return, zero
for centered ranks (so ``f - b`` is ``f``), and one step may change each sigma by at most
``sigma_max_change`` of its value (0.2, after Ha, 2017); the paper normalizes returns by the
best seen and keeps a moving average baseline instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from neuroes.algorithms.base import option
from neuroes.algorithms.gaussian import DiagonalES, SigmaOptions, returns_tensor
from neuroes.distributions import Normal
from neuroes.expectation import expectation
from neuroes.rollout import Rollouts
from neuroes.shaping import centered_ranks


@dataclass
class PGPEOptions(SigmaOptions):
    lr: float = option("step size of the mean", 0.1)
    sigma_max_change: float = option(
        "largest relative change of each sigma in one step, in (0, 1)", 0.2
    )


class PGPE(DiagonalES):
    """Symmetric PGPE; ``lr`` is the mean's step size (ClipUp's by default), ``sigma_lr``
    (default 0.1) is alpha_sigma."""

    Options = PGPEOptions
    default_optimizer = "clipup"

    def __init__(
        self,
        mu: Tensor,
        sigma: float,
        popsize: int,
        lr: float = 0.1,
        *,
        sigma_max_change: float = 0.2,
        **kwargs,
    ) -> None:
        if not 0 < sigma_max_change < 1:
            raise ValueError(f"sigma_max_change must be in (0, 1), got {sigma_max_change}")
        super().__init__(mu, sigma, popsize, lr, True, **kwargs)
        self.sigma_max_change = sigma_max_change

    def default_sigma_lr(self, dim: int) -> float:
        return 0.1

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        return expectation(centered_ranks(returns_tensor(rollouts)), sample, p)

    def step_sigma(self, gradient: Tensor) -> Tensor:
        """``sigma + sigma_lr * sigma * gradient`` (the step above: the log-sigma gradient is
        ``sigma`` times sigma's), within ``sigma_max_change`` of ``sigma``."""
        change = self.sigma_max_change
        ratio = (1 + self.sigma_lr * gradient).clamp(1 - change, 1 + change)
        return self.log_sigma + ratio.log()
