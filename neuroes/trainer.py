"""The objects of one training run, built from a config or restored from a checkpoint.

:class:`Run` owns the policy, the observation normalizer, the evaluation backend (in process,
local worker processes or Ray actors: :func:`neuroes.workers.make_backend`), the algorithm and
the monitor, and knows how to evaluate the mean policy and write checkpoints. The generation loop
itself lives in :func:`neuroes.train.train`.
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
from neuroes.agents import ObservationNormalizer, make_policy, observation_dim, set_flat
from neuroes.algorithms import make_algorithm
from neuroes.algorithms.base import Population
from neuroes.config import Config
from neuroes.monitor import Monitor
from neuroes.rollout import Rollouts, make_env
from neuroes.shards import WorkerSpec
from neuroes.workers import make_backend


def stream_seed(seed: int, generation: int, stream: int) -> int:
    """An episode seed for ``generation``, independent across runs and streams."""
    return int(np.random.SeedSequence([seed, generation, stream]).generate_state(1)[0] >> 1)


TRAINING, EVALUATION, CONFIRMATION = range(3)


class Run:
    """A training run's state; ``generation`` counts completed generations."""

    def __init__(self, config: Config, run_dir: Path, payload: dict | None = None) -> None:
        self.config, self.run_dir = config, run_dir
        env = make_env(config.env_id)
        if payload is None:
            with torch.random.fork_rng():
                torch.manual_seed(config.seed)
                self.policy = make_policy(
                    config.policy,
                    env.observation_space,
                    env.action_space,
                    **({"hidden": config.hidden} if config.policy == "mlp" else {}),
                )
            dim = observation_dim(env.observation_space)
            self.normalizer = ObservationNormalizer(dim) if config.normalize else None
        else:
            self.policy, self.normalizer = payload["policy"], payload["normalizer"]
        self.target = config.target_return
        if self.target is None:
            self.target = getattr(env.spec, "reward_threshold", None) or math.inf
        self.algorithm = make_algorithm(config, self.policy, self.evaluate_vectors)
        self.generation, self.best_return, self.eval_return = 0, -math.inf, None
        self.env_steps, self.wall_time = 0, 0.0
        if payload is not None:
            self.algorithm.load_state_dict(payload["algorithm"])
            self.generation, self.best_return = payload["generation"], payload["best_return"]
            self.env_steps, self.wall_time = payload["env_steps"], payload["wall_time"]
        spec = WorkerSpec(config.env_id, self.policy, device=config.device)
        self.backend = make_backend(spec, self.normalizer, config.workers, config.ray)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
        self.monitor = Monitor(
            run_dir,
            dataclasses.asdict(config),
            self.generation,
            config.generations,
            config.progress,
        )

    @classmethod
    def resume(cls, path: str, overrides: dict, logdir: str | None, trust: bool = False) -> Run:
        """Continue the run saved in checkpoint ``path``; ``overrides`` replace config fields.

        ``trust`` also reads checkpoints that hold code (see :func:`neuroes.checkpoint.read`).
        """
        payload = checkpoint.read(path, trust)
        config = dataclasses.replace(Config(**payload["config"]), **overrides)
        return cls(config, Path(logdir) if logdir else Path(path).parent, payload)

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
                np.full(len(population.thetas), train_seed),
                eval_seed + cfg.episodes * np.arange(evals),
            ]
        )
        rollouts = self.backend.evaluate(members, seeds, cfg.episodes, cfg.max_steps)
        split = len(population.thetas)
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

    def evaluate_vectors(
        self, thetas: torch.Tensor, episodes: int, max_steps: int | None, seed: int
    ) -> Rollouts:
        """Rollouts of the vectors ``thetas`` (P, d) on the backend (the GA's elite episodes)."""
        return self.backend.evaluate(Population(thetas), seed, episodes, max_steps)

    def close(self) -> None:
        """Stop the backend's workers and flush the logs."""
        self.backend.close()
        self.monitor.close()

    def save(self, name: str) -> None:
        set_flat(self.policy, self.algorithm.mean)
        checkpoint.save(
            self.run_dir / name,
            {
                "env_id": self.config.env_id,
                "env_kwargs": {},
                "policy": self.policy,
                "normalizer": self.normalizer,
                "config": dataclasses.asdict(self.config),
                "generation": self.generation,
                "eval_return": self.eval_return,
                "best_return": self.best_return,
                "algorithm": self.algorithm.state_dict(),
                "env_steps": self.env_steps,
                "wall_time": self.wall_time,
                "saved_at": time.time(),
            },
        )
