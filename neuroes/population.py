"""One generation's members, in the form that travels from the learner to the workers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from neuroes.noise import NoiseTable


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
