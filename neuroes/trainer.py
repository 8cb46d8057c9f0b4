"""One training run: its objects, built fresh from a config or restored from a checkpoint, and
its generation step.

:class:`Run` owns the policy, the observation normalizer, the evaluation backend (in process,
local worker processes or Ray actors: :func:`neuroes.workers.make_backend`), the algorithm
(any entry of :data:`neuroes.algorithms.ALGORITHMS`) and the monitor. :meth:`Run.step` plays one
generation; :func:`neuroes.train.train` repeats it until the run is finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from neuroes import checkpoint
from neuroes.agents import (
    ObservationNormalizer,
    Policy,
    as_policy,
    check_batched,
    make_policy,
    observation_dim,
    set_flat,
)
from neuroes.algorithms import Setup, make_algorithm
from neuroes.config import Config, descriptor_function
from neuroes.monitor import Monitor
from neuroes.population import Population
from neuroes.rollout import Rollouts, make_env
from neuroes.shards import WorkerSpec
from neuroes.workers import make_backend


def stream_seed(seed: int, generation: int, stream: int) -> int:
    """An episode seed for ``generation``, independent across runs and streams."""
    return int(np.random.SeedSequence([seed, generation, stream]).generate_state(1)[0] >> 1)


TRAINING, EVALUATION, CONFIRMATION = range(3)


RESUMABLE = frozenset(
    {"generations", "time_limit", "target_return", "confirm_episodes", "checkpoint_every",
     "scatter_every", "workers", "ray", "shard_timeout", "threads", "device", "progress", "wandb"}
)  # fmt: skip
"""Config fields that a resumed run may change: they do not change what is computed."""


class DivergedError(RuntimeError):
    """The search distribution's parameters became non-finite."""


