"""The genetic algorithm of Such et al. (2017), "Deep Neuroevolution".

A population of parameter vectors, not a distribution. The first generation is ``popsize``
independent initializations of the policy. Each generation ranks the members by training return;
the best ``parents`` breed: every child is a parent chosen uniformly at random plus Gaussian
noise of scale ``sigma`` (the mutation power), with probability ``crossover`` first a uniform
crossover of two parents. The elite passes on unmutated as member 0 and is :attr:`mean`, the
policy the trainer evaluates and saves (member 0 of the first generation before any selection).

Elite selection: the candidates are the ``elite_candidates`` best members by training return,
or, once there is an elite, the previous elite and the ``elite_candidates - 1`` best others (as
in the paper, so at least 2); each plays ``elite_episodes`` extra episodes through the
setup's ``evaluate`` inside :meth:`GeneticAlgorithm.tell`, from seeds of the algorithm's
generator, and the best mean becomes the elite. Their steps are reported as
``ga/elite_env_steps`` and, through the trainer's ``evaluate``, count in ``time/env_steps``.
Without ``evaluate``, or with ``elite_episodes=0``, the candidates are
ranked by training return.

Genomes: a member is a tuple of seeds, the first seeding its initialization
(``initialize(seed)``), each later one a mutation (``+ sigma * noise(seed)`` from a
:class:`neuroes.noise.NoiseTable`); a crossover child's genome starts with
``(mask_seed, genome_a, genome_b)``: parameter i comes from parent a where
``noise(mask_seed)[i] > 0``. :func:`rebuild` turns a genome back into its vector; the learner
only does so for a restored state. Members are kept as a :class:`Brood`: the vectors of the
generation's parents (and crossover children) plus each member's mutation seed, so that no
population x parameters matrix exists; the evaluator builds members a chunk at a time.
Population rows: ``seeds`` holds each member's newest seed, ``signs`` is 1 for members mutated
this generation and 0 for the elite. Why the elite episodes run inside ``tell`` and how genomes
are cached: ``docs/design.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neuroes.agents import get_flat
from neuroes.algorithms.base import Evaluate, Results, Setup, as_rollouts, option, require_positive
from neuroes.noise import NoiseTable
from neuroes.population import Population

Genome = tuple
INITIALIZING = threading.Lock()
Initialize = Callable[[int], Tensor]
"""``initialize(seed)``: a freshly initialized parameter vector (d,), the same for the same seed."""


@dataclass
class GAOptions:
    """Options of the genetic algorithm."""

    parents: int = option("truncation size: the number of best members that breed", 10)
    elite_candidates: int = option(
        "members re-evaluated to choose the elite, the previous elite included", 10
    )
    elite_episodes: int = option("extra episodes of each elite candidate", 30)
    crossover: float = option("probability that a child is a crossover of two parents", 0.0)


def mutate(thetas: Tensor, seeds: Tensor, sigma: float, table: NoiseTable) -> Tensor:
    """``thetas (n, d) + sigma * noise(seeds)``: one mutation per row."""
    return thetas + sigma * table.noise(seeds, thetas.shape[1])


def cross(a: Tensor, b: Tensor, mask_seeds: Tensor, table: NoiseTable) -> Tensor:
    """Uniform crossover of rows ``a`` and ``b`` (n, d): ``a`` where ``noise(mask_seed) > 0``."""
    return torch.where(table.noise(mask_seeds, a.shape[1]) > 0, a, b)


def rebuild(
    genome: Genome,
    initialize: Initialize,
    sigma: float,
    table: NoiseTable,
    memo: dict,
) -> Tensor:
    """The vector (d,) of ``genome``; ``memo`` (a dict, empty at first) shares work between
    genomes with common parts."""
    if id(genome) not in memo:
        origin, *mutations = genome
        if isinstance(origin, tuple):
            mask_seed, a, b = origin
            parents = [rebuild(g, initialize, sigma, table, memo).unsqueeze(0) for g in (a, b)]
            theta = cross(*parents, torch.tensor([mask_seed]), table)
        else:
            theta = initialize(origin).float().unsqueeze(0)
        for seed in mutations:
            theta = mutate(theta, torch.tensor([seed]), sigma, table)
        memo[id(genome)] = theta[0]
    return memo[id(genome)]


@dataclass(frozen=True)
class Brood:
    """One generation's members: ``sources[source[i]] + sigma * noise(mutation[i])``, the noise
    left out where ``mutated[i]`` is false (the elite). Called with member indices, returns
    their vectors; without ``sources`` (the first generation) member ``i`` is
    ``initialize(mutation[i])``."""

    initialize: Initialize
    sigma: float
    table: NoiseTable
    mutation: Tensor  # int64 seeds (P,)
    sources: Tensor | None = None  # (k, d)
    source: Tensor | None = None  # int64 (P,), rows of ``sources``
    mutated: Tensor | None = None  # bool (P,)

    def __call__(self, members: Tensor) -> Tensor:
        if self.sources is None:
            with INITIALIZING:  # initialize seeds torch's global generator; shards are threads
                return torch.stack(
                    [self.initialize(int(s)).float() for s in self.mutation[members]]
                )
        vectors = self.sources[self.source[members]]
        mutated = self.mutated[members]
        if mutated.any():
            seeds = self.mutation[members][mutated]
            vectors[mutated] = mutate(vectors[mutated], seeds, self.sigma, self.table)
        return vectors


class GeneticAlgorithm:
    """Truncation selection, re-evaluated elitism and Gaussian mutation over seed genomes.

    Args:
        initialize: ``initialize(seed)`` draws one independent initialization of the policy.
        sigma: mutation power (standard deviation of the added noise).
        popsize: members per generation, the elite included.
        parents: truncation size T, the number of best members that breed.
        elite_candidates: members re-evaluated to choose the elite, the previous one included.
        elite_episodes: extra episodes of each candidate.
        crossover: probability that a child is a uniform crossover of two parents.
        evaluate: plays the candidates' extra episodes (see the module docstring).
        seed: seeds the generator of noise seeds, parent choices and episode seeds.
    """

    def __init__(
        self,
        initialize: Initialize,
        sigma: float,
        popsize: int,
        parents: int = 10,
        elite_candidates: int = 10,
        elite_episodes: int = 30,
        crossover: float = 0.0,
        evaluate: Evaluate | None = None,
        seed: int = 0,
    ) -> None:
        require_positive(sigma=sigma)
        if popsize < 2:
            raise ValueError(f"the genetic algorithm needs popsize >= 2, got {popsize}")
        bounds = (("parents", parents, 1), ("elite_candidates", elite_candidates, 2))
        for name, value, least in bounds:
            if not least <= value <= popsize:
                raise ValueError(
                    f"{name} must be between {least} and popsize ({popsize}), got {value}"
                )
        if elite_episodes < 0:
            raise ValueError(f"elite_episodes must not be negative, got {elite_episodes}")
        if not 0 <= crossover <= 1:
            raise ValueError(f"crossover must be a probability, got {crossover}")
        self.initialize = initialize
        self.sigma, self.popsize, self.parents = sigma, popsize, parents
        self.elite_candidates, self.elite_episodes = elite_candidates, elite_episodes
        self.crossover, self.evaluate = crossover, evaluate
        self.generator = torch.Generator().manual_seed(seed)
        self.genomes: list[Genome] = [(s,) for s in self._seeds(popsize).tolist()]
        self.elite = initialize(self.genomes[0][0]).float()
        self.table = NoiseTable.for_dim(len(self.elite))
        self.brood = Brood(initialize, sigma, self.table, torch.tensor(self._newest()))
        self.has_elite = False

    Options = GAOptions
    population_copies = 1  # the shards' vectors, when sent to worker processes

    @classmethod
    def build(cls, setup: Setup, options: GAOptions) -> GeneticAlgorithm:
        """Members are initialized like the setup's policy; elites replay on its evaluator."""
        policy = setup.policy
        spaces = policy.observation_space, policy.action_space

        def initialize(seed: int) -> Tensor:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                return get_flat(type(policy)(*spaces, **policy.options()))

        return cls(
            initialize,
            setup.sigma,
            setup.popsize,
            options.parents,
            options.elite_candidates,
            options.elite_episodes,
            options.crossover,
            evaluate=setup.evaluate,
            seed=setup.seed,
        )

    @property
    def mean(self) -> Tensor:
        """The elite (member 0 of the first generation before the first selection)."""
        return self.elite

    @property
    def vectors(self) -> Tensor:
        """Every member's vector (P, d), built on each call."""
        return self.brood(torch.arange(self.popsize))

    def _newest(self) -> list[int]:
        return [genome[-1] for genome in self.genomes]

    def _seeds(self, n: int) -> Tensor:
        return torch.randint(2**62, (n,), generator=self.generator)

    def ask(self) -> Population:
        return Population(build=self.brood, index=torch.arange(self.popsize))

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        """Select the elite and the parents, and breed the next population."""
        rollouts = as_rollouts(results)
        returns = torch.as_tensor(rollouts.returns, dtype=torch.float64)
        ranked = returns.argsort(descending=True, stable=True).tolist()
        if self.has_elite:  # the previous elite is member 0
            candidates = [0, *(i for i in ranked if i != 0)][: self.elite_candidates]
        else:
            candidates = ranked[: self.elite_candidates]
        scores, elite_steps = returns[candidates].numpy(), 0
        if self.evaluate is not None and self.elite_episodes:
            seed = int(torch.randint(2**31, (1,), generator=self.generator))
            extra = self.evaluate(self.brood(torch.tensor(candidates)), self.elite_episodes, seed)
            scores, elite_steps = extra.returns, extra.env_steps
        elite = candidates[int(np.argmax(scores))]
        parents = [elite, *(i for i in ranked if i != elite)][: self.parents]
        self.genomes, self.brood = self._breed(parents)
        self.elite, self.has_elite = self.brood.sources[0], True
        return {
            "ga/elite_return": float(np.max(scores)),
            "ga/parents_return_mean": float(returns[parents].mean()),
            "ga/genome_length": float(len(self.genomes[0])),
            "ga/elite_env_steps": float(elite_steps),
        }

    def _breed(self, parents: list[int]) -> tuple[list[Genome], Brood]:
        """The elite (``parents[0]``) and ``popsize - 1`` children of ``parents`` (indices
        into the population): their genomes and brood."""
        n, pool = self.popsize - 1, torch.tensor(parents)
        first = torch.randint(len(pool), (n,), generator=self.generator)  # rows of pool
        seeds = self._seeds(n)
        sources, source = self.brood(pool), first
        origins = [self.genomes[i] for i in pool[first].tolist()]
        if self.crossover:
            crossed = torch.rand(n, generator=self.generator) < self.crossover
            second = torch.randint(len(pool), (n,), generator=self.generator)
            masks = self._seeds(n)
            mixed = cross(
                sources[first[crossed]], sources[second[crossed]], masks[crossed], self.table
            )
            source = torch.where(crossed, len(pool) + crossed.cumsum(0) - 1, first)
            sources = torch.cat([sources, mixed])
            for j in crossed.nonzero().flatten().tolist():
                pair = (origins[j], self.genomes[parents[int(second[j])]])
                origins[j] = ((int(masks[j]), *pair),)
        genomes = [(*origin, s) for origin, s in zip(origins, seeds.tolist(), strict=True)]
        brood = Brood(
            self.initialize,
            self.sigma,
            self.table,
            mutation=torch.cat([seeds.new_zeros(1), seeds]),
            sources=sources,
            source=torch.cat([source.new_zeros(1), source]),  # the elite: parents[0], as is
            mutated=torch.cat([torch.tensor([False]), torch.ones(n, dtype=torch.bool)]),
        )
        return [self.genomes[parents[0]], *genomes], brood

    def state_dict(self) -> dict:
        return {
            "genomes": list(self.genomes),
            "has_elite": self.has_elite,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if "init" in state:
            raise ValueError(
                "this genetic algorithm state was saved by neuroes 0.1, whose first generation "
                "mutated one network; it cannot be resumed (its saved policy still loads)"
            )
        self.genomes, self.has_elite = list(state["genomes"]), state["has_elite"]
        self.generator.set_state(state["generator"])
        newest = torch.tensor(self._newest())
        if not self.has_elite:  # the first generation: initializations
            self.brood = Brood(self.initialize, self.sigma, self.table, newest)
            self.elite = self.initialize(self.genomes[0][0]).float()
            return
        # The elite as it is, every other member a mutation of the genome before its last seed.
        origins = [self.genomes[0], *(genome[:-1] for genome in self.genomes[1:])]
        distinct = list(dict.fromkeys(origins))
        memo: dict = {}
        sources = torch.stack(
            [rebuild(g, self.initialize, self.sigma, self.table, memo) for g in distinct]
        )
        row = {origin: k for k, origin in enumerate(distinct)}
        mutated = torch.ones(self.popsize, dtype=torch.bool)
        mutated[0] = False
        source = torch.tensor([row[origin] for origin in origins])
        self.brood = Brood(
            self.initialize, self.sigma, self.table, newest, sources, source, mutated
        )
        self.elite = sources[0]
