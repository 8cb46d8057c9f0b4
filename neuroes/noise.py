"""The shared noise table of OpenAI-ES (Salimans et al., 2017): members described by seeds.

Every process that builds a :class:`NoiseTable` from the same ``seed`` holds the same values, so
a member is sent as an integer seed and rebuilt where it is evaluated. :class:`Draws` are such
members of a Normal: the learner never needs their vectors, because the score function of a
Normal at a member depends only on the member's noise (:func:`log_prob`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
from torch import Tensor

CHUNK = 2**21
"""Noise values gathered at a time (8 MB) by :func:`log_prob`: a chunk stays in cache between
its gather and its use."""


_TABLES: dict[tuple[int, int], Tensor] = {}  # (size, seed) -> values, the newest two
_BUILDING = threading.Lock()  # evaluator threads may read a table first


def _table_values(size: int, seed: int) -> Tensor:
    """The values of a table, built once per process (see ``adopt`` and ``shared``)."""
    values = _TABLES.get((size, seed))
    if values is None:
        with _BUILDING:
            values = _TABLES.get((size, seed))
            if values is None:
                values = torch.randn(size, generator=torch.Generator().manual_seed(seed))
                _keep(size, seed, values)
    return values


def _keep(size: int, seed: int, values: Tensor) -> None:
    _TABLES[size, seed] = values
    while len(_TABLES) > 2:
        del _TABLES[next(iter(_TABLES))]


class NoiseTable:
    """A fixed block of Gaussian noise, identical on every machine that builds it from ``seed``.

    A member's noise is the window of ``dim`` values starting at ``seed % (size - dim + 1)``,
    as in Salimans et al. (2017). The table is built lazily the first time it is read and
    cached per process; local worker processes map the learner's copy (:meth:`shared`,
    :meth:`adopt`).
    """

    def __init__(self, size: int = 2**24, seed: int = 7) -> None:
        self.size = size
        self.seed = seed

    @classmethod
    def for_dim(cls, dim: int, seed: int = 7) -> NoiseTable:
        """The smallest power-of-two table of at least 2^20 and 256 * ``dim`` values."""
        return cls(max(2**20, 1 << (256 * dim - 1).bit_length()), seed)

    def values(self) -> Tensor:
        """All the table's values."""
        return _table_values(self.size, self.seed)

    def shared(self) -> Tensor | None:
        """The table's values moved to shared memory, for local worker processes to map
        (:meth:`adopt`); None when shared memory is too small for them (a container's
        ``/dev/shm``): workers then build their own."""
        values = self.values()
        try:
            return values if values.is_shared() else values.share_memory_()
        except RuntimeError:
            return None

    def adopt(self, values: Tensor) -> None:
        """Use ``values``, this table's values received from another process, in this one."""
        if values.shape != (self.size,):
            raise ValueError(f"a table of {self.size} values, got shape {tuple(values.shape)}")
        _keep(self.size, self.seed, values)

    def noise(self, seeds: Tensor, dim: int, out: Tensor | None = None) -> Tensor:
        """The noise windows of ``seeds``, shape ``(len(seeds), dim)``, float32 on the CPU;
        written into ``out`` when given."""
        starts = self.starts(seeds, dim)
        windows = self.values().unfold(0, dim, 1)  # a view, no copy
        return torch.index_select(windows, 0, starts, out=out)

    def starts(self, seeds: Tensor, dim: int) -> Tensor:
        """Where the windows of ``seeds`` start: members with equal starts share their noise."""
        if dim > self.size // 4:
            raise ValueError(
                f"a noise table of {self.size} values is too small for {dim} parameters; "
                f"use NoiseTable(size >= {4 * dim})"
            )
        return torch.as_tensor(seeds, dtype=torch.int64).remainder(self.size - dim + 1)


@dataclass(frozen=True)
class Draws:
    """Members ``mu + signs[i] * sigma * table.noise(seeds[i])`` of a Normal, kept as seeds.

    Pass them as the ``sample`` of :func:`neuroes.expectation` with that Normal: the gradient
    comes from the noise alone (:func:`log_prob`), without the ``(n, d)`` matrix of members.
    A sign of 0 is the mean itself.
    """

    seeds: Tensor
    signs: Tensor
    table: NoiseTable

    def __len__(self) -> int:
        return len(self.seeds)

    def detach(self) -> Draws:
        return self


