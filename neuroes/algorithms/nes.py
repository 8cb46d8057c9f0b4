"""NES in the style of OpenAI-ES (Salimans et al., 2017): maximize the expected shaped fitness."""

from __future__ import annotations

from torch import Tensor

from neuroes.algorithms.gaussian import GaussianES, returns_tensor
from neuroes.distributions import Normal
from neuroes.objectives import fitness
from neuroes.rollout import Rollouts
from neuroes.shaping import SHAPINGS


class NES(GaussianES):
    """Gaussian ES on ``E[shaping(returns)]``; ``shaping`` is a name in ``SHAPINGS``."""

    def __init__(self, *args, shaping: str = "centered_ranks", **kwargs) -> None:
        if shaping not in SHAPINGS:
            raise ValueError(f"unknown shaping {shaping!r}; accepted: {', '.join(SHAPINGS)}")
        super().__init__(*args, **kwargs)
        self.shaping = SHAPINGS[shaping]

    def objective(self, rollouts: Rollouts, sample: Tensor, p: Normal) -> Tensor:
        return fitness(returns_tensor(rollouts), sample, p, self.shaping)
