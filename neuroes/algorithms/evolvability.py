"""Evolvability ES (Gajewski et al., 2019): maximize the spread of the population's behaviors.

MaxVar maximizes the variance of the final-position behaviors, MaxEnt their kernel-density
entropy. ``fitness_weight`` mixes in the NES objective to trade evolvability for quality.
"""

from __future__ import annotations

from torch import Tensor

from neuroes.algorithms.base import GaussianES, behaviors_tensor, returns_tensor
from neuroes.distributions import Normal
from neuroes.objectives import fitness, maxent, maxvar, mix
from neuroes.rollout import Rollouts


class EvolvabilityES(GaussianES):
    """Gaussian ES on MaxVar (``kind="maxvar"``) or MaxEnt (``kind="maxent"``)."""

    def __init__(
        self,
        *args,
        kind: str = "maxvar",
        fitness_weight: float = 0.0,
        bandwidth: float = 1.0,
        **kwargs,
    ) -> None:
        if kind not in ("maxvar", "maxent"):
            raise ValueError(f"unknown evolvability objective {kind!r}; accepted: maxvar, maxent")
        super().__init__(*args, **kwargs)
        self.kind, self.fitness_weight, self.bandwidth = kind, fitness_weight, bandwidth

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        behaviors = behaviors_tensor(rollouts)
        if self.kind == "maxvar":
            spread = maxvar(behaviors, sample, p)
        else:
            spread = maxent(behaviors, sample, p, self.bandwidth)
        if not self.fitness_weight:
            return spread
        return mix(
            [spread, fitness(returns_tensor(rollouts), sample, p)], [1.0, self.fitness_weight]
        )
