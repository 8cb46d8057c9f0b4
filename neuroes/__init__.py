"""neuroes: neuroevolution on Gymnasium, with search distributions trained by autograd."""

from neuroes.distributions import (
    Bernoulli,
    Categorical,
    MixtureNormal,
    NoiseTable,
    Normal,
)
from neuroes.expectation import expectation

__all__ = [
    "Bernoulli",
    "Categorical",
    "MixtureNormal",
    "NoiseTable",
    "Normal",
    "expectation",
]
__version__ = "0.1.0"
