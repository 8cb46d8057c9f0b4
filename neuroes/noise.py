"""The shared noise table of OpenAI-ES (Salimans et al., 2017): members described by seeds.

Every process that builds a :class:`NoiseTable` from the same ``seed`` holds the same values, so
a member is sent as an integer seed and rebuilt where it is evaluated.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.lru_cache(maxsize=2)
def _table_values(size: int, seed: int) -> Tensor:
    return torch.randn(size, generator=torch.Generator().manual_seed(seed))


class NoiseTable:
    """A fixed block of Gaussian noise, identical on every machine that builds it from ``seed``.

    A member's noise is the window of ``dim`` values starting at ``seed % (size - dim + 1)``,
    as in Salimans et al. (2017). The table is built lazily the first time it is read and
    cached per process, so a worker pays for it once.
    """

    def __init__(self, size: int = 2**24, seed: int = 7) -> None:
        self.size = size
        self.seed = seed

    @classmethod
    def for_dim(cls, dim: int, seed: int = 7) -> NoiseTable:
        """The smallest power-of-two table of at least 2^20 and 256 * ``dim`` values."""
        return cls(max(2**20, 1 << (256 * dim - 1).bit_length()), seed)

    def noise(self, seeds: Tensor, dim: int) -> Tensor:
        """The noise windows of ``seeds``, shape ``(len(seeds), dim)``, float32 on the CPU."""
        if dim > self.size // 4:
            raise ValueError(
                f"a noise table of {self.size} values is too small for {dim} parameters; "
                f"use NoiseTable(size >= {4 * dim})"
            )
        values = _table_values(self.size, self.seed)
        starts = torch.as_tensor(seeds, dtype=torch.int64).remainder(self.size - dim + 1)
        return values[starts.unsqueeze(1) + torch.arange(dim)]