def log_prob(mu: Tensor, sigma: Tensor, draws: Draws) -> Tensor:
    """``log N(member; mu, diag(sigma^2))`` of each of ``draws``, summed over the parameters.

    With ``eps = sign * noise`` the member's standardized offset, this is
    ``-|eps|^2 / 2 - sum(log sigma) - d log(2 pi) / 2``, and its gradients are those of the
    score function: ``eps / sigma`` for ``mu`` and ``(eps^2 - 1) / sigma`` for ``sigma``. They
    are computed from the noise windows a chunk at a time, members that share a window (mirrored
    pairs) once: one pass over the noise for the values and one per gradient; autograd keeps no
    ``(n, d)`` tensor.
    """
    return _NoiseLogProb.apply(mu, sigma, draws)


class _NoiseLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu: Tensor, sigma: Tensor, draws: Draws) -> Tensor:
        dim = mu.numel()
        starts, inverse = torch.unique(draws.table.starts(draws.seeds, dim), return_inverse=True)
        inverse = inverse.to(mu.device)
        signs = draws.signs.to(mu.device, mu.dtype)
        squares = _noise_products(draws.table, starts, dim, mu)  # |noise|^2
        ctx.draws, ctx.starts, ctx.inverse = draws, starts, inverse
        ctx.save_for_backward(mu, sigma, signs, squares)
        log_det = torch.log(sigma).expand(mu.shape).sum()
        return (
            -0.5 * signs.square() * squares[inverse] - log_det - 0.5 * dim * math.log(2 * math.pi)
        )

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        mu, sigma, signs, squares = ctx.saved_tensors
        table, starts, inverse, dim = ctx.draws.table, ctx.starts, ctx.inverse, mu.numel()
        grad_mu = grad_sigma = None
        if ctx.needs_input_grad[0]:
            weights = torch.zeros(len(starts), dtype=mu.dtype, device=mu.device)
            weights.index_add_(0, inverse, grad * signs)
            noise = _noise_products(table, starts, dim, mu, weights=weights)
            grad_mu = (noise.view(mu.shape) / sigma).to(mu.dtype)
        if ctx.needs_input_grad[1]:
            weights = torch.zeros(len(starts), dtype=mu.dtype, device=mu.device)
            weights.index_add_(0, inverse, grad * signs.square())
            if sigma.numel() == 1:  # isotropic: the sum over parameters needs the norms only
                grad_sigma = ((weights * squares).sum() - dim * grad.sum()) / sigma
                grad_sigma = grad_sigma.reshape(sigma.shape)
            else:
                squared = _noise_products(table, starts, dim, mu, weights=weights, squared=True)
                per_parameter = (squared.view(mu.shape) - grad.sum()) / sigma.expand(mu.shape)
                grad_sigma = per_parameter.sum_to_size(sigma.shape)
        return grad_mu, grad_sigma, None


def _noise_products(
    table: NoiseTable,
    starts: Tensor,
    dim: int,
    like: Tensor,
    weights: Tensor | None = None,
    squared: bool = False,
) -> Tensor:
    """With ``noise`` the windows at ``starts`` (n, dim): ``weights @ noise`` (dim,), or
    ``weights @ noise**2`` if ``squared``; without weights, each window's squared norm (n,)."""
    windows = table.values().unfold(0, dim, 1)
    rows = max(1, CHUNK // dim)
    total = torch.zeros(dim if weights is not None else len(starts), dtype=like.dtype)
    for first in range(0, len(starts), rows):
        chunk = torch.index_select(windows, 0, starts[first : first + rows]).to(like.dtype)
        if weights is None:
            total[first : first + rows] = torch.linalg.vector_norm(chunk, dim=1).square()
        else:
            total.addmv_(
                (chunk.square_() if squared else chunk).T, weights[first : first + rows].cpu()
            )
    return total.to(like.device)
