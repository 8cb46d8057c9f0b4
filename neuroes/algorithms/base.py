"""The generation step shared by every Gaussian search distribution (NES, MaxVar, MaxEnt).

An algorithm is an ask/tell pair over explicit state: ``ask`` returns the generation's
population, ``tell`` scores it and steps the optimizer. Algorithms differ only in
:meth:`GaussianES.objective`, the scalar to maximize, built with :mod:`neuroes.objectives`.

Gradient convention: the objective is differentiated by :func:`neuroes.expectation`, so the
search gradient of the mean is ``mean(shaped_fitness * eps) / sigma`` (1/sigma included).
Weight decay ``c`` is OpenAI-ES's ``l2coeff`` (Salimans et al., 2017): their step direction is
``mean(shaped_fitness * eps) - c * mu``, without 1/sigma, so here the whole direction is divided
by sigma and the gradient becomes ``(mean(shaped_fitness * eps) - c * mu) / sigma``; a
coefficient copied from their configs means the same here. The optimizer minimizes
``-objective``, so ``lr`` is the usual ``torch.optim`` learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from neuroes import shaping
from neuroes.distributions import NoiseTable, Normal
from neuroes.rollout import Rollouts

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass
class Population:
    """One generation's members: their vectors, and the seeds and signs that rebuild them.

    ``topologies`` holds each member's topology when the algorithm searches architectures
    (ES-ENAS), ``None`` otherwise.

    A Gaussian population also carries its mean ``mu``, ``sigma`` and noise ``table``, with
    ``Normal(mu, sigma).rebuild(seeds, signs, table) == thetas`` bitwise (sign 0 is ``mu``
    itself): such a population is ``seeded``, and workers receive those few numbers instead
    of the vectors. Populations without ``mu`` (GA, ES-ENAS) send their vectors.
    """

    thetas: Tensor
    seeds: Tensor | None = None
    signs: Tensor | None = None
    topologies: Tensor | None = None
    mu: Tensor | None = None
    sigma: Tensor | None = None
    table: NoiseTable | None = None

    @property
    def seeded(self) -> bool:
        return self.mu is not None

    def __len__(self) -> int:
        return len(self.thetas)

    def __getitem__(self, rows: slice) -> Population:
        per_row = {name: getattr(self, name) for name in ("thetas", "seeds", "signs", "topologies")}
        return replace(self, **{name: x[rows] for name, x in per_row.items() if x is not None})

    def with_mean(self, mean: Tensor, count: int) -> Population:
        """These members followed by ``count`` rows of ``mean``, which must be ``mu`` when
        seeded (its rows get sign 0); the result has no topologies."""
        thetas = torch.cat([self.thetas, mean.expand(count, -1)])
        if not self.seeded:
            return Population(thetas)
        seeds = torch.cat([self.seeds, self.seeds.new_zeros(count)])
        signs = torch.cat([self.signs, self.signs.new_zeros(count)])
        return replace(self, thetas=thetas, seeds=seeds, signs=signs, topologies=None)


class GaussianES:
    """A Normal population around ``mu`` trained by ``torch.optim`` on an objective.

    Args:
        mu: the initial mean (the flattened policy).
        sigma: initial standard deviation (isotropic).
        popsize: members per generation (even when mirrored).
        lr: learning rate of the mean.
        mirrored: antithetic sampling.
        learn_sigma: learn log-sigma too, with learning rate ``sigma_lr``.
        weight_decay: L2 coefficient on the mean, OpenAI-ES's ``l2coeff`` (module docstring).
        optimizer: a name in ``OPTIMIZERS``.
        seed: seeds the generator of the noise seeds.
    """

    def __init__(
        self,
        mu: Tensor,
        sigma: float,
        popsize: int,
        lr: float,
        mirrored: bool = True,
        learn_sigma: bool = False,
        sigma_lr: float = 0.01,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        seed: int = 0,
    ) -> None:
        if popsize < 1:
            raise ValueError(f"popsize must be positive, got {popsize}")
        if mirrored and popsize % 2:
            raise ValueError(f"mirrored sampling needs an even popsize, got {popsize}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
        self.mu = mu.detach().clone().float().requires_grad_(True)
        self.log_sigma = torch.tensor(float(np.log(sigma)), requires_grad=learn_sigma)
        self.popsize, self.mirrored, self.weight_decay = popsize, mirrored, weight_decay
        groups = [{"params": [self.mu], "lr": lr}]
        if learn_sigma:
            groups.append({"params": [self.log_sigma], "lr": sigma_lr})
        self.optimizer = OPTIMIZERS[optimizer](groups)
        self.generator = torch.Generator().manual_seed(seed)
        self.table = NoiseTable.for_dim(self.mu.numel())

    @property
    def sigma(self) -> float:
        return float(self.log_sigma.exp())

    @property
    def mean(self) -> Tensor:
        """The distribution's mean: the parameters of the policy being trained."""
        return self.mu.detach()

    def distribution(self) -> Normal:
        return Normal(self.mu, self.log_sigma.exp(), self.mirrored, self.generator)

    def ask(self) -> Population:
        p = self.distribution()
        seeds, signs = p.sample_seeds(self.popsize)
        thetas = p.rebuild(seeds, signs, self.table)
        mu, sigma = self.mu.detach().clone(), p.sigma.detach().clone()
        return Population(thetas, seeds, signs, mu=mu, sigma=sigma, table=self.table)

    def draws(self, population: Population) -> Tensor:
        """The draws of :meth:`distribution` behind ``population``: its parameter vectors."""
        return population.thetas

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        """The scalar to maximize; each algorithm defines it."""
        raise NotImplementedError

    def tell(self, population: Population, rollouts: Rollouts) -> dict[str, float]:
        """One optimizer step on ``-objective``; returns scalars worth logging."""
        p = self.distribution()
        gain = self.objective(rollouts, self.draws(population), p)
        if self.weight_decay:
            gain = gain + shaping.weight_decay(self.mu, self.weight_decay / self.sigma)
        self.optimizer.zero_grad()
        (-gain).backward()
        grad_norm = float(self.mu.grad.norm())
        self.optimizer.step()
        return {
            "es/objective": float(gain.detach()),
            "es/grad_norm": grad_norm,
            "es/sigma": self.sigma,
            "es/param_norm": float(self.mu.detach().norm()),
        }

    def state_dict(self) -> dict:
        return {
            "mu": self.mu.detach().clone(),
            "log_sigma": self.log_sigma.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.mu.copy_(state["mu"])
            self.log_sigma.copy_(state["log_sigma"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


def returns_tensor(rollouts: Rollouts) -> Tensor:
    return torch.as_tensor(rollouts.returns, dtype=torch.float32)


def behaviors_tensor(rollouts: Rollouts) -> Tensor:
    if rollouts.behaviors.shape[1] == 0:
        raise ValueError(
            "this environment has no behavior descriptor; evolvability objectives need one "
            "(pass a descriptor function, or train with --algo nes)"
        )
    return torch.as_tensor(rollouts.behaviors, dtype=torch.float32)
