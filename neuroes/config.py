"""The training configuration: one dataclass of the run's settings, one line of help each.

The algorithm's own settings live in ``options``, checked against the options dataclass of
``ALGORITHMS[algo]``. Fields left as ``None`` take the environment's defaults from
:mod:`neuroes.presets`; :meth:`Config.resolved` fills them in and checks every value.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import Space
from torch import nn

from neuroes.agents import POLICIES
from neuroes.algorithms import ALGORITHMS, option_names, options_of
from neuroes.presets import defaults_for


def _help(text: str, default=None, **kwargs):
    return field(default=default, metadata={"help": text, **kwargs})


@dataclass
class Config:
    """One training run: the environment, the algorithm and its ``options``, the budget, the
    policy, evaluation, logging and where to evaluate. Each field is a command-line flag."""

    env_id: str = _help("Gymnasium environment id, e.g. CartPole-v1")
    algo: str = _help("the algorithm; its options are listed under its name", "nes",
                      choices=tuple(ALGORITHMS))  # fmt: skip
    options: dict[str, Any] = field(default_factory=dict)
    """The algorithm's options by name (``ALGORITHMS[algo].Options``); missing ones take the
    environment's preset, else the option's default."""
    popsize: int | None = _help("population size per generation")
    sigma: float | None = _help("initial (or mutation) standard deviation of the search")
    generations: int | None = _help("number of generations to run")
    time_limit: float | None = _help("stop after this many seconds of training (wall clock)")
    episodes: int | None = _help("episodes per member and generation (their returns are averaged)")
    max_steps: int | None = _help("cut every episode after this many steps (none: the env's limit)")
    seed: int = _help("seed of the run: noise, episodes and policy initialization", 0)
    logdir: str | None = _help("run folder (default runs/<env>-<algo>-<time>)")
    resume: str | None = _help("continue the run saved in this checkpoint")
    overwrite: bool = _help("replace the run already in --logdir (its files are deleted)", False)
    trust: bool = _help(
        "with --resume: also read a checkpoint that holds code (a user-defined policy, or the "
        "pickle format of neuroes 0.1); only for files from a source you trust",
        False,
    )
    policy: str | Callable[[Space, Space], nn.Module] | None = _help(
        "policy network: linear, mlp or gru (from Python also a function of the observation and "
        "action spaces that returns any nn.Module mapping observations to actions)",
        choices=tuple(POLICIES),
    )
    hidden: tuple[int, ...] | None = _help("hidden layer sizes of the mlp policy", nargs="+")
    normalize: bool | None = _help("normalize observations with running statistics")
    descriptor: str | Callable[[gym.Env], np.ndarray] | None = _help(
        "behavior descriptor: auto (the environment family's final position), none, or "
        "module:function of the finished environment returning a 1-D array (from Python also "
        "the function itself)",
        "auto",
    )
    eval_episodes: int = _help("episodes of the mean policy's evaluation every generation", 10)
    confirm_episodes: int = _help("episodes confirming that the target return is reached", 100)
    target_return: float | None = _help(
        "stop once the mean policy reaches this return (default: the env's reward_threshold)"
    )
    checkpoint_every: int = _help("write checkpoint.pt every this many generations", 10)
    scatter_every: int = _help("plot the population's final positions every this many gens", 10)
    device: str = _help("device of the policy forward: cpu or cuda", "cpu")
    workers: int = _help(
        "evaluate in this many local processes (1: in this process); with --ray, at most this "
        "many actors (1: one per cluster CPU, following the cluster as nodes join and leave)",
        1,
    )
    ray: str | None = _help('evaluate on Ray actors: "auto" or a cluster address (extra [ray])')
    shard_timeout: float | None = _help(
        "seconds a worker may take on a shard before the shard goes to another worker and the "
        "worker is replaced; three misses stop the run (default: 10x the shard's expected time "
        "from recent shards, at least 10 s)"
    )
    threads: int | None = _help(
        "threads of each evaluator (in this process, or in each worker), each playing a shard "
        "of the population (default: every core in this process for MuJoCo, where the simulator "
        "releases the GIL; one elsewhere); results do not depend on it"
    )
    progress: bool = _help("show a progress bar", True)
    wandb: str | None = _help(
        "also log the scalars and the config to this Weights & Biases project (extra [wandb])"
    )

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (``config.json``, checkpoints): a function becomes its
        ``module:qualified name``."""
        return {
            key: f"{value.__module__}:{value.__qualname__}" if callable(value) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """A config saved with :meth:`to_dict`. Older, flat configs kept every
        algorithm's options beside the run's fields; those of its algorithm move to
        ``options`` and the others are dropped."""
        names = {item.name for item in dataclasses.fields(cls)}
        config = cls(**{key: value for key, value in data.items() if key in names})
        flat = {key: data[key] for key in option_names(config.algo) if key in data}
        return dataclasses.replace(config, options=flat | dict(config.options))

    def updated(self, **settings: Any) -> Config:
        """A copy with ``settings`` applied: fields by name, anything else as an option of the
        algorithm (checked by :meth:`resolved`)."""
        names = {item.name for item in dataclasses.fields(self)}
        fields = {key: value for key, value in settings.items() if key in names}
        options = {key: value for key, value in settings.items() if key not in names}
        return dataclasses.replace(self, **fields, options=self.options | options)

    def resolved(self) -> Config:
        """A copy with the environment's defaults filled in and the algorithm's options
        complete; ValueError on a bad value or an option of another algorithm."""
        defaults = defaults_for(self.env_id, self.algo)
        filled = {
            name: value
            for name, value in defaults.items()
            if hasattr(self, name) and getattr(self, name) is None
        }
        presets = {key: value for key, value in defaults.items() if key in option_names(self.algo)}
        options_of(self.algo, self.options)  # an option of another algorithm is an error
        options = dataclasses.asdict(options_of(self.algo, presets | self.options))
        config = dataclasses.replace(self, **filled, options=options)
        config.hidden = tuple(config.hidden)
        for name in (
            "generations",
            "episodes",
            "eval_episodes",
            "confirm_episodes",
            "checkpoint_every",
            "scatter_every",
            "workers",
        ):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)}")
        if config.threads is not None and config.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {config.threads}")
        if config.max_steps is not None and config.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {config.max_steps}")
        for name in ("time_limit", "shard_timeout"):
            value = getattr(config, name)
            if value is not None and not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if config.target_return is not None and math.isnan(config.target_return):
            raise ValueError("target_return must be a number, got nan")
        _check_device(config.device)
        descriptor_function(config.descriptor)
        return config


def descriptor_function(descriptor: str | Callable | None) -> Callable | str | None:
    """``descriptor`` as :class:`neuroes.rollout.Evaluator` takes it: "auto", None, or a
    function (a ``module:function`` name is imported); a one-line ValueError otherwise."""
    if descriptor is None or callable(descriptor) or descriptor == "auto":
        return descriptor
    if descriptor == "none":
        return None
    module, _, name = descriptor.partition(":")
    try:
        function = getattr(importlib.import_module(module), name) if name else None
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import descriptor {descriptor!r}: {error}") from None
    if not callable(function):
        raise ValueError(f"descriptor must be auto, none or module:function, got {descriptor!r}")
    return function


def _check_device(device: str) -> None:
    """ValueError unless torch can run on ``device`` here."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        why = "no CUDA device is visible" if torch.version.cuda else "this torch is a CPU build"
        raise ValueError(f"device {device!r} is not available: {why}; use --device cpu")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; accepted: cpu, cuda, cuda:N")
