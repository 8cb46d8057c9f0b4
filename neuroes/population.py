"""One generation's members, in the form that travels from the learner to the workers."""

from __future__ import annotations

import torch
from torch import Tensor

from neuroes.distributions import Normal
from neuroes.noise import NoiseTable


class Population:
    """One generation's members: their vectors, or the seeds and signs that rebuild them.

    ``topologies`` holds each member's topology when the algorithm searches architectures
    (ES-ENAS), ``None`` otherwise.

    A Gaussian population is ``seeded``: it carries its mean ``mu``, ``sigma`` and noise
    ``table`` instead of vectors, and member ``i`` is ``Normal(mu, sigma).rebuild(seeds[i],
    signs[i], table)`` (sign 0 is ``mu`` itself). Its vectors are built only where they are
    evaluated, a chunk of rows at a time (:meth:`rows`); workers receive the few numbers that
    describe them. Populations without ``mu`` (GA, ES-ENAS) hold and send their vectors.
    """

    def __init__(
        self,
        thetas: Tensor | None = None,
        seeds: Tensor | None = None,
        signs: Tensor | None = None,
        topologies: Tensor | None = None,
        mu: Tensor | None = None,
        sigma: Tensor | None = None,
        table: NoiseTable | None = None,
    ) -> None:
        if (thetas is None) == (mu is None):
            raise ValueError("a population holds either its vectors (thetas) or mu and seeds")
        self.vectors, self.seeds, self.signs, self.topologies = thetas, seeds, signs, topologies
        self.mu, self.sigma, self.table = mu, sigma, table

    @property
    def seeded(self) -> bool:
        return self.mu is not None

    @property
    def thetas(self) -> Tensor:
        """Every member's vector ``(len, d)``; a seeded population builds them on each call."""
        return self.rows(0, len(self))

    def rows(self, start: int, stop: int, out: Tensor | None = None) -> Tensor:
        """The vectors of members ``start .. stop - 1``; a seeded population writes them into
        ``out`` (``(stop - start, d)`` float32) when given."""
        if not self.seeded:
            return self.vectors[start:stop]
        normal = Normal(self.mu, self.sigma)
        return normal.rebuild(self.seeds[start:stop], self.signs[start:stop], self.table, out)

    def non_finite_rows(self) -> list[int]:
        """The members with a non-finite parameter (all of them when ``mu`` or ``sigma`` is
        not finite: the noise table always is)."""
        if not self.seeded:
            return (~torch.isfinite(self.vectors).all(1)).nonzero().flatten().tolist()
        finite = bool(torch.isfinite(self.mu).all() and torch.isfinite(self.sigma).all())
        return [] if finite else list(range(len(self)))

    def __len__(self) -> int:
        return len(self.seeds) if self.seeded else len(self.vectors)

    def __getitem__(self, rows: slice) -> Population:
        def part(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[rows]

        return Population(
            part(self.vectors),
            part(self.seeds),
            part(self.signs),
            part(self.topologies),
            self.mu,
            self.sigma,
            self.table,
        )

    def repeated(self, count: int) -> Population:
        """Each member ``count`` times in a row (topologies dropped)."""
        if not self.seeded:
            return Population(self.vectors.repeat_interleave(count, 0))
        seeds, signs = self.seeds.repeat_interleave(count), self.signs.repeat_interleave(count)
        return Population(None, seeds, signs, None, self.mu, self.sigma, self.table)

    def with_mean(self, mean: Tensor, count: int) -> Population:
        """These members followed by ``count`` rows of ``mean``, which must be ``mu`` when
        seeded (its rows get sign 0); the result has no topologies."""
        if not self.seeded:
            return Population(torch.cat([self.vectors, mean.expand(count, -1)]))
        seeds = torch.cat([self.seeds, self.seeds.new_zeros(count)])
        signs = torch.cat([self.signs, self.signs.new_zeros(count)])
        return Population(None, seeds, signs, None, self.mu, self.sigma, self.table)
