"""Observation normalization with frozen statistics, as in OpenAI-ES.

Workers normalize with a frozen ``mean``/``std`` and return the float64 sums of what they saw
(``statistics``); the learner merges them with ``update``, the only call that changes the
normalization. All state lives in buffers, so it is saved and pickled with the module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class ObservationNormalizer(nn.Module):
    """``((obs - mean) / std).clamp(-clip, clip)``; identity-like (mean 0, std 1) until updated.

    ``std`` is the population standard deviation of everything merged, its variance floored at
    ``min_variance``. The floor 1e-2 (std >= 0.1) is OpenAI-ES's: an almost constant input
    stays near zero instead of having its noise blown up to the scale of real features.
    """

    def __init__(self, dim: int, clip: float = 5.0, min_variance: float = 1e-2) -> None:
        super().__init__()
        self.dim, self.clip, self.min_variance = dim, clip, min_variance
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, obs: Tensor) -> Tensor:
        return ((obs - self.mean) / self.std).clamp(-self.clip, self.clip)

    @staticmethod
    def statistics(obs: np.ndarray | Tensor) -> tuple[float, np.ndarray, np.ndarray]:
        """``(count, sum, sum of squares)`` in float64 of a batch ``(..., dim)``."""
        if isinstance(obs, Tensor):
            obs = obs.detach().cpu().numpy()
        obs = np.asarray(obs, dtype=np.float64)
        obs = obs.reshape(-1, obs.shape[-1])
        return float(len(obs)), obs.sum(0), np.square(obs).sum(0)

    @torch.no_grad()
    def update(
        self, count: float, total: np.ndarray | Tensor, total_sq: np.ndarray | Tensor
    ) -> None:
        """Merges sums from ``statistics`` and refreshes the frozen ``mean`` and ``std``."""
        self.count += count
        self.total += torch.as_tensor(total, dtype=torch.float64, device=self.total.device)
        self.total_sq += torch.as_tensor(total_sq, dtype=torch.float64, device=self.total.device)
        if self.count > 0:
            mean = self.total / self.count
            var = (self.total_sq / self.count - mean.square()).clamp(min=self.min_variance)
            self.mean.copy_(mean)
            self.std.copy_(var.sqrt())
