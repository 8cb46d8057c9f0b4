"""neuroes: neuroevolution on Gymnasium, with search distributions trained by autograd."""

import neuroes.envs  # noqa: F401  (registers neuroes/PointMaze-v0 and the other custom envs)
from neuroes.distributions import (
    Bernoulli,
    Categorical,
    MixtureNormal,
    NoiseTable,
    Normal,
)
from neuroes.expectation import expectation


def __getattr__(name: str):
    # ``neuroes.load`` imports gymnasium and the policies; only pay for it when used.
    if name == "load":
        from neuroes.checkpoint import load

        return load
    raise AttributeError(f"module 'neuroes' has no attribute {name!r}")


__all__ = [
    "Bernoulli",
    "Categorical",
    "MixtureNormal",
    "NoiseTable",
    "Normal",
    "expectation",
    "load",
]
__version__ = "0.1.0"
