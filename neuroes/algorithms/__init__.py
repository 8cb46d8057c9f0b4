"""One small module per algorithm; ``make_algorithm`` builds the one a config names."""

from __future__ import annotations

from torch import Tensor

from neuroes.algorithms.base import GaussianES, Population
from neuroes.algorithms.evolvability import EvolvabilityES
from neuroes.algorithms.nes import NES


def make_algorithm(config, mu: Tensor) -> GaussianES:
    """The algorithm of a resolved :class:`neuroes.config.Config`, starting from ``mu``."""
    common = {
        "sigma": config.sigma,
        "popsize": config.popsize,
        "lr": config.lr,
        "learn_sigma": config.learn_sigma,
        "sigma_lr": config.sigma_lr,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
    }
    if config.algo == "nes":
        return NES(mu, **common)
    if config.algo in ("maxvar", "maxent"):
        return EvolvabilityES(
            mu,
            kind=config.algo,
            fitness_weight=config.fitness_weight,
            bandwidth=config.bandwidth,
            **common,
        )
    raise ValueError(f"unknown algo {config.algo!r}; accepted: nes, maxvar, maxent")


__all__ = ["NES", "EvolvabilityES", "GaussianES", "Population", "make_algorithm"]
