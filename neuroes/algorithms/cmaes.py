"""CMA-ES (Hansen and Ostermeier, 2001) through pycma, its reference implementation: full
covariance (``cma``), or diagonal (``sepcma``, Ros and Hansen, 2008: pycma's ``CMA_diagonal``).

pycma minimizes: it is told the negated returns. Its candidates travel to the evaluator as
vectors, like the GA's, and :attr:`CMA.mean` is its mean. pycma draws its normal numbers from a
numpy generator of this module (``randn``), never from numpy's global one.

Checkpoints hold pycma's state as data (:data:`STATE`): the mean, step size, covariance (its
matrix and eigendecomposition, or the diagonal scaling of sep-CMA), evolution paths, the
sampler's update counters, the iteration and evaluation counts and the generator's state. A
restored algorithm builds a fresh pycma object from the same start and options and writes that
state into it, so a resumed run continues bitwise. Not restored, because nothing of the search
reads them: pycma's fitness history, best-solution record and timers, used by its termination
criteria and reports (neuroes stops by its own budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cma
import numpy as np
import torch
from cma.utilities.utils import ElapsedWCTime
from torch import Tensor

from neuroes.agents import get_flat
from neuroes.algorithms.base import Results, Setup, as_rollouts, require_positive
from neuroes.population import Population

MAX_FULL_DIM = 2000
"""Full covariance above this many parameters is refused: a 2000 x 2000 covariance is 32 MB in
every checkpoint and its eigendecomposition takes seconds; sep-CMA is linear in the dimension."""

STATE = (
    "mean",
    "mean_old",
    "sigma",
    "_sigma_old",
    "pc",
    "pc2",
    "countiter",
    "countevals",
    "adapt_sigma.ps",
    "adapt_sigma.delta",
    "adapt_sigma._ps_updated_iteration",
    "sigma_vec.scaling",
    "sigma_vec.is_identity",
)
FULL_STATE = ("sm.C", "sm.B", "sm.D", "sm.last_update", "sm.count_tell", "sm.count_eigen")
"""pycma's attributes that a resumed search reads, as dotted paths; ``FULL_STATE`` only with
full covariance (sep-CMA's sampler is the identity)."""


@dataclass
class CMAOptions:
    """CMA-ES takes the run's population size and sigma, and pycma's defaults otherwise."""


class CMA:
    """pycma's ``CMAEvolutionStrategy`` from ``mu`` with step size ``sigma``; a full covariance,
    or a diagonal one where the class sets ``diagonal`` (:class:`SepCMA`).

    Args:
        mu: the initial mean (the flattened policy).
        sigma: the initial step size, pycma's sigma0.
        popsize: candidates per generation (pycma's lambda; at least 4).
        seed: seeds the generator of pycma's normal numbers.
    """

    Options = CMAOptions
    diagonal = False

    def __init__(self, mu: Tensor, sigma: float, popsize: int, seed: int = 0) -> None:
        require_positive(sigma=sigma)
        dim = mu.numel()
        if popsize < 4:
            raise ValueError(f"CMA-ES needs popsize >= 4, got {popsize}")
        if not self.diagonal and dim > MAX_FULL_DIM:
            raise ValueError(
                f"full-covariance CMA-ES is limited to {MAX_FULL_DIM} parameters, got {dim} "
                f"(a {dim * dim * 8 / 2**20:.0f} MB covariance); use --algo sepcma"
            )
        self.rng = np.random.default_rng(seed)
        options = {
            "popsize": popsize,
            "CMA_diagonal": self.diagonal,
            "randn": lambda *shape: self.rng.standard_normal(shape),
            "seed": math.nan,  # pycma seeds numpy's global generator unless this is NaN
            "verbose": -9,
            "verb_log": 0,  # no files
            "verb_disp": 0,
        }
        self.es = cma.CMAEvolutionStrategy(mu.detach().double().numpy(), sigma, options)
        self.candidates: np.ndarray | None = None

    @classmethod
    def build(cls, setup: Setup, options: CMAOptions) -> CMA:
        """Starts from the setup's policy, with its sigma and population size."""
        return cls(get_flat(setup.policy), setup.sigma, setup.popsize, setup.seed)

    @property
    def mean(self) -> Tensor:
        return torch.from_numpy(np.asarray(self.es.mean)).float()

    def ask(self) -> Population:
        self.candidates = np.asarray(self.es.ask())
        return Population(torch.from_numpy(self.candidates).float())

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        """pycma's update from the negated returns of the last population asked."""
        rollouts = as_rollouts(results)
        asked = self.candidates
        if asked is None or not torch.equal(population.thetas, torch.from_numpy(asked).float()):
            raise ValueError("CMA-ES is told the results of the population it asked last")
        self.es.tell(list(asked), (-np.asarray(rollouts.returns, dtype=np.float64)).tolist())
        self.candidates = None
        stds = self.es.stds  # per parameter: sigma times the covariance's diagonal, rooted
        return {
            "cma/sigma": float(self.es.sigma),
            "cma/std_min": float(stds.min()),
            "cma/std_max": float(stds.max()),
            "cma/param_norm": float(np.linalg.norm(self.es.mean)),
        }

    def _paths(self) -> tuple[str, ...]:
        return STATE if self.diagonal else STATE + FULL_STATE

    def state_dict(self) -> dict:
        """pycma's state (:data:`STATE`; ``mean_old`` exists from the first tell on) as tensors
        and numbers, and the generator's state."""
        values = {path: _get(self.es, path) for path in self._paths()}
        return {
            "pycma": {path: _to_data(value) for path, value in values.items() if value is not None},
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        for path, value in state["pycma"].items():
            _set(self.es, path, _from_data(value))
        self.es._updateBDfromSM()  # pycma's B and D from the sampler's state
        self.es.timer = ElapsedWCTime()  # pycma starts its clock at its first ask
        self.rng.bit_generator.state = state["rng"]
        self.candidates = None


class SepCMA(CMA):
    """sep-CMA-ES: pycma with a diagonal covariance (see :class:`CMA`)."""

    diagonal = True


def _get(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name, None)
    return obj


def _set(obj: Any, path: str, value: Any) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(obj, parent) if parent else obj, name, value)


def _to_data(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_data(value: Any) -> Any:
    return value.numpy().copy() if isinstance(value, Tensor) else value
