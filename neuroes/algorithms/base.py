"""The contract every algorithm meets, and what it is built from.

An algorithm is an ask/tell pair over explicit state: :meth:`Algorithm.ask` returns the
generation's :class:`neuroes.population.Population`, :meth:`Algorithm.tell` takes the
population's rollouts, updates the state and returns the scalars worth logging, and
:attr:`Algorithm.mean` is the policy the trainer evaluates and saves. Each algorithm declares
its options as a dataclass of :func:`option` fields and builds itself from a :class:`Setup`
and those options; one row in :data:`neuroes.algorithms.ALGORITHMS` makes it a ``--algo``.
The trainer, the config and the command line know nothing else of it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from torch import Tensor

from neuroes.agents import Policy, num_params
from neuroes.population import Population
from neuroes.rollout import Rollouts

COPIES = 4  # float32 copies of the population's vectors alive at once: sample, rows, shards
PER_MEMBER = 2**12  # bytes per member besides its vector: environments, rollouts, seeds
Evaluate = Callable[[Tensor, int, int], Rollouts]
"""``evaluate(thetas, episodes, seed)``: rollouts of the vectors ``thetas`` (P, d) over
``episodes`` episodes each, episode ``e`` starting from ``reset(seed=seed + e)``."""


Results = Rollouts | Tensor | np.ndarray | Sequence[float]
"""What ``tell`` takes: rollouts, or plain fitness values, one per member (higher is better)."""


@dataclass(frozen=True)
class Setup:
    """What a run gives every algorithm.

    ``policy`` is the initialized policy (its flat parameters are the starting point, its
    architecture can be initialized afresh), ``sigma`` the initial or mutation standard
    deviation, ``seed`` seeds the algorithm's own randomness, and ``evaluate`` plays extra
    episodes of any vectors on the run's evaluator (``None`` outside a run).
    """

    policy: Policy
    popsize: int
    sigma: float
    seed: int = 0
    evaluate: Evaluate | None = None

    def require_memory(self, copies: int) -> None:
        """Refuse, with the estimate, a population whose ``copies`` float32 copies of its
        vectors and per-member state cannot fit in this machine's memory."""
        dim = num_params(self.policy)
        need = self.popsize * (copies * dim * 4 + PER_MEMBER)
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > have:
            raise ValueError(
                f"popsize {self.popsize} with {dim} parameters needs about {need / 2**30:.1f} "
                f"GiB for the population's vectors and state; this machine has "
                f"{have / 2**30:.1f} GiB"
            )


class Algorithm(Protocol):
    """What the trainer needs of an algorithm; every entry of ``ALGORITHMS`` meets it.

    An algorithm that keeps behaviors of its own (novelty search's archive) may expose them as
    ``archive`` (a, k): the trainer draws them behind the population's final positions. One
    whose populations are not ``COPIES`` matrices of vectors sets ``population_copies`` (the
    Gaussian algorithms: 0, their members are seeds), which sizes the memory check.
    """

    Options: ClassVar[type]
    """A dataclass of :func:`option` fields: the algorithm's own settings."""

    @classmethod
    def build(cls, setup: Setup, options: Any) -> Algorithm:
        """The algorithm at its first generation."""
        ...

    def ask(self) -> Population:
        """This generation's members."""
        ...

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        """Update from the members' results (:func:`as_rollouts`); returns scalars to log,
        tagged ``prefix/name``."""
        ...

    @property
    def mean(self) -> Tensor:
        """The flat parameters (d,) of the policy to evaluate and save."""
        ...

    def state_dict(self) -> dict:
        """The state, as tensors and plain containers: enough to continue exactly."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into an algorithm built with the same setup."""
        ...


def as_rollouts(results: Results) -> Rollouts:
    """``results`` as :class:`Rollouts`: rollouts as they are, plain fitness values (one per
    member) as :meth:`Rollouts.of` them. Every ``tell`` starts with this."""
    return results if isinstance(results, Rollouts) else Rollouts.of(results)


def option(help: str, default: Any, **cli: Any) -> Any:
    """A field of an options dataclass: its default, its help line, and argparse extras
    (``choices``, ``nargs``)."""
    if isinstance(default, list | dict):
        raise TypeError("option defaults must be immutable: use a tuple")
    return field(default=default, metadata={"help": help, **cli})


def require_positive(**values: float) -> None:
    """ValueError naming the first value that is not a positive finite number."""
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value}")
