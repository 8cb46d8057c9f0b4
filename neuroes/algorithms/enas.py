"""ES-ENAS (Song et al., 2021): evolve a policy's weights and search its topology at once.

Every member is a pair (weights, topology): weights drawn from the Gaussian of
:class:`GaussianES` (mirrored, rebuildable from seeds), a topology from a controller over a
search space of :mod:`neuroes.agents.masked` (edges kept per layer, or edges assigned to
shared-weight partitions). The pair's log-probability is the sum of both
(:class:`neuroes.distributions.Joint`), so one :func:`neuroes.expectation` of the shaped
returns trains the weight mean and the controller's logits in the same backward pass and
``torch.optim`` step: the controller receives the score-function (REINFORCE) gradient that
Song et al. use for their policy-gradient controller, with no code path of its own. Mirrored
pairs share their topology; each member is still a draw of the joint distribution, and the
pair's return difference then measures the weight noise alone.

The trained policy, :attr:`ENAS.mean`, is the mean weights under the controller's most probable
topology (the k likeliest edges of each layer, or each edge's likeliest partition). It is chosen
after every step and kept in the state, so checkpoints carry it; the saved policy module holds
the effective dense vector, with zeros on the edges the topology drops.

Scalars: ``enas/controller_entropy`` is the Monte-Carlo entropy ``-mean log p(topology)`` of
the generation's draws (in edge mode the draw is ordered, so the entropy also counts the order
of the kept edges and need not reach zero once the set has settled), ``enas/edges_used`` and
``enas/edge_fraction`` the edges that carry weights, ``enas/controller_grad_norm`` the norm of
the logits' gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuroes.agents.masked import SearchSpace
from neuroes.algorithms.base import Population
from neuroes.algorithms.nes import NES
from neuroes.distributions import Distribution, Joint, Normal
from neuroes.rollout import Rollouts


class ENAS(NES):
    """NES on the joint distribution of weights and topologies of ``space``.

    ``mu`` is the dense policy's flat vector, turned into the searchable weights by
    ``space.initial``; ``controller_lr`` is the learning rate of the controller's logits (which
    start at zero: a uniform controller). Other arguments are those of :class:`NES`.
    """

    def __init__(
        self, mu: Tensor, *args, space: SearchSpace, controller_lr: float = 0.1, **kwargs
    ) -> None:
        if controller_lr <= 0:
            raise ValueError(f"controller_lr must be positive, got {controller_lr}")
        super().__init__(space.initial(mu.detach().float()), *args, **kwargs)
        self.space = space
        self.logits = torch.zeros(space.num_logits, requires_grad=True)
        self.optimizer.add_param_group({"params": [self.logits], "lr": controller_lr})
        self.topology = self.controller().mode()

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

    def tell(self, population: Population, rollouts: Rollouts) -> dict[str, float]:
        with torch.no_grad():
            entropy = -self.controller().log_prob(population.topologies).mean()
        scalars = super().tell(population, rollouts)
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
