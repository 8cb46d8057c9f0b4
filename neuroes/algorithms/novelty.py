"""Novelty search with evolution strategies (Conti et al., 2018, "Improving Exploration in
Evolution Strategies for Deep Reinforcement Learning via a Population of Novelty-Seeking
Agents"): NS-ES, NSR-ES and NSRA-ES.

A meta-population of ``agents`` Gaussian searches, each a :class:`GaussianES` with its own mean
and optimizer state, shares an archive of behaviors. The novelty of a behavior is its mean
distance to its ``neighbors`` nearest neighbours in the archive (:func:`novelty`). Each
generation one agent, drawn with probability proportional to the novelty of its mean policy's
behavior, takes one step on the expectation (:func:`neuroes.objectives.fitness`) of a mix of the
centered ranks of its members' novelties and returns, ranked as in the reference code:

- NS-ES (``ns``): the expected novelty rank of its members' behaviors;
- NSR-ES (``nsr``): the average of the novelty and return ranks;
- NSRA-ES (``nsra``): ``w`` times the return rank plus ``1 - w`` times the novelty rank. ``w``
  starts at 1; a mean return above the best one so far raises it by ``weight_delta``,
  ``patience`` updates without one lower it by as much (within [0, 1]).

The archive holds the start policy's behavior, then after every update the new mean policy's:
the mean plays ``mean_episodes`` episodes through the setup's ``evaluate`` (seeds from the
algorithm's generator), and their average behavior enters the archive and their average return
is the agent's. :attr:`NSES.mean`, the policy the trainer evaluates and saves, is the mean of the
agent whose latest such return is the best (the first on ties). Without ``evaluate`` (ask/tell
on a function), a mean's behavior and return are its members' averages, taken before the update.

Departures from the paper: the agents start from the same policy, the setup's (the reference
code initializes each independently), so that any policy module can be searched; and they share
the run's observation normalizer (the reference code keeps one per agent). Why the mean policy
is played rather than read from the members: ``docs/design.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from neuroes.agents import get_flat
from neuroes.algorithms.base import Evaluate, Results, Setup, as_rollouts, option
from neuroes.algorithms.gaussian import GaussianES, returns_tensor
from neuroes.distributions import Normal
from neuroes.objectives import fitness, mix
from neuroes.population import Population
from neuroes.rollout import Rollouts

Objective = Callable[[Rollouts, Tensor, Normal], Tensor]
"""``objective(rollouts, sample, p)``: the scalar a Gaussian maximizes, as
:meth:`GaussianES.objective`."""


@dataclass
class NoveltyOptions(GaussianES.Options):
    """Options of the novelty-search algorithms."""

    agents: int = option(
        "M, the meta-population's agents, each a Gaussian with its own mean and optimizer "
        "(Conti et al.: 5)",
        5,
    )
    neighbors: int = option(
        "k: a behavior's novelty is its mean distance to its k nearest neighbours in the "
        "archive (Conti et al.: 10)",
        10,
    )
    mean_episodes: int = option(
        "episodes of every updated mean policy: their average behavior enters the archive, "
        "their average return ranks the agents",
        5,
    )


@dataclass
class NSRAOptions(NoveltyOptions):
    """Options of NSRA-ES."""

    patience: int = option(
        "t_max: updates without a new best mean return before the reward weight drops (10: "
        "on the hard maze, 50 left w above 0.5 after 800 updates, benchmarks/README.md)",
        10,
    )
    weight_delta: float = option(
        "step of the reward weight, up after a new best mean return, down after --patience "
        "updates without one (Conti et al.: 0.05)",
        0.05,
    )


def novelty(behaviors: Tensor, archive: Tensor, k: int) -> Tensor:
    """The novelty of each behavior (n, b) against ``archive`` (a, b): its mean Euclidean
    distance to its ``k`` nearest archived behaviors (to all of them when there are fewer)."""
    distances = torch.cdist(behaviors, archive, compute_mode="donot_use_mm_for_euclid_dist")
    return distances.topk(min(k, len(archive)), dim=1, largest=False).values.mean(1)


def behaviors_of(rollouts: Rollouts) -> Tensor:
    """The members' behaviors (n, b), float64; ValueError when there are none."""
    if rollouts.behaviors.shape[1] == 0:
        raise ValueError(
            "novelty search needs behaviors and got none: train with a behavior descriptor "
            "(--descriptor auto or module:function), or tell Rollouts.of(fitness, behaviors)"
        )
    return torch.as_tensor(rollouts.behaviors, dtype=torch.float64)


