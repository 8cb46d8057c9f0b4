"""The objects of one training run, built from a config or restored from a checkpoint.

:class:`Run` owns the policy, the observation normalizer, the evaluator, the algorithm and the
monitor, and knows how to evaluate the mean policy and write checkpoints. The generation loop
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
from neuroes.agents import ObservationNormalizer, get_flat, make_policy, observation_dim, set_flat
from neuroes.algorithms import make_algorithm
from neuroes.algorithms.base import Population
from neuroes.config import Config
from neuroes.monitor import Monitor
from neuroes.rollout import Evaluator, Rollouts, make_env


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
        self.evaluator = Evaluator(
            config.env_id, self.policy, normalizer=self.normalizer, device=config.device
        )
        self.algorithm = make_algorithm(config, get_flat(self.policy))
        self.generation, self.best_return, self.eval_return = 0, -math.inf, None
        self.env_steps, self.wall_time = 0, 0.0
        if payload is not None:
            self.algorithm.load_state_dict(payload["algorithm"])
            self.generation, self.best_return = payload["generation"], payload["best_return"]
            self.env_steps, self.wall_time = payload["env_steps"], payload["wall_time"]
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
    def resume(cls, path: str, overrides: dict, logdir: str | None) -> Run:
        """Continue the run saved in checkpoint ``path``; ``overrides`` replace config fields."""
        payload = checkpoint.read(path)
        config = dataclasses.replace(Config(**payload["config"]), **overrides)
        return cls(config, Path(logdir) if logdir else Path(path).parent, payload)

    def evaluate(self, population: Population) -> tuple[Rollouts, float]:
        """The population's rollouts and the mean policy's evaluation return, in one batch.

        The mean policy (no noise) plays ``eval_episodes`` episodes with fresh seeds as extra
        rows of the same evaluation; rows do not influence each other.
        """
        cfg, evals = self.config, self.config.eval_episodes
        train_seed = stream_seed(cfg.seed, self.generation, TRAINING)
        eval_seed = stream_seed(cfg.seed, self.generation, EVALUATION)
        thetas = torch.cat([population.thetas, self.algorithm.mean.expand(evals, -1)])
        seeds = np.concatenate(
            [
                np.full(len(population.thetas), train_seed),
                eval_seed + cfg.episodes * np.arange(evals),
            ]
        )
        rollouts = self.evaluator.evaluate(thetas, cfg.episodes, cfg.max_steps, seeds)
        split = len(population.thetas)
        return rollouts[:split], float(rollouts.returns[split:].mean())

    def confirm(self) -> float:
        """The mean policy's return over ``confirm_episodes`` episodes with fresh seeds."""
        seed = stream_seed(self.config.seed, self.generation, CONFIRMATION)
        mean = self.algorithm.mean.unsqueeze(0)
        episodes = self.config.confirm_episodes
        return float(
            self.evaluator.evaluate(mean, episodes, self.config.max_steps, seed).returns[0]
        )

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
