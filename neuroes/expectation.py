"""The differentiable Monte-Carlo expectation at the core of neuroes."""

from __future__ import annotations

import torch
from torch import Tensor

from neuroes.distributions import Distribution


def expectation(values: Tensor, sample: Tensor, p: Distribution, dim: int = 0) -> Tensor:
    """Monte-Carlo estimate of E_p[values], differentiable in the parameters of ``p``.

    ``values.shape[dim]`` indexes the draws in ``sample``. The result's value is the plain mean
    of ``values`` over ``dim``; its gradient is the score-function (likelihood-ratio) estimate
    ``mean(values * grad log p(sample)) + mean(grad values)`` for every parameter of ``p`` that
    requires grad. Gradients flowing through ``values`` themselves (for instance through a
    population mean computed with another ``expectation``) are kept.

    With ``p = Normal(mu, sigma)`` the gradient with respect to ``mu`` is
    ``mean(values * eps) / sigma`` where ``eps = (sample - mu) / sigma``: the 1/sigma factor is
    included, unlike some ES implementations that fold it into the learning rate.
    """
    n = len(sample)
    if values.dim() == 0:
        raise ValueError("values must have a dimension indexing the samples, got a scalar")
    dim = dim % values.dim()
    if values.shape[dim] != n:
        raise ValueError(
            f"values.shape[{dim}] is {values.shape[dim]} but there are {n} samples; "
            "they must be equal"
        )
    log_prob = p.log_prob(sample.detach())
    weight = torch.exp(log_prob - log_prob.detach())  # equals 1, carries the score
    shape = [1] * values.dim()
    shape[dim] = n
    return (values * weight.view(shape)).mean(dim)