class Agent(GaussianES):
    """One agent of the meta-population: a Gaussian search on its owner's objective."""

    def __init__(self, *args, objective: Objective, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.owner_objective = objective

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        return self.owner_objective(rollouts, sample, p)


class NSES:
    """NS-ES: ``agents`` Gaussians on the expected novelty of their members' behaviors.

    Args:
        mu: the start of every agent (the flattened policy).
        sigma, popsize: of every agent's Gaussian.
        agents: M, the size of the meta-population.
        neighbors: k of the k-nearest-neighbour novelty.
        mean_episodes: episodes of every updated mean policy (module docstring).
        evaluate: plays the mean policies; None estimates them from the members.
        seed: seeds the agents' noise, the mean policies' episodes and the choice of agents.
        gaussian: options of every agent's :class:`GaussianES` (``lr``, ...).
    """

    Options = NoveltyOptions
    weight = 0.0
    """The weight of the return ranks (that of the novelty ranks is ``1 - weight``)."""

    def __init__(
        self,
        mu: Tensor,
        sigma: float,
        popsize: int,
        *,
        agents: int = 5,
        neighbors: int = 10,
        mean_episodes: int = 5,
        evaluate: Evaluate | None = None,
        seed: int = 0,
        **gaussian,
    ) -> None:
        counts = {"agents": agents, "neighbors": neighbors, "mean_episodes": mean_episodes}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.neighbors, self.mean_episodes, self.evaluate = neighbors, mean_episodes, evaluate
        self.generator = torch.Generator().manual_seed(seed)
        seeds = torch.randint(0, 2**62, (agents,), generator=self.generator).tolist()
        self.agents = [
            Agent(mu, sigma, popsize, objective=self.objective, seed=s, **gaussian) for s in seeds
        ]
        self.archive: Tensor | None = None  # (a, b): the start's behavior, then every update's
        self.behaviors: Tensor | None = None  # (M, b): each agent's mean, latest
        self.returns = torch.full((agents,), -math.inf, dtype=torch.float64)  # the same, returns
        self.chosen = 0
        self.novelty = torch.zeros(0)  # of the members told last
        self.played_steps = 0  # by mean policies since the last tell

    @classmethod
    def build(cls, setup: Setup, options: NoveltyOptions) -> NSES:
        """Every agent starts from the setup's policy; mean policies play on its evaluator."""
        mu, kwargs = get_flat(setup.policy), asdict(options)
        return cls(
            mu, setup.sigma, setup.popsize, evaluate=setup.evaluate, seed=setup.seed, **kwargs
        )

    @property
    def leader(self) -> int:
        """The agent whose mean scored the best return in its latest evaluation."""
        return int(self.returns.argmax())

    @property
    def mean(self) -> Tensor:
        """The leader's mean: the policy to evaluate and save."""
        return self.agents[self.leader].mean

    def ask(self) -> Population:
        """The chosen agent's members. Workers rebuild them from seeds when the chosen agent
        leads (the trainer's mean rows are then its mean); otherwise their vectors travel."""
        if self.archive is None and self.evaluate is not None:
            self.record(0, *self.play(self.agents[0].mean))
        population = self.agents[self.chosen].ask()
        if self.chosen != self.leader:
            population = Population(population.thetas, population.seeds, population.signs)
        return population

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        """Step the chosen agent, archive its new mean's behavior, choose the next agent."""
        rollouts = as_rollouts(results)
        chosen, weight = self.chosen, self.weight
        if self.evaluate is None:
            self.record(chosen, *self.average(rollouts))
        scalars = self.agents[chosen].tell(population, rollouts)
        if self.evaluate is not None:
            self.record(chosen, *self.play(self.agents[chosen].mean))
        self.chosen = self.choose()
        played, self.played_steps = self.played_steps, 0
        return scalars | {
            "novelty/agent": float(chosen),
            "novelty/reward_weight": weight,
            "novelty/member_novelty": float(self.novelty.mean()),
            "novelty/agent_return": float(self.returns[chosen]),
            "novelty/leader": float(self.leader),
            "novelty/archive_size": float(len(self.archive)),
            "novelty/mean_env_steps": float(played),
        }

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        """``E[(1 - w) rank(novelty) + w rank(return)]`` of the members, ``w`` the weight."""
        self.novelty = novelty(behaviors_of(rollouts), self.archive, self.neighbors)
        terms = [fitness(self.novelty, sample, p), fitness(returns_tensor(rollouts), sample, p)]
        return mix(terms, [1 - self.weight, self.weight])

    def play(self, theta: Tensor) -> tuple[Tensor, float]:
        """The behavior and return of ``theta`` over ``mean_episodes`` episodes."""
        seed = int(torch.randint(2**31, (1,), generator=self.generator))
        rollouts = self.evaluate(theta.unsqueeze(0), self.mean_episodes, seed)
        self.played_steps += rollouts.env_steps
        return behaviors_of(rollouts)[0], float(rollouts.returns[0])

    @staticmethod
    def average(rollouts: Rollouts) -> tuple[Tensor, float]:
        """The members' average behavior and return."""
        return behaviors_of(rollouts).mean(0), float(rollouts.returns.mean())

    def record(self, agent: int, behavior: Tensor, value: float) -> None:
        """Agent ``agent``'s mean now behaves as ``behavior`` with return ``value``: into the
        archive. The first record is the start policy's, shared by every agent."""
        if self.archive is None:
            self.archive = behavior.unsqueeze(0)
            self.behaviors = behavior.expand(len(self.agents), -1).clone()
            self.returns.fill_(value)
            return
        self.archive = torch.cat([self.archive, behavior.unsqueeze(0)])
        self.behaviors[agent] = behavior
        self.returns[agent] = value

    def choose(self) -> int:
        """An agent drawn with probability proportional to its mean's novelty (uniformly when
        every novelty is 0)."""
        weights = novelty(self.behaviors, self.archive, self.neighbors)
        if not weights.sum() > 0:
            weights = torch.ones_like(weights)
        return int(torch.multinomial(weights, 1, generator=self.generator))

    def state_dict(self) -> dict:
        return {
            "agents": [agent.state_dict() for agent in self.agents],
            "archive": self.archive,
            "behaviors": None if self.behaviors is None else self.behaviors.clone(),
            "returns": self.returns.clone(),
            "chosen": self.chosen,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for agent, saved in zip(self.agents, state["agents"], strict=True):
            agent.load_state_dict(saved)
        behaviors = state["behaviors"]
        self.archive = state["archive"]
        self.behaviors = None if behaviors is None else behaviors.clone()
        self.returns, self.chosen = state["returns"].clone(), state["chosen"]
        self.generator.set_state(state["generator"])


class NSRES(NSES):
    """NSR-ES: the agents step on the average of the novelty and return ranks."""

    weight = 0.5


class NSRAES(NSES):
    """NSRA-ES: the weight of the return ranks adapts (module docstring); ``patience`` and
    ``weight_delta`` are the paper's t_max and delta_w."""

    Options = NSRAOptions
    weight = 1.0

    def __init__(self, *args, patience: int = 10, weight_delta: float = 0.05, **kwargs) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if not 0 < weight_delta <= 1:
            raise ValueError(f"weight_delta must be in (0, 1], got {weight_delta}")
        super().__init__(*args, **kwargs)
        self.patience, self.weight_delta = patience, weight_delta
        self.best, self.stale = -math.inf, 0

    def record(self, agent: int, behavior: Tensor, value: float) -> None:
        """As :meth:`NSES.record`, adapting the weight to ``value`` after the start."""
        if self.archive is None:
            self.best = value
        else:
            self.adapt(value)
        super().record(agent, behavior, value)

    def adapt(self, value: float) -> None:
        """Conti et al.'s schedule on the return of an updated mean."""
        if value > self.best:
            self.best, self.stale = value, 0
            self.weight = min(1.0, self.weight + self.weight_delta)
            return
        self.stale += 1
        if self.stale >= self.patience:
            self.weight, self.stale = max(0.0, self.weight - self.weight_delta), 0

    def state_dict(self) -> dict:
        return super().state_dict() | {
            "weight": self.weight,
            "best": self.best,
            "stale": self.stale,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.weight, self.best, self.stale = state["weight"], state["best"], state["stale"]
