"""Batches of environments that play one episode per sub-environment, for the evaluator.

A family of environments with a faster batch than a list of single environments is one module
here with a ``build(env_id, env_kwargs)`` function, returning a
:class:`~neuroes.envs.vector.base.BatchEnv` or None where it does not apply to these
arguments, and one row of :data:`FAMILIES`. :func:`make_batch` falls back to
:class:`~neuroes.envs.vector.env_list.EnvList`, which runs any environment.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from neuroes.envs.descriptors import Descriptor, descriptor_for, family
from neuroes.envs.vector.base import BatchEnv, EnvFailure, EnvSource, make_env
from neuroes.envs.vector.env_list import EnvList

MUJOCO = (
    "HalfCheetah",
    "Hopper",
    "Walker2d",
    "Swimmer",
    "Ant",
    "Humanoid",
    "InvertedPendulum",
    "InvertedDoublePendulum",
    "Reacher",
)

# Family (the id without namespace and version) -> the module of neuroes.envs.vector that builds it.
FAMILIES: dict[str, str] = {
    "CartPole": "cartpole",  # Gymnasium's native vector environment
    "Pendulum": "pendulum",  # numpy
    "PointMaze": "native",  # neuroes' own vector environment
    "DeceptiveMaze": "native",  # the same, in the hard maze
    **dict.fromkeys(MUJOCO, "locomotion"),  # an MjData per sub-environment, stepped in C
}


def make_batch(
    env: EnvSource,
    env_kwargs: dict | None = None,
    descriptor: Descriptor | None = None,
) -> BatchEnv:
    """The batch for ``env`` (an id made with ``env_kwargs``, or a factory).

    A registered family's batch when ``env`` is one of its ids, its module accepts the
    arguments and ``descriptor`` (read by ``positions``) is the family's own or None; else a
    list of environments whose positions ``descriptor`` reads.
    """
    name = FAMILIES.get(family(env)) if isinstance(env, str) else None
    if name is not None and descriptor in (None, descriptor_for(env)):
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except gym.error.DependencyNotInstalled:  # the family's simulator is not installed
            pass  # the list's gymnasium.make says so
        else:
            batch = module.build(env, env_kwargs)
            if batch is not None:
                return batch
    return EnvList(env, env_kwargs, descriptor)


__all__ = [
    "FAMILIES",
    "BatchEnv",
    "EnvFailure",
    "EnvList",
    "EnvSource",
    "make_batch",
    "make_env",
]
