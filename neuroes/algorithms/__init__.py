"""The algorithms, one module each, and the one table that names them.

A new algorithm is one module meeting :class:`neuroes.algorithms.base.Algorithm` plus one row
in :data:`ALGORITHMS`: the command line (``--algo`` and its options), the config, the trainer
and the registry-driven tests pick it up from there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from neuroes.algorithms.ars import ARS
from neuroes.algorithms.base import COPIES, Algorithm, Setup
from neuroes.algorithms.cmaes import CMA, SepCMA
from neuroes.algorithms.enas import ENAS
from neuroes.algorithms.evolvability import MaxEnt, MaxVar
from neuroes.algorithms.ga import GeneticAlgorithm
from neuroes.algorithms.gaussian import GaussianES
from neuroes.algorithms.nes import NES
from neuroes.algorithms.novelty import NSES, NSRAES, NSRES
from neuroes.algorithms.pgpe import PGPE
from neuroes.algorithms.snes import SNES

ALGORITHMS: dict[str, type[Algorithm]] = {
    "nes": NES,
    "maxvar": MaxVar,
    "maxent": MaxEnt,
    "ga": GeneticAlgorithm,
    "enas": ENAS,
    "snes": SNES,
    "pgpe": PGPE,
    "ars": ARS,
    "cma": CMA,
    "sepcma": SepCMA,
    "ns": NSES,
    "nsr": NSRES,
    "nsra": NSRAES,
}


def algorithm(name: str) -> type[Algorithm]:
    """The class registered as ``name``; ValueError naming the accepted names."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algo {name!r}; accepted: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def option_names(name: str) -> list[str]:
    """The options of algorithm ``name``, in declaration order."""
    return [item.name for item in dataclasses.fields(algorithm(name).Options)]


def options_of(name: str, values: dict[str, Any]) -> Any:
    """The options dataclass of algorithm ``name`` from ``values`` (missing ones: defaults).

    A value that is not an option of ``name`` is a ValueError naming the algorithms it
    belongs to.
    """
    accepted = option_names(name)
    for key in values:
        if key not in accepted:
            owners = [other for other in ALGORITHMS if key in option_names(other)]
            where = f"an option of {', '.join(owners)}" if owners else "not an option"
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{flag} is {where}, not of --algo {name}")
    return algorithm(name).Options(**values)


def make_algorithm(name: str, setup: Setup, options: dict[str, Any] | None = None) -> Algorithm:
    """Algorithm ``name`` built from ``setup`` and its ``options`` (missing ones: defaults);
    a ValueError when its population cannot fit in memory (``population_copies``)."""
    cls = algorithm(name)
    setup.require_memory(getattr(cls, "population_copies", COPIES))
    return cls.build(setup, options_of(name, options or {}))


__all__ = [
    "ALGORITHMS",
    "ARS",
    "CMA",
    "ENAS",
    "NES",
    "PGPE",
    "SNES",
    "Algorithm",
    "GaussianES",
    "GeneticAlgorithm",
    "MaxEnt",
    "MaxVar",
    "SepCMA",
    "Setup",
    "algorithm",
    "make_algorithm",
    "option_names",
    "options_of",
]