class Run:
    """A training run's state; ``generation`` counts completed generations.

    Build one with :meth:`fresh` or :meth:`resume`; ``state`` is a checkpoint's payload.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        policy: Policy,
        normalizer: ObservationNormalizer | None,
        state: dict | None = None,
    ) -> None:
        self.config, self.run_dir = config, run_dir
        self.policy, self.normalizer = policy, normalizer
        self.target = config.target_return
        if self.target is None:
            spec = make_env(config.env_id).spec
            self.target = getattr(spec, "reward_threshold", None) or math.inf
        setup = Setup(policy, config.popsize, config.sigma, config.seed, self.evaluate_vectors)
        self.algorithm = make_algorithm(config.algo, setup, config.options)
        self.generation, self.best_return, self.eval_return = 0, -math.inf, None
        self.env_steps, self.wall_time, self.solved = 0, 0.0, False
        self.finishing = False  # logging and keeping a generation: interrupts wait
        self.closed = False
        self.saved_generation: int | None = None  # of run_dir/checkpoint.pt, if there is one
        if state is not None:
            self.algorithm.load_state_dict(state["algorithm"])
            self.generation, self.best_return = state["generation"], state["best_return"]
            self.env_steps, self.wall_time = state["env_steps"], state["wall_time"]
            if (run_dir / "checkpoint.pt").is_file():
                self.saved_generation = checkpoint.read(run_dir / "checkpoint.pt")["generation"]
        self.last_completed = checkpoint.encode(self.payload())
        descriptor = descriptor_function(config.descriptor)
        spec = WorkerSpec(
            config.env_id, policy, device=config.device, threads=config.threads,
            descriptor=descriptor,
        )  # fmt: skip
        table = getattr(self.algorithm, "table", None)  # the noise table, shared with workers
        self.backend = make_backend(
            spec, normalizer, config.workers, config.ray, table, config.shard_timeout
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        self.monitor = Monitor(
            run_dir,
            config.to_dict(),
            self.generation,
            config.generations,
            config.progress,
            config.wandb,
        )

    @classmethod
    def fresh(cls, config: Config, run_dir: Path) -> Run:
        """A new run of a resolved ``config``: the policy initialized from ``config.seed``."""
        env = make_env(config.env_id)
        spaces = env.observation_space, env.action_space
        options = {"hidden": config.hidden} if config.policy == "mlp" else {}
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            if callable(config.policy):
                policy = check_batched(as_policy(config.policy(*spaces), *spaces))
            else:
                policy = make_policy(config.policy, *spaces, **options)
        dim = observation_dim(env.observation_space)
        normalizer = ObservationNormalizer(dim) if config.normalize else None
        return cls(config, run_dir, policy, normalizer)

    @classmethod
    def resume(
        cls, path: str, overrides: dict, logdir: str | None = None, trust: bool = False
    ) -> Run:
        """Continue the run saved in checkpoint ``path``.

        ``overrides`` may change what does not define the run (``RESUMABLE``: generations, time
        limit, target, workers, ...); a different value of anything else, an algorithm option
        included, is a ValueError listing the differences. ``trust`` also reads checkpoints
        that hold code (see :func:`neuroes.checkpoint.read`).
        """
        state = checkpoint.read(path, trust)
        saved = Config.from_dict(state["config"])
        fields = {item.name for item in dataclasses.fields(Config)}
        changed = {
            name: value
            for name, value in overrides.items()
            if _comparable(value)
            != _comparable(getattr(saved, name) if name in fields else saved.options.get(name))
        }
        fixed = sorted(name for name in changed if name not in RESUMABLE)
        if fixed:
            listed = ", ".join(
                f"{_flag(name)} {_shown(changed[name])} (saved: "
                f"{_shown(getattr(saved, name) if name in fields else saved.options.get(name))})"
                for name in fixed
            )
            raise ValueError(
                f"cannot resume {path!r} with other settings that define the run: {listed}; "
                f"start a new run instead"
            )
        config = dataclasses.replace(saved, **changed)
        config.resolved()  # checks the changed values
        generation = state["generation"]
        if generation >= config.generations:
            raise ValueError(
                f"the run in {path!r} is already at generation {generation}; pass "
                f"--generations M (M > {generation}) to continue it"
            )
        if config.time_limit is not None and state["wall_time"] >= config.time_limit:
            raise ValueError(
                f"the run in {path!r} already used its time limit ({config.time_limit:g} s); "
                f"pass a larger --time-limit to continue it"
            )
        run_dir = Path(logdir) if logdir else Path(path).parent
        return cls(config, run_dir, state["policy"], state["normalizer"], state)

    @property
    def finished(self) -> bool:
        """Solved, or out of generations or time."""
        limit = self.config.time_limit or math.inf
        return self.solved or self.generation >= self.config.generations or self.wall_time >= limit

    def step(self) -> dict[str, float]:
        """Play one generation; returns its logged scalars."""
        config, tick = self.config, time.perf_counter()
        # Ask, and evaluate the members with the mean policy riding along as extra rows.
        population = self.algorithm.ask()
        broken = population.non_finite_rows()
        if broken:
            raise DivergedError(
                f"diverged at generation {self.generation + 1}: members {_rows(broken)} have "
                f"non-finite parameters (sigma or the mean overflowed); lower --lr"
            )
        rollouts, self.eval_return = self.evaluate(population)
        scalars: dict[str, float] = {}
        # Keep the best mean policy, saved as evaluated: before this generation's update.
        if self.eval_return > self.best_return:
            self.best_return = self.eval_return
            self.save("best.pt")
        # Stop once the target is reached and confirmed on many fresh episodes.
        if self.eval_return >= self.target:
            scalars["eval/confirmed_return"] = self.confirm(population)
            self.solved = scalars["eval/confirmed_return"] >= self.target
        # Tell: update the normalizer (frozen within a generation) and the algorithm.
        if not self.solved:
            if self.normalizer is not None:
                self.normalizer.update(*rollouts.observation_stats)
            scalars |= self.algorithm.tell(population, rollouts)
            if not torch.isfinite(self.algorithm.mean).all():
                raise DivergedError(
                    f"diverged at generation {self.generation + 1}: the mean has non-finite "
                    f"entries; lower --lr"
                )
        # Log.
        self.env_steps += rollouts.env_steps
        self.generation += 1
        self.wall_time += time.perf_counter() - tick
        scalars |= (
            rollout_scalars(rollouts)
            | {
                "eval/return": self.eval_return,
                "time/env_steps": self.env_steps,
                "time/steps_per_second": rollouts.env_steps / (time.perf_counter() - tick),
                "time/wall": self.wall_time,
            }
            | self.backend.scalars()
        )
        if rollouts.behaviors.shape[1]:
            scalars |= behavior_scalars(rollouts.behaviors)
            if self.generation % config.scatter_every == 0 or self.solved:
                archive = getattr(self.algorithm, "archive", None)  # see the Algorithm protocol
                archive = None if archive is None else np.asarray(archive)
                self.monitor.scatter(self.generation, rollouts.behaviors, rollouts.returns, archive)
        # Log, and keep this generation in memory for an interrupt (on disk every so often):
        # together, so an interrupt waits for both (``finishing``) and no log outruns the keep.
        self.finishing = True
        try:
            self.monitor.log(self.generation, scalars)
            self.last_completed = checkpoint.encode(self.payload())
            if self.generation % config.checkpoint_every == 0:
                self.save_last_completed()
        finally:
            self.finishing = False
        return scalars

    def evaluate(self, population: Population) -> tuple[Rollouts, float]:
        """The population's rollouts and the mean policy's evaluation return, evaluated together.

        The mean policy (no noise) plays ``eval_episodes`` episodes with fresh seeds as extra
        rows of the same evaluation; rows do not influence each other.
        """
        cfg, evals = self.config, self.config.eval_episodes
        train_seed = stream_seed(cfg.seed, self.generation, TRAINING)
        eval_seed = stream_seed(cfg.seed, self.generation, EVALUATION)
        members = population.with_mean(self.algorithm.mean, evals)  # sign 0 when seeded
        seeds = np.concatenate(
            [
                np.full(len(population), train_seed),
                eval_seed + cfg.episodes * np.arange(evals),
            ]
        )
        rollouts = self.backend.evaluate(members, seeds, cfg.episodes, cfg.max_steps)
        split = len(population)
        return rollouts[:split], float(rollouts.returns[split:].mean())

    def confirm(self, population: Population) -> float:
        """The mean policy's return over ``confirm_episodes`` episodes with fresh seeds.

        Episode ``e`` is a row of its own (seed ``seed + e``), in ``population``'s form, so
        that the episodes are sharded like members.
        """
        seed = stream_seed(self.config.seed, self.generation, CONFIRMATION)
        episodes = self.config.confirm_episodes
        rows = population[:0].with_mean(self.algorithm.mean, episodes)
        seeds = seed + np.arange(episodes)
        return float(self.backend.evaluate(rows, seeds, 1, self.config.max_steps).returns.mean())

    def evaluate_vectors(self, thetas: torch.Tensor, episodes: int, seed: int) -> Rollouts:
        """Rollouts of the vectors ``thetas`` (P, d) on the backend, cut at ``max_steps``
        (for algorithms that play extra episodes, such as the GA's elite candidates); their
        steps count among the run's."""
        rollouts = self.backend.evaluate(Population(thetas), seed, episodes, self.config.max_steps)
        self.env_steps += rollouts.env_steps
        return rollouts

    def close(self) -> None:
        """Stop the backend's workers and flush the logs (once; later calls do nothing)."""
        if not self.closed:
            self.closed = True
            try:
                self.backend.close()
            finally:
                self.monitor.close()

    def payload(self) -> dict:
        """The run's state as a checkpoint holds it, the mean policy in the policy module."""
        set_flat(self.policy, self.algorithm.mean)
        return {
            "env_id": self.config.env_id,
            "env_kwargs": {},
            "policy": self.policy,
            "normalizer": self.normalizer,
            "config": self.config.to_dict(),
            "generation": self.generation,
            "eval_return": self.eval_return,
            "best_return": self.best_return,
            "algorithm": self.algorithm.state_dict(),
            "env_steps": self.env_steps,
            "wall_time": self.wall_time,
            "saved_at": time.time(),
        }

    def save(self, name: str) -> None:
        """Write the run's current state to ``run_dir / name``."""
        checkpoint.save(self.run_dir / name, self.payload())

    def save_last_completed(self) -> None:
        """Write the last completed generation to ``checkpoint.pt``, unless it is there."""
        if self.saved_generation != self.last_completed["generation"]:
            checkpoint.write(self.run_dir / "checkpoint.pt", self.last_completed)
            self.saved_generation = self.last_completed["generation"]

    def on_disk(self) -> str:
        """What ``checkpoint.pt`` holds, in words."""
        if self.saved_generation is None:
            return "no checkpoint was written"
        return f"{self.run_dir / 'checkpoint.pt'} holds generation {self.saved_generation}"


def rollout_scalars(rollouts: Rollouts) -> dict[str, float]:
    """The population's returns and episode lengths."""
    returns = rollouts.returns
    return {
        "rollout/return_mean": returns.mean(),
        "rollout/return_max": returns.max(),
        "rollout/return_min": returns.min(),
        "rollout/return_std": returns.std(),
        "rollout/length_mean": rollouts.lengths.mean(),
    }


def behavior_scalars(behaviors: np.ndarray) -> dict[str, float]:
    """Spread of the population's final positions: total variance, a Gaussian entropy, and the
    median distance from the origin (the start, for positions)."""
    covariance = np.atleast_2d(np.cov(behaviors, rowvar=False))
    _, logdet = np.linalg.slogdet(covariance + 1e-9 * np.eye(len(covariance)))
    k = len(covariance)
    return {
        "behavior/variance": float(np.trace(covariance)),
        "behavior/entropy": float(0.5 * (k * np.log(2 * np.pi * np.e) + logdet)),
        "behavior/distance_median": float(np.median(np.linalg.norm(behaviors, axis=1))),
    }


def _rows(rows: list[int]) -> str:
    """Row indices for a message: the first few, and how many more."""
    shown = ", ".join(map(str, rows[:5]))
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _comparable(value):
    """Lists (from the command line) and tuples (from a config) compare equal."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _flag(name: str) -> str:
    return "the environment" if name == "env_id" else "--" + name.replace("_", "-")
