"""Topology search spaces over an MLPPolicy's weights, for ES-ENAS (Song et al., 2021).

A search space maps searchable weights and a topology to the flat parameter vector of the dense
``MLPPolicy`` (:meth:`SearchSpace.effective`), so the evaluator runs any topology unchanged. A
topology is a vector of integers drawn by the space's controller distribution, whose logits are
one flat tensor that the space slices per layer. The "edges" of a layer are the entries of its
weight matrix (row-major, output by input); biases are never masked or shared.

- ``"edge"`` (:class:`EdgeSpace`): layer l keeps exactly ``k_l`` of its edges and zeroes the
  others. The searchable weights are the dense flat vector itself: every edge keeps its own
  weight whether or not a topology uses it. The controller draws each layer's kept edges
  without replacement from a softmax over the layer's edges
  (:class:`neuroes.distributions.TopK`); a topology is the layers' edge indices, concatenated.
- ``"partition"`` (:class:`PartitionSpace`): weight sharing as in chromatic networks
  (Choromanski et al., 2019). Each edge of layer l is assigned to one of ``K`` partitions and
  takes that partition's weight; the searchable weights are ``K`` shared weights per layer
  followed by every bias. The controller is an independent categorical over the ``K``
  partitions per edge; a topology is every edge's partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from neuroes.agents.policies import MLPPolicy, Policy
from neuroes.distributions import Categorical, Distribution, Joint, Seed, TopK


@dataclass(frozen=True)
class Layer:
    """Where one linear layer's weight and bias lie in the flat vector."""

    weight: slice
    bias: slice

    @property
    def edges(self) -> int:
        return self.weight.stop - self.weight.start


def linear_layers(policy: Policy) -> list[Layer]:
    """The layers of an ``MLPPolicy`` (or ``LinearPolicy``), in flat-vector order."""
    if not isinstance(policy, MLPPolicy):
        raise ValueError(
            f"topology search needs an mlp or linear policy, got {type(policy).__name__}"
        )
    slices, offset = {}, 0
    for name, p in policy.named_parameters():
        slices[name] = slice(offset, offset + p.numel())
        offset += p.numel()
    return [
        Layer(slices[f"layers.{k}.weight"], slices[f"layers.{k}.bias"])
        for k in range(len(policy.layers))
    ]


class SearchSpace:
    """Searchable weights (``dim``) and controller logits (``num_logits``) of one policy.

    ``edges_used`` is the number of edges that carry a weight under any topology of the space,
    out of ``total_edges``.
    """

    dim: int
    num_logits: int
    edges_used: int

    def __init__(self, policy: Policy) -> None:
        self.layers = linear_layers(policy)
        self.size = sum(p.numel() for p in policy.parameters())
        self.total_edges = sum(layer.edges for layer in self.layers)

    def initial(self, flat: Tensor) -> Tensor:
        """Searchable weights (dim,) that start from the dense flat vector ``flat``."""
        raise NotImplementedError

    def controller(self, logits: Tensor, generator: Seed = None) -> Distribution:
        """The distribution of topologies with ``logits`` (num_logits,)."""
        raise NotImplementedError

    def effective(self, weights: Tensor, topologies: Tensor) -> Tensor:
        """Flat policy vectors (n, size) of weights (n, dim) under topologies (n, ...)."""
        raise NotImplementedError


class EdgeSpace(SearchSpace):
    """Layer l keeps ``max(1, round(fraction_l * edges_l))`` edges; see the module docstring.

    ``fraction`` is one fraction for every layer or a sequence of one per layer.
    """

    def __init__(self, policy: Policy, fraction: float | Sequence[float]) -> None:
        super().__init__(policy)
        fractions = [fraction] if isinstance(fraction, (int, float)) else list(fraction)
        if len(fractions) == 1:
            fractions *= len(self.layers)
        if len(fractions) != len(self.layers):
            raise ValueError(
                f"edge fractions: give one for all layers or one per layer ({len(self.layers)}), "
                f"got {len(fractions)}"
            )
        if not all(0 < f <= 1 for f in fractions):
            raise ValueError(f"edge fractions must be in (0, 1], got {fraction}")
        self.keep = [
            max(1, round(f * layer.edges)) for f, layer in zip(fractions, self.layers, strict=True)
        ]
        self.dim, self.num_logits = self.size, self.total_edges
        self.edges_used = sum(self.keep)

    def initial(self, flat: Tensor) -> Tensor:
        return flat

    def controller(self, logits: Tensor, generator: Seed = None) -> Joint:
        chunks = logits.split([layer.edges for layer in self.layers])
        return Joint(*(TopK(c, k, generator) for c, k in zip(chunks, self.keep, strict=True)))

    def effective(self, weights: Tensor, topologies: Tensor) -> Tensor:
        out = weights.clone()
        kept = topologies.long().split(self.keep, dim=1)
        for layer, index in zip(self.layers, kept, strict=True):
            w = weights[:, layer.weight]
            out[:, layer.weight] = torch.zeros_like(w).scatter_(1, index, w.gather(1, index))
        return out


class PartitionSpace(SearchSpace):
    """``partitions`` shared weights per layer; see the module docstring."""

    def __init__(self, policy: Policy, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be a positive integer, got {partitions}")
        super().__init__(policy)
        self.partitions = partitions
        shared = partitions * len(self.layers)
        self.biases, offset = [], shared
        for layer in self.layers:
            count = layer.bias.stop - layer.bias.start
            self.biases.append(slice(offset, offset + count))
            offset += count
        self.dim, self.num_logits = offset, self.total_edges * partitions
        self.edges_used = self.total_edges

    def initial(self, flat: Tensor) -> Tensor:
        """Each layer's shared weights are evenly spaced quantiles of its dense weights."""
        levels = (torch.arange(self.partitions, dtype=flat.dtype) + 0.5) / self.partitions
        shared = [torch.quantile(flat[layer.weight], levels) for layer in self.layers]
        return torch.cat([*shared, *(flat[layer.bias] for layer in self.layers)])

    def controller(self, logits: Tensor, generator: Seed = None) -> Categorical:
        return Categorical(logits.view(self.total_edges, self.partitions), generator)

    def effective(self, weights: Tensor, topologies: Tensor) -> Tensor:
        out = weights.new_zeros(len(weights), self.size)
        assigned = topologies.long().split([layer.edges for layer in self.layers], dim=1)
        for k, (layer, bias, index) in enumerate(
            zip(self.layers, self.biases, assigned, strict=True)
        ):
            shared = weights[:, k * self.partitions : (k + 1) * self.partitions]
            out[:, layer.weight] = shared.gather(1, index)
            out[:, layer.bias] = weights[:, bias]
        return out


SPACES = ("edge", "partition")


def make_space(
    kind: str,
    policy: Policy,
    edge_fraction: float | Sequence[float] = 0.25,
    partitions: int = 8,
) -> SearchSpace:
    """The search space ``kind`` ("edge" or "partition") over ``policy``'s weights."""
    if kind == "edge":
        return EdgeSpace(policy, edge_fraction)
    if kind == "partition":
        return PartitionSpace(policy, partitions)
    raise ValueError(f"unknown search space {kind!r}; accepted: {', '.join(SPACES)}")
