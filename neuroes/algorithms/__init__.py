"""One small module per algorithm; ``make_algorithm`` builds the one a config names."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neuroes.agents import Policy, get_flat
from neuroes.agents.masked import make_space
from neuroes.algorithms.base import GaussianES, Population
from neuroes.algorithms.enas import ENAS
from neuroes.algorithms.evolvability import EvolvabilityES
from neuroes.algorithms.ga import GeneticAlgorithm
from neuroes.algorithms.nes import NES
from neuroes.rollout import Rollouts


def make_algorithm(
    config,
    policy: Policy,
    evaluate: Callable[[Tensor, int, int | None, int], Rollouts] | None = None,
) -> GaussianES | GeneticAlgorithm:
    """The algorithm of a resolved :class:`neuroes.config.Config`, starting from ``policy``.

    ``evaluate(thetas, episodes, max_steps, seed)`` (an evaluator's ``evaluate``) lets the
    genetic algorithm play its elite candidates' extra episodes.
    """
    mu = get_flat(policy)
    if config.algo == "ga":

        def initialize(seed: int) -> Tensor:
            spaces = policy.observation_space, policy.action_space
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                fresh = type(policy)(*spaces, **policy.options())
            return get_flat(fresh)

        replay = None
        if evaluate is not None:

            def replay(thetas: Tensor, episodes: int, seed: int) -> Rollouts:
                return evaluate(thetas, episodes, config.max_steps, seed)

        return GeneticAlgorithm(
            initialize,
            config.sigma,
            config.popsize,
            parents=config.parents,
            elite_candidates=config.elite_candidates,
            elite_episodes=config.elite_episodes,
            crossover=config.crossover,
            evaluate=replay,
            seed=config.seed,
        )
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
    if config.algo == "enas":
        space = make_space(config.topology, policy, config.edge_fraction, config.partitions)
        return ENAS(mu, space=space, controller_lr=config.controller_lr, **common)
    if config.algo in ("maxvar", "maxent"):
        return EvolvabilityES(
            mu,
            kind=config.algo,
            fitness_weight=config.fitness_weight,
            bandwidth=config.bandwidth,
            **common,
        )
    raise ValueError(f"unknown algo {config.algo!r}; accepted: nes, maxvar, maxent, ga, enas")


__all__ = [
    "ENAS",
    "NES",
    "EvolvabilityES",
    "GaussianES",
    "GeneticAlgorithm",
    "Population",
    "make_algorithm",
]
