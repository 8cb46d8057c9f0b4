"""The generation step shared by every Gaussian search distribution (NES, MaxVar, MaxEnt, ...).

``ask`` samples a (by default mirrored) Normal population around the mean; ``tell``
differentiates the objective through :func:`neuroes.expectation` and steps a ``torch.optim``
optimizer (``OPTIMIZERS``: Adam, SGD or :class:`neuroes.optim.ClipUp`). Gaussian algorithms
differ in :meth:`GaussianES.objective`, the scalar to maximize, built with
:mod:`neuroes.objectives`; :class:`DiagonalES` adds a learned diagonal sigma stepped by its
algorithm's own rule (SNES, PGPE).

Gradient convention: the objective is differentiated by :func:`neuroes.expectation`, so the
search gradient of the mean is ``mean(shaped_fitness * eps) / sigma`` (1/sigma included).
Weight decay ``c`` is OpenAI-ES's ``l2coeff`` (Salimans et al., 2017): their step direction is
``mean(shaped_fitness * eps) - c * mu``, without 1/sigma, so here the whole direction is divided
by sigma and the gradient becomes ``(mean(shaped_fitness * eps) - c * mu) / sigma``; a
coefficient copied from their configs means the same here. The optimizer minimizes
``-objective``, so ``lr`` is the usual ``torch.optim`` learning rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neuroes import shaping
from neuroes.agents import get_flat
from neuroes.algorithms.base import Results, Setup, as_rollouts, option, require_positive
from neuroes.distributions import Normal
from neuroes.noise import Draws, NoiseTable
from neuroes.optim import ClipUp
from neuroes.population import Population
from neuroes.rollout import Rollouts

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "clipup": ClipUp}


@dataclass
class GaussianOptions:
    """Options of every Gaussian algorithm."""

    lr: float = option("learning rate (step size) of the distribution's mean", 0.03)
    optimizer: str | None = option(
        "optimizer of the mean (default: adam; snes and ars: sgd, their papers' plain step; "
        "pgpe: clipup)",
        None,
        choices=tuple(OPTIMIZERS),
    )
    momentum: float = option("momentum of --optimizer clipup", 0.9)
    max_speed: float | None = option(
        "largest step of the mean with --optimizer clipup (default: 2 x lr)", None
    )
    weight_decay: float = option(
        "L2 coefficient on the mean, as OpenAI-ES's l2coeff: the mean's gradient is "
        "(mean(ranks * eps) - c * mu) / sigma",
        0.0,
    )


@dataclass
class SigmaOptions(GaussianOptions):
    """Options of the Gaussian algorithms that learn sigma."""

    sigma_lr: float | None = option(
        "learning rate of sigma (default: 0.01; snes: (3 + ln d) / (5 sqrt d), d parameters; "
        "pgpe: 0.1)",
        None,
    )


@dataclass
class IsotropicOptions(SigmaOptions):
    """Options of the Gaussian algorithms with one sigma for all parameters."""

    learn_sigma: bool = option("learn sigma (log-parametrized) along with the mean", False)


class GaussianES:
    """A Normal population around ``mu`` trained by ``torch.optim`` on an objective.

    Subclasses define :meth:`objective` and, when they take more options, ``Options`` (a
    subclass of :class:`GaussianOptions` whose fields are keyword arguments of ``__init__``).

    Args:
        mu: the initial mean (the flattened policy).
        sigma: initial standard deviation (isotropic).
        popsize: members per generation (even when mirrored).
        lr: learning rate of the mean.
        mirrored: antithetic sampling.
        learn_sigma: learn log-sigma too, with learning rate ``sigma_lr`` (default 0.01), by
            the same optimizer as the mean.
        weight_decay: L2 coefficient on the mean, OpenAI-ES's ``l2coeff`` (module docstring).
        optimizer: a name in ``OPTIMIZERS`` (default: ``default_optimizer``).
        momentum, max_speed: ClipUp's (:class:`neuroes.optim.ClipUp`), when it is the optimizer.
        seed: seeds the generator of the noise seeds.
    """

    Options = IsotropicOptions
    default_optimizer = "adam"
    population_copies = 0  # members are seeds, built a chunk at a time where evaluated

    def __init__(
        self,
        mu: Tensor,
        sigma: float,
        popsize: int,
        lr: float,
        mirrored: bool = True,
        *,
        learn_sigma: bool = False,
        sigma_lr: float | None = None,
        weight_decay: float = 0.0,
        optimizer: str | None = None,
        momentum: float = 0.9,
        max_speed: float | None = None,
        seed: int = 0,
    ) -> None:
        sigma_lr = 0.01 if sigma_lr is None else sigma_lr
        optimizer = optimizer or self.default_optimizer
        require_positive(popsize=popsize, sigma=sigma, lr=lr, sigma_lr=sigma_lr)
        if mirrored and popsize % 2:
            raise ValueError(f"popsize must be even for mirrored sampling, got {popsize}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
        self.mu = mu.detach().clone().float().requires_grad_(True)
        self.log_sigma = torch.tensor(float(np.log(sigma)), requires_grad=learn_sigma)
        self.popsize, self.mirrored, self.weight_decay = popsize, mirrored, weight_decay
        groups = [{"params": [self.mu], "lr": lr}]
        if learn_sigma:
            groups.append({"params": [self.log_sigma], "lr": sigma_lr})
        clipup = {"momentum": momentum, "max_speed": max_speed} if optimizer == "clipup" else {}
        self.optimizer = OPTIMIZERS[optimizer](groups, **clipup)
        self.generator = torch.Generator().manual_seed(seed)
        self.table = NoiseTable.for_dim(self.mu.numel())

    @classmethod
    def build(cls, setup: Setup, options: GaussianOptions) -> GaussianES:
        """Starts from the setup's policy; the options are keyword arguments of ``__init__``."""
        mu = get_flat(setup.policy)
        kwargs = dataclasses.asdict(options)
        return cls(mu, setup.sigma, setup.popsize, seed=setup.seed, **kwargs)

    @property
    def sigma(self) -> float:
        """The standard deviation (the mean of the diagonal for :class:`DiagonalES`)."""
        return float(self.log_sigma.detach().exp().mean())

    @property
    def mean(self) -> Tensor:
        """The distribution's mean: the parameters of the policy being trained."""
        return self.mu.detach()

    def distribution(self) -> Normal:
        return Normal(self.mu, self.log_sigma.exp(), self.mirrored, self.generator)

    def ask(self) -> Population:
        p = self.distribution()
        seeds, signs = p.sample_seeds(self.popsize)
        mu, sigma = self.mu.detach().clone(), p.sigma.detach().clone()
        return Population(None, seeds, signs, mu=mu, sigma=sigma, table=self.table)

    def draws(self, population: Population) -> Tensor | Draws:
        """The draws of :meth:`distribution` behind ``population``: its seeds, whose score
        function needs no member vectors (:func:`neuroes.noise.log_prob`)."""
        return Draws(population.seeds, population.signs, self.table)

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        """The scalar to maximize; each algorithm defines it."""
        raise NotImplementedError

    def decay(self) -> Tensor:
        """The weight-decay term of the objective (module docstring)."""
        return shaping.weight_decay(self.mu, self.weight_decay / self.log_sigma.detach().exp())

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        """One optimizer step on ``-objective``; returns scalars worth logging."""
        rollouts = as_rollouts(results)
        p = self.distribution()
        gain = self.objective(rollouts, self.draws(population), p)
        if self.weight_decay:
            gain = gain + self.decay()
        self.optimizer.zero_grad()
        (-gain).backward()
        self.precondition()
        grad_norm = float(self.mu.grad.norm())
        self.optimizer.step()
        return {
            "es/objective": float(gain.detach()),
            "es/grad_norm": grad_norm,
            "es/sigma": self.sigma,
            "es/param_norm": float(self.mu.detach().norm()),
        }

    def precondition(self) -> None:
        """Turn the gradients into the algorithm's step direction before the optimizer's step
        (the plain gradient here; natural gradients in :class:`DiagonalES`)."""

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


