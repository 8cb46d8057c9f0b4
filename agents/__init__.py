"""Policies, action heads, flat parameter views and observation normalization."""

from neuroes.agents.flat import BatchedForward, check_batched, get_flat, num_params, set_flat
from neuroes.agents.heads import ActionHead, make_head
from neuroes.agents.normalizer import ObservationNormalizer
from neuroes.agents.policies import (
    POLICIES,
    GRUPolicy,
    LinearPolicy,
    MLPPolicy,
    ModulePolicy,
    Policy,
    as_policy,
    flatten_observations,
    make_policy,
    observation_dim,
)

__all__ = [
    "POLICIES",
    "ActionHead",
    "BatchedForward",
    "GRUPolicy",
    "LinearPolicy",
    "MLPPolicy",
    "ModulePolicy",
    "ObservationNormalizer",
    "Policy",
    "as_policy",
    "check_batched",
    "flatten_observations",
    "get_flat",
    "make_head",
    "make_policy",
    "num_params",
    "observation_dim",
    "set_flat",
]
