"""The training configuration: one dataclass, one line of help per field.

Fields left as ``None`` take the environment's defaults from :mod:`neuroes.presets`;
:meth:`Config.resolved` fills them in and checks every value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from neuroes.presets import defaults_for

ALGORITHMS = ("nes", "maxvar", "maxent", "ga", "enas")
POLICY_KINDS = ("linear", "mlp", "gru")
TOPOLOGIES = ("edge", "partition")


def _help(text: str, default=None, **kwargs):
    return field(default=default, metadata={"help": text, **kwargs})


@dataclass
class Config:
    env_id: str = _help("Gymnasium environment id, e.g. CartPole-v1")
    algo: str = _help(
        "nes (expected fitness), maxvar or maxent (evolvability), ga (genetic algorithm) or "
        "enas (ES with topology search)",
        "nes",
        choices=ALGORITHMS,
    )
    popsize: int | None = _help("population size per generation (even: sampling is mirrored)")
    sigma: float | None = _help("initial standard deviation of the search distribution")
    lr: float | None = _help("Adam learning rate of the distribution's mean")
    generations: int | None = _help("number of generations to run")
    time_limit: float | None = _help("stop after this many seconds of training (wall clock)")
    episodes: int | None = _help("episodes per member and generation (their returns are averaged)")
    max_steps: int | None = _help("cut every episode after this many steps (none: the env's limit)")
    seed: int = _help("seed of the run: noise, episodes and policy initialization", 0)
    logdir: str | None = _help("run folder (default runs/<env>-<algo>-<time>)")
    resume: str | None = _help("continue the run saved in this checkpoint")
    trust: bool = _help(
        "with --resume: also read a checkpoint that holds code (a user-defined policy, or the "
        "pickle format of neuroes 0.1); only for files from a source you trust",
        False,
    )
    policy: str | None = _help("policy network: linear, mlp or gru", choices=POLICY_KINDS)
    hidden: tuple[int, ...] | None = _help("hidden layer sizes of the mlp policy", nargs="+")
    learn_sigma: bool = _help("learn sigma (log-parametrized) along with the mean", False)
    sigma_lr: float = _help("learning rate of log-sigma when it is learned", 0.01)
    weight_decay: float = _help(
        "L2 coefficient on the mean, as OpenAI-ES's l2coeff: the mean's gradient is "
        "(mean(ranks * eps) - c * mu) / sigma",
        0.0,
    )
    fitness_weight: float = _help(
        "weight of expected fitness added to an evolvability objective", 0.0
    )
    bandwidth: float = _help("MaxEnt kernel bandwidth, in z-scored behavior units", 1.0)
    parents: int = _help("ga: truncation size, the number of best members that breed", 10)
    elite_candidates: int = _help("ga: best members re-evaluated to choose the elite", 10)
    elite_episodes: int = _help("ga: extra episodes of each elite candidate", 30)
    crossover: float = _help("ga: probability that a child is a crossover of two parents", 0.0)
    topology: str = _help(
        "enas: edge (keep a fraction of each layer's edges) or partition (shared weights)",
        "edge",
        choices=TOPOLOGIES,
    )
    edge_fraction: tuple[float, ...] | None = _help(
        "enas edge search: fraction of edges kept, one for every layer or one per layer",
        nargs="+",
    )
    partitions: int = _help("enas partition search: shared weights per layer", 8)
    controller_lr: float | None = _help("enas: Adam learning rate of the topology controller")
    normalize: bool | None = _help("normalize observations with running statistics")
    eval_episodes: int = _help("episodes of the mean policy's evaluation every generation", 10)
    confirm_episodes: int = _help("episodes confirming that the target return is reached", 100)
    target_return: float | None = _help(
        "stop once the mean policy reaches this return (default: the env's reward_threshold)"
    )
    checkpoint_every: int = _help("write checkpoint.pt every this many generations", 10)
    scatter_every: int = _help("plot the population's final positions every this many gens", 10)
    device: str = _help("device of the policy forward: cpu or cuda", "cpu")
    workers: int = _help(
        "evaluate in this many local processes (1: in this process); with --ray, this many "
        "actors (1: one per cluster CPU)",
        1,
    )
    ray: str | None = _help('evaluate on Ray actors: "auto" or a cluster address (extra [ray])')
    progress: bool = _help("show a progress bar", True)

    def resolved(self) -> Config:
        """A copy with the environment's defaults filled in; ValueError on a bad value."""
        defaults = defaults_for(self.env_id, self.algo)
        filled = {name: defaults[name] for name in defaults if getattr(self, name) is None}
        config = dataclasses.replace(self, **filled)
        config.hidden = tuple(config.hidden)
        fraction = config.edge_fraction
        config.edge_fraction = (fraction,) if isinstance(fraction, int | float) else tuple(fraction)
        for name in (
            "popsize",
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
        for name in ("sigma", "lr", "bandwidth", "controller_lr"):
            if not getattr(config, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
        if config.popsize % 2 and config.algo != "ga":
            raise ValueError(f"popsize must be even for mirrored sampling, got {config.popsize}")
        if config.max_steps is not None and config.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {config.max_steps}")
        if config.time_limit is not None and not config.time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {config.time_limit}")
        if config.algo not in ALGORITHMS:
            raise ValueError(f"unknown algo {config.algo!r}; accepted: {', '.join(ALGORITHMS)}")
        return config
