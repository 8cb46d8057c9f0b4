"""One generation's members, in the form that travels from the learner to the workers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neuroes.distributions import Normal
from neuroes.noise import NoiseTable


class Population:
    """One generation's members: their vectors, or what builds them where they are evaluated.

    ``topologies`` holds each member's topology when the algorithm searches architectures
    (ES-ENAS), ``None`` otherwise. A population takes one of three forms:

    - ``thetas``: the vectors themselves (CMA-ES, ES-ENAS).
    - seeded: a Gaussian population's mean ``mu``, ``sigma`` and noise ``table``; member ``i``
      is ``Normal(mu, sigma).rebuild(seeds[i], signs[i], table)`` (sign 0 is ``mu`` itself).
      Workers receive these few numbers and rebuild their rows.
    - ``build``: a function from member indices (an int64 tensor) to their vectors, such as
      the genetic algorithm's parents plus mutation seeds; workers receive their rows' vectors.

    Seeded and built members are made only where they are evaluated, a chunk of rows at a time
    (:meth:`rows`), so that no ``(len, d)`` matrix need exist.
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
        build: Callable[[Tensor], Tensor] | None = None,
        index: Tensor | None = None,
    ) -> None:
        if [thetas is not None, mu is not None, build is not None].count(True) != 1:
            raise ValueError("a population holds one of: thetas, mu and seeds, or build")
        if build is not None and index is None:
            raise ValueError("a built population needs the indices of its members")
        self.vectors, self.seeds, self.signs, self.topologies = thetas, seeds, signs, topologies
        self.mu, self.sigma, self.table = mu, sigma, table
        self.build = build
        self.index = index  # the members of ``build`` that this population holds

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
        if self.build is not None:
            return self.build(self.index[start:stop])
        if not self.seeded:
            return self.vectors[start:stop]
        normal = Normal(self.mu, self.sigma)
        return normal.rebuild(self.seeds[start:stop], self.signs[start:stop], self.table, out)

    def non_finite_rows(self) -> list[int]:
        """The members with a non-finite parameter. Seeded: all of them unless ``mu`` and
        ``mu`` + 8 ``sigma`` are finite (noise beyond 8 standard deviations does not occur in a
        table). Built members are not checked: building them twice would double a
        generation's cost, and they come from vectors the algorithm keeps (the GA's parents)."""
        if self.build is not None:
            return []
        if not self.seeded:
            return (~torch.isfinite(self.vectors).all(1)).nonzero().flatten().tolist()
        reach = self.mu.abs().max() + 8 * self.sigma.abs().max() if self.mu.numel() else 0.0
        finite = bool(torch.isfinite(self.mu).all() and torch.isfinite(torch.as_tensor(reach)))
        return [] if finite else list(range(len(self)))

    def __len__(self) -> int:
        if self.vectors is not None:
            return len(self.vectors)
        return len(self.seeds) if self.seeded else len(self.index)

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
            self.build,
            part(self.index),
        )

    def repeated(self, count: int) -> Population:
        """Each member ``count`` times in a row (topologies dropped)."""
        if self.build is not None:
            return Population(build=self.build, index=self.index.repeat_interleave(count))
        if not self.seeded:
            return Population(self.vectors.repeat_interleave(count, 0))
        seeds, signs = self.seeds.repeat_interleave(count), self.signs.repeat_interleave(count)
        return Population(None, seeds, signs, None, self.mu, self.sigma, self.table)

    def with_mean(self, mean: Tensor, count: int) -> Population:
        """These members followed by ``count`` rows of ``mean``, which must be ``mu`` when
        seeded (its rows get sign 0; another mean is a ValueError); the result has no
        topologies."""
        if self.seeded:
            if not torch.equal(mean.to(self.mu), self.mu):
                raise ValueError("the mean rows of a seeded population must be its mu")
            seeds = torch.cat([self.seeds, self.seeds.new_zeros(count)])
            signs = torch.cat([self.signs, self.signs.new_zeros(count)])
            return Population(None, seeds, signs, None, self.mu, self.sigma, self.table)
        if self.build is None:
            return Population(torch.cat([self.vectors, mean.expand(count, -1)]))
        build = self.build
        index = torch.cat([self.index, torch.full((count,), -1)])  # -1: the mean

        def build_with_mean(rows: Tensor) -> Tensor:
            vectors = mean.expand(len(rows), -1).clone()
            built = rows >= 0
            if built.any():
                vectors[built] = build(rows[built])
            return vectors

        return Population(build=build_with_mean, index=index)
