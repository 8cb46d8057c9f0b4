"""Evolvability ES (Gajewski et al., 2019): maximize the spread of the population's behaviors.

MaxVar maximizes the variance of the behaviors (final positions), MaxEnt their kernel-density
entropy; they differ in one function, :meth:`MaxVar.spread`. ``fitness_weight`` mixes in the
NES objective to trade evolvability for quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from neuroes.algorithms.base import option, require_positive
from neuroes.algorithms.gaussian import (
    GaussianES,
    IsotropicOptions,
    behaviors_tensor,
    returns_tensor,
)
from neuroes.distributions import Normal
from neuroes.objectives import fitness, maxent, maxvar, mix
from neuroes.rollout import Rollouts


@dataclass
class MaxVarOptions(IsotropicOptions):
    fitness_weight: float = option(
        "weight of expected fitness added to the evolvability objective", 0.0
    )


@dataclass
class MaxEntOptions(MaxVarOptions):
    bandwidth: float | None = option(
        "kernel bandwidth, in z-scored behavior units (default: Silverman's rule, "
        "(4 / (k + 2))^(1 / (k + 4)) n^(-1 / (k + 4)) for n members, k behavior dimensions)",
        None,
    )


class MaxVar(GaussianES):
    """Gaussian ES on the variance of behaviors (plus ``fitness_weight`` x expected fitness)."""

    Options = MaxVarOptions

    def __init__(self, *args, fitness_weight: float = 0.0, **kwargs) -> None:
        if not math.isfinite(fitness_weight):
            raise ValueError(f"fitness_weight must be a finite number, got {fitness_weight}")
        super().__init__(*args, **kwargs)
        self.fitness_weight = fitness_weight

    def spread(self, behaviors: Tensor, sample: Tensor, p: Normal) -> Tensor:
        """The evolvability of the behaviors, as a differentiable expectation."""
        return maxvar(behaviors, sample, p)

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        spread = self.spread(behaviors_tensor(rollouts), sample, p)
        if not self.fitness_weight:
            return spread
        return mix(
            [spread, fitness(returns_tensor(rollouts), sample, p)], [1.0, self.fitness_weight]
        )


class MaxEnt(MaxVar):
    """Gaussian ES on the kernel-density entropy of behaviors (see :class:`MaxVar`)."""

    Options = MaxEntOptions

    def __init__(self, *args, bandwidth: float | None = None, **kwargs) -> None:
        if bandwidth is not None:
            require_positive(bandwidth=bandwidth)
        super().__init__(*args, **kwargs)
        self.bandwidth = bandwidth

    def spread(self, behaviors: Tensor, sample: Tensor, p: Normal) -> Tensor:
        return maxent(behaviors, sample, p, self.bandwidth)
