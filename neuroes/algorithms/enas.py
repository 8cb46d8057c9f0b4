"""ES-ENAS (Song et al., 2021): evolve a policy's weights and search its topology at once.

Every member is a pair (weights, topology): weights from the mirrored Gaussian of
:class:`neuroes.algorithms.gaussian.GaussianES`, a topology from a controller over a search space
of :mod:`neuroes.agents.masked` (edges kept per layer, or edges assigned to shared-weight
partitions); mirrored pairs share their topology. The pair's log-probability is the sum of both
(:class:`neuroes.distributions.Joint`), so one :func:`neuroes.expectation` of the shaped returns
trains the weight mean and the controller's logits in one backward pass and optimizer step: the
controller gets the score-function gradient of Song et al.'s policy-gradient controller.

The trained policy, :attr:`ENAS.mean`, is the mean weights under the controller's most probable
topology (the k likeliest edges of each layer, or each edge's likeliest partition), chosen after
every step and kept in the state; the saved policy holds the effective dense vector, zeros on
the dropped edges.

Scalars: ``enas/controller_entropy`` (the Monte-Carlo entropy ``-mean log p(topology)`` of the
generation's draws; in edge mode draws are ordered, so it need not reach zero once the kept set
has settled), ``enas/edges_used`` and ``enas/edge_fraction`` (the edges that carry weights),
``enas/controller_grad_norm``. Design notes: ``docs/design.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from neuroes.agents import get_flat
from neuroes.agents.masked import SPACES, SearchSpace, make_space
from neuroes.algorithms.base import COPIES, Results, Setup, option, require_positive
from neuroes.algorithms.gaussian import IsotropicOptions
from neuroes.algorithms.nes import NES
from neuroes.distributions import Distribution, Joint, Normal
from neuroes.population import Population


@dataclass
class ENASOptions(IsotropicOptions):
    """Options of ES-ENAS: the search space and the controller's learning rate."""

    topology: str = option(
        "edge (keep a fraction of each layer's edges) or partition (shared weights)",
        "edge",
        choices=SPACES,
    )
    edge_fraction: tuple[float, ...] = option(
        "edge search: fraction of edges kept, one for every layer or one per layer",
        (0.25,),
        nargs="+",
    )
    partitions: int = option("partition search: shared weights per layer", 8)
    controller_lr: float = option("Adam learning rate of the topology controller", 0.1)


class ENAS(NES):
    """NES on the joint distribution of weights and topologies of ``space``.

    ``mu`` is the dense policy's flat vector, turned into the searchable weights by
    ``space.initial``; ``controller_lr`` is the learning rate of the controller's logits (which
    start at zero: a uniform controller). Other arguments are those of :class:`NES`.
    """

    Options = ENASOptions
    population_copies = COPIES  # its members' vectors (weights under topologies)

    def __init__(
        self, mu: Tensor, *args, space: SearchSpace, controller_lr: float = 0.1, **kwargs
    ) -> None:
        require_positive(controller_lr=controller_lr)
        super().__init__(space.initial(mu.detach().float()), *args, **kwargs)
        self.space = space
        self.logits = torch.zeros(space.num_logits, requires_grad=True)
        self.optimizer.add_param_group({"params": [self.logits], "lr": controller_lr})
        self.topology = self.controller().mode()

    @classmethod
    def build(cls, setup: Setup, options: ENASOptions) -> ENAS:
        """The search space of ``options`` over the setup's policy, from its weights."""
        kwargs = dataclasses.asdict(options)
        fraction, partitions = kwargs.pop("edge_fraction"), kwargs.pop("partitions")
        space = make_space(kwargs.pop("topology"), setup.policy, fraction, partitions)
        mu = get_flat(setup.policy)
        return cls(mu, setup.sigma, setup.popsize, space=space, seed=setup.seed, **kwargs)

    def weights(self) -> Normal:
        """The Gaussian over the searchable weights."""
        return super().distribution()

    def controller(self) -> Distribution:
        """The distribution of topologies."""
        return self.space.controller(self.logits, self.generator)

    def distribution(self) -> Joint:
        return Joint(self.weights(), self.controller())

    @property
    def mean(self) -> Tensor:
        """The mean weights under the chosen topology, as a flat policy vector."""
        return self.space.effective(self.mu.detach().unsqueeze(0), self.topology.unsqueeze(0))[0]

    def ask(self) -> Population:
        weights = self.weights()
        seeds, signs = weights.sample_seeds(self.popsize)
        pairs = self.popsize // 2 if self.mirrored else self.popsize
        topologies = self.controller().sample(pairs)
        if self.mirrored:
            topologies = topologies.repeat_interleave(2, dim=0)
        thetas = self.space.effective(weights.rebuild(seeds, signs, self.table), topologies)
        return Population(thetas, seeds, signs, topologies)

    def draws(self, population: Population) -> Tensor:
        weights = self.weights().rebuild(population.seeds, population.signs, self.table)
        return Joint.join(weights, population.topologies)

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        with torch.no_grad():
            entropy = -self.controller().log_prob(population.topologies).mean()
        scalars = super().tell(population, results)
        self.topology = self.controller().mode()
        return scalars | {
            "enas/controller_entropy": float(entropy),
            "enas/controller_grad_norm": float(self.logits.grad.norm()),
            "enas/edges_used": float(self.space.edges_used),
            "enas/edge_fraction": self.space.edges_used / self.space.total_edges,
        }

    def state_dict(self) -> dict:
        return super().state_dict() | {
            "logits": self.logits.detach().clone(),
            "topology": self.topology.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.topology = state["topology"].clone()