class DiagonalES(GaussianES):
    """A Gaussian with a learned diagonal sigma, stepped by natural gradients (SNES, PGPE).

    The mean's gradient from :func:`neuroes.expectation` is multiplied by ``sigma**2``, the
    inverse Fisher information of the mean: the step of both papers (for PGPE, Sehnke et al.'s
    per-parameter step size ``alpha * sigma_i**2``), handed to the optimizer. Log-sigma gets its
    gradient from the same expectation and is stepped by :meth:`step_sigma`, each algorithm's
    rule, outside the optimizer. Options as :class:`GaussianES`, except ``learn_sigma``.
    """

    Options = SigmaOptions

    def __init__(self, *args, sigma_lr: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dim = self.mu.numel()
        self.sigma_lr = self.default_sigma_lr(dim) if sigma_lr is None else sigma_lr
        require_positive(sigma_lr=self.sigma_lr)
        self.log_sigma = self.log_sigma.detach().expand(dim).clone().requires_grad_(True)

    def default_sigma_lr(self, dim: int) -> float:
        """The learning rate of sigma when none is given."""
        raise NotImplementedError

    def step_sigma(self, gradient: Tensor) -> Tensor:
        """The new log-sigma from ``gradient``, the objective's gradient in log-sigma."""
        raise NotImplementedError

    def precondition(self) -> None:
        with torch.no_grad():
            self.mu.grad.mul_(self.log_sigma.exp().square())

    def tell(self, population: Population, results: Results) -> dict[str, float]:
        """The mean's step (:meth:`GaussianES.tell`), then sigma's (:meth:`step_sigma`)."""
        self.log_sigma.grad = None
        scalars = super().tell(population, results)
        with torch.no_grad():
            self.log_sigma.copy_(self.step_sigma(-self.log_sigma.grad))
        sigma = self.log_sigma.detach().exp()
        return scalars | {"es/sigma_min": float(sigma.min()), "es/sigma_max": float(sigma.max())}


def returns_tensor(rollouts: Rollouts) -> Tensor:
    return torch.as_tensor(rollouts.returns, dtype=torch.float32)


def behaviors_tensor(rollouts: Rollouts) -> Tensor:
    if rollouts.behaviors.shape[1] == 0:
        raise ValueError(
            "this environment has no behavior descriptor; evolvability objectives need one "
            "(pass a descriptor function, or train with --algo nes)"
        )
    return torch.as_tensor(rollouts.behaviors, dtype=torch.float32)
