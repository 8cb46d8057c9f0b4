"""The vectorized rollout evaluator: a population of parameter vectors on Gymnasium environments.

Every member plays ``episodes`` episodes; episode ``e`` of every member starts from
``reset(seed=seed + e)``, so all members of a generation meet the same start states (common
random numbers) and a member's result depends only on its parameters and the seed. A shard of
a population is therefore just a smaller population: member ``i`` of a batch gets exactly the
result of evaluating ``thetas[i:i+1]`` alone.

Each sub-environment plays exactly one episode and is never reset mid-evaluation, so the final
position is always read from the terminal state, whatever autoreset mode a vector environment
uses. Two kinds of population environment run the episodes:

- a vector environment for the families listed in ``NATIVE_VECTOR`` (Gymnasium's
  ``vector_entry_point`` for CartPole and PointMaze, a numpy Pendulum of this module): all
  sub-environments are stepped in one numpy call, finished ones included (stepping them costs
  nothing) and their results masked out;
- a list of ordinary environments otherwise: only members whose episodes are still running are
  stepped, because a simulator step (MuJoCo, Box2D) is the expensive part.

The policy forward for the whole population is one batched call per step
(:class:`neuroes.agents.BatchedForward`); observations are normalized with the frozen
statistics of an :class:`neuroes.agents.ObservationNormalizer`, and the statistics of the
states visited are returned so the caller can update it after the generation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

import neuroes.envs  # noqa: F401  (registers the custom environments)
from neuroes.agents import (
    BatchedForward,
    ObservationNormalizer,
    Policy,
    flatten_observations,
    observation_dim,
)
from neuroes.agents.flat import aligned_rows
from neuroes.envs import Descriptor, descriptor_for, vector_descriptor_for

EnvSource = str | Callable[[], gym.Env]


class RolloutError(RuntimeError):
    """An environment failed or produced a non-finite value during an evaluation.

    ``member`` is the failing row of the evaluated population; :meth:`shifted` renumbers it
    for a shard that starts at row ``offset`` of a larger population.
    """

    def __init__(self, member: int, episode: int, step: int, what: str) -> None:
        super().__init__(f"member {member}, episode {episode}: environment {what} at step {step}")
        self.member, self.episode, self.step, self.what = member, episode, step, what

    def __reduce__(self):
        return RolloutError, (self.member, self.episode, self.step, self.what)

    def shifted(self, offset: int) -> RolloutError:
        return RolloutError(self.member + offset, self.episode, self.step, self.what)


@dataclass
class Rollouts:
    """Per-member results of one evaluation, means over the member's episodes.

    ``behaviors`` has shape (P, k), with k = 0 when the environment has no descriptor.
    ``steps`` (P,) counts each member's environment steps over all its episodes, and
    ``observation_sum`` / ``observation_sum_sq`` (P, obs_dim, float64) sum the observations its
    policy saw, for :meth:`ObservationNormalizer.update`. Index with rows (``rollouts[2:5]``)
    and join shards with :meth:`concatenate`.
    """

    returns: np.ndarray
    lengths: np.ndarray
    behaviors: np.ndarray
    steps: np.ndarray
    observation_sum: np.ndarray
    observation_sum_sq: np.ndarray

    @property
    def env_steps(self) -> int:
        return int(self.steps.sum())

    @property
    def observation_stats(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(count, sum, sum of squares) of every observation seen, in float64."""
        return (
            float(self.steps.sum()),
            self.observation_sum.sum(0),
            self.observation_sum_sq.sum(0),
        )

    def __len__(self) -> int:
        return len(self.returns)

    def __getitem__(self, rows) -> Rollouts:
        return Rollouts(*(getattr(self, f.name)[rows] for f in fields(self)))

    @classmethod
    def of(cls, fitness, behaviors=None) -> Rollouts:
        """Results of a black-box evaluation: one fitness per member (array-like, (P,)) and
        optionally behaviors (P, k); no episodes, steps or observations."""
        returns = np.asarray(torch.as_tensor(fitness).detach().cpu(), dtype=np.float64)
        if returns.ndim != 1:
            raise ValueError(f"fitness must have one value per member, got shape {returns.shape}")
        n = len(returns)
        if behaviors is None:
            behaviors = np.zeros((n, 0))
        behaviors = np.asarray(torch.as_tensor(behaviors).detach().cpu(), dtype=np.float64)
        behaviors = behaviors.reshape(n, -1) if behaviors.ndim == 1 else behaviors
        if behaviors.ndim != 2 or len(behaviors) != n:
            raise ValueError(
                f"behaviors must be ({n}, k) for {n} fitness values, got shape {behaviors.shape}"
            )
        empty = np.zeros((n, 0))
        return cls(returns, np.zeros(n), behaviors, np.zeros(n, dtype=np.int64), empty, empty)

    @staticmethod
    def concatenate(parts: Sequence[Rollouts]) -> Rollouts:
        return Rollouts(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Rollouts))
        )


def make_env(env: EnvSource, env_kwargs: dict | None = None, **make_kwargs) -> gym.Env:
    """One environment from an id or a factory; an unknown id is a one-line ValueError."""
    if callable(env):
        return env()
    try:
        return gym.make(env, **(env_kwargs or {}), **make_kwargs)
    except gym.error.Error as error:
        raise ValueError(f"unknown environment {env!r}: {error}") from None


def _family(env_id: str) -> str:
    return env_id.split("/")[-1].split("-v")[0]


class _EnvList:
    """Ordinary environments, one per running episode; only running ones are stepped."""

    def __init__(self, env: EnvSource, env_kwargs: dict | None, descriptor: Descriptor | None):
        self.source, self.env_kwargs, self.descriptor = env, env_kwargs, descriptor
        first = make_env(env, env_kwargs, disable_env_checker=True)
        self.envs = [first]
        self.observation_space, self.action_space = first.observation_space, first.action_space

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        while len(self.envs) < len(seeds):
            self.envs.append(make_env(self.source, self.env_kwargs, disable_env_checker=True))
        self.active_envs = self.envs[: len(seeds)]
        return np.stack(
            [env.reset(seed=int(s))[0] for env, s in zip(self.active_envs, seeds, strict=True)]
        )

    def step(self, actions: np.ndarray, running: np.ndarray, observations: np.ndarray):
        n = len(self.active_envs)
        observations = observations.copy()
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for j in np.flatnonzero(running):
            try:
                obs, rewards[j], terminated[j], truncated[j], _ = self.active_envs[j].step(
                    actions[j]
                )
            except Exception as error:
                raise _EnvFailure(j, f"raised {type(error).__name__}: {error}") from error
            observations[j] = obs
        return observations, rewards, terminated, truncated

    def positions(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self.descriptor(self.active_envs[j]) for j in indices])


def _starts(single: gym.Env, seeds: np.ndarray) -> np.ndarray:
    """The start states (n, k) that ``single.reset(seed=s)`` draws, one row per seed; each
    distinct seed is reset once."""
    drawn = {}
    for s in np.unique(seeds):
        single.reset(seed=int(s))
        drawn[s] = np.array(single.state, dtype=np.float64)
    return np.stack([drawn[s] for s in seeds])


class _CartPoleVector:
    """Gymnasium's native CartPole vector environment, with one seed per sub-environment.

    The native ``reset`` draws every sub-environment's start from one generator, so the start
    of sub-environment j would depend on j and on the population size. Each start is instead
    the state ``CartPoleEnv.reset(seed=s)`` draws, written into the vector's state.
    """

    def __init__(self, env_id: str, env_kwargs: dict | None):
        self.env_id, self.env_kwargs = env_id, env_kwargs or {}
        self.single = make_env(env_id, env_kwargs).unwrapped
        self.observation_space, self.action_space = (
            self.single.observation_space,
            self.single.action_space,
        )
        self.vector = None
        self.position_of = vector_descriptor_for(env_id)

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        if self.vector is None or self.vector.num_envs != len(seeds):
            self.vector = gym.make_vec(
                self.env_id, len(seeds), vectorization_mode="vector_entry_point", **self.env_kwargs
            )
        unwrapped = self.vector.unwrapped
        unwrapped.reset(seed=0)
        unwrapped.state = _starts(self.single, seeds).T
        return unwrapped.state.T.astype(np.float32)

    def step(self, actions: np.ndarray, running: np.ndarray, observations: np.ndarray):
        observations, rewards, terminated, truncated, _ = self.vector.unwrapped.step(actions)
        return observations, rewards.astype(np.float64), terminated, truncated

    def positions(self, indices: np.ndarray) -> np.ndarray:
        return self.position_of(self.vector.unwrapped)[indices]


class _SeededVector(_CartPoleVector):
    """A native vector environment whose ``reset`` takes one seed per sub-environment."""

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        if self.vector is None or self.vector.num_envs != len(seeds):
            self.vector = gym.make_vec(
                self.env_id, len(seeds), vectorization_mode="vector_entry_point", **self.env_kwargs
            )
        return self.vector.unwrapped.reset(seed=[int(s) for s in seeds])[0]


def _square(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` as numpy computes it for one scalar (libm ``pow``), which can differ in the
    last bit from the ``x * x`` that ``array ** 2`` computes."""
    return np.power(x, np.full_like(x, 2.0))


class _PendulumVector:
    """Gymnasium's Pendulum, every sub-environment stepped in one numpy call.

    Gymnasium has no vector Pendulum; this one repeats ``PendulumEnv.step`` elementwise, in
    the same dtypes (the torque stays float32, as in the single environment), and truncates at
    the spec's ``max_episode_steps``. Starts are those ``PendulumEnv.reset(seed=s)`` draws.
    Each sub-environment matches the single environment to the last bit of numpy's array
    ``sin``/``cos``: bitwise where they equal the scalar libm calls, within a relative 1e-9 of
    returns on CPUs where they take other SIMD kernels (AVX-512). On one machine a member's
    result is bitwise the same alone or in any batch.
    """

    def __init__(self, env_id: str, env_kwargs: dict | None):
        env = make_env(env_id, env_kwargs)
        self.single = env.unwrapped
        self.limit = env.spec.max_episode_steps if env.spec else None
        self.observation_space, self.action_space = env.observation_space, env.action_space

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self.state = _starts(self.single, seeds)
        self.steps = 0
        return self._observe()

    def step(self, actions: np.ndarray, running: np.ndarray, observations: np.ndarray):
        env, (th, thdot) = self.single, self.state.T
        u = np.clip(actions[:, 0], -env.max_torque, env.max_torque)
        angle = ((th + np.pi) % (2 * np.pi)) - np.pi
        costs = _square(angle) + 0.1 * _square(thdot) + 0.001 * _square(u)
        change = 3 * env.g / (2 * env.l) * np.sin(th) + 3.0 / (env.m * env.l**2) * u
        thdot = np.clip(thdot + change * env.dt, -env.max_speed, env.max_speed)
        self.state = np.stack([th + thdot * env.dt, thdot], axis=1)
        self.steps += 1
        truncated = np.full(len(th), self.limit is not None and self.steps >= self.limit)
        return self._observe(), -costs, np.zeros(len(th), dtype=bool), truncated

    def _observe(self) -> np.ndarray:
        th, thdot = self.state.T
        return np.stack([np.cos(th), np.sin(th), thdot], axis=1).astype(np.float32)


NATIVE_VECTOR = {
    "CartPole": _CartPoleVector,
    "Pendulum": _PendulumVector,
    "PointMaze": _SeededVector,
}


class _EnvFailure(Exception):
    def __init__(self, index: int, what: str):
        super().__init__(what)
        self.index, self.what = index, what


class Evaluator:
    """Evaluates populations of one policy architecture on one environment.

    Args:
        env: a registered environment id (``"HalfCheetah-v5"``) or a factory returning an env.
        policy: the policy module whose flat parameter vectors are evaluated.
        env_kwargs: keyword arguments for ``gymnasium.make``.
        descriptor: ``"auto"`` for the environment family's final-position descriptor (none
            when the family has no known one), ``None`` for no behaviors, or a function of a
            single environment returning its behavior vector.
        normalizer: observation normalizer applied (frozen) before the policy.
        device: where parameters and the batched forward live; environments stay on the CPU.

    The environments are built once and reused by every call to :meth:`evaluate`.
    """

    def __init__(
        self,
        env: EnvSource,
        policy: Policy,
        env_kwargs: dict | None = None,
        descriptor: Descriptor | str | None = "auto",
        normalizer: ObservationNormalizer | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        env_id = env if isinstance(env, str) else None
        if descriptor == "auto":
            descriptor = descriptor_for(env_id) if env_id else None
            native = NATIVE_VECTOR.get(_family(env_id)) if env_id else None
        elif descriptor is not None and not callable(descriptor):
            raise ValueError(f"descriptor must be 'auto', None or a function, got {descriptor!r}")
        else:
            native = None
        self.population = (
            native(env_id, env_kwargs) if native else _EnvList(env, env_kwargs, descriptor)
        )
        self.has_behaviors = descriptor is not None
        self.policy = policy
        self.normalizer = normalizer
        self.device = torch.device(device)
        self.forward = BatchedForward(policy.to(self.device))

    def evaluate(
        self,
        thetas: Tensor,
        episodes: int = 1,
        max_steps: int | None = None,
        seed: int | Sequence[int] = 0,
    ) -> Rollouts:
        """Play ``episodes`` episodes of every member of ``thetas`` (P, d).

        Episode ``e`` of member ``i`` starts from ``reset(seed=seed + e)``, or from
        ``reset(seed=seed[i] + e)`` when ``seed`` gives one base seed per member.
        """
        if thetas.dim() != 2:
            raise ValueError(
                f"thetas must have shape (population, parameters), got {tuple(thetas.shape)}"
            )
        if episodes < 1:
            raise ValueError(f"episodes must be positive, got {episodes}")
        p, n = len(thetas), len(thetas) * episodes
        base = np.broadcast_to(np.asarray(seed, dtype=np.int64), (p,))
        seeds = (base[:, None] + np.arange(episodes)).reshape(n)
        # One row per episode, so that an episode's actions do not depend on how many episodes
        # run beside it (matrix kernels round differently for different row counts).
        thetas = thetas.to(self.device, torch.float32).repeat_interleave(episodes, 0)
        thetas = self.forward.prepare(thetas)
        obs = self.population.reset(seeds)
        space = self.population.observation_space
        dim = observation_dim(space)
        inputs = aligned_rows(torch.zeros(n, 1, dim, device=self.device))
        state = self.policy.initial_state(n)
        state = None if state is None else state.to(self.device).unsqueeze(1)
        head, action_shape = self.policy.head, self.population.action_space.shape

        running = np.ones(n, dtype=bool)
        returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        total, total_sq = np.zeros((n, dim)), np.zeros((n, dim))
        behaviors = None
        step = 0
        while running.any():
            flat = flatten_observations(space, obs)
            seen = np.where(running[:, None], flat, 0.0)
            total += seen
            total_sq += seen * seen
            observed = torch.from_numpy(flat).to(self.device)
            if self.normalizer is not None:
                observed = self.normalizer(observed)
            inputs[:, 0].copy_(observed)
            with torch.no_grad():
                outputs, state = self.forward(thetas, inputs, state)
                actions = head.to_numpy(head(outputs)).reshape(n, *action_shape)
            try:
                obs, rewards, terminated, truncated = self.population.step(actions, running, obs)
            except _EnvFailure as failure:
                raise self._error(failure.index, episodes, step + 1, failure.what) from failure
            step += 1
            if not (np.isfinite(rewards).all() and np.isfinite(obs).all()):
                self._check_finite(obs, rewards, running, episodes, step)
            returns += np.where(running, rewards, 0.0)
            lengths += running
            cut = max_steps is not None and step >= max_steps
            ended = running & (terminated | truncated | cut)
            if self.has_behaviors and ended.any():
                where = np.flatnonzero(ended)
                positions = self.population.positions(where)
                if behaviors is None:
                    behaviors = np.zeros((n, positions.shape[1]))
                behaviors[where] = positions
            running &= ~ended

        behaviors = np.zeros((n, 0)) if behaviors is None else behaviors
        return Rollouts(
            returns=returns.reshape(p, episodes).mean(1),
            lengths=lengths.reshape(p, episodes).mean(1),
            behaviors=behaviors.reshape(p, episodes, -1).mean(1),
            steps=lengths.reshape(p, episodes).sum(1),
            observation_sum=total.reshape(p, episodes, dim).sum(1),
            observation_sum_sq=total_sq.reshape(p, episodes, dim).sum(1),
        )

    def _check_finite(self, obs, rewards, running, episodes, step) -> None:
        for values, what in ((rewards, "reward"), (obs.reshape(len(obs), -1), "observation")):
            bad = running & ~np.isfinite(values.reshape(len(values), -1)).all(1)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise self._error(j, episodes, step, f"returned a non-finite {what}")

    @staticmethod
    def _error(index: int, episodes: int, step: int, what: str) -> RolloutError:
        member, episode = divmod(index, episodes)
        return RolloutError(member, episode, step, what)


def evaluate(
    env: EnvSource,
    policy: Policy,
    thetas: Tensor,
    episodes: int = 1,
    max_steps: int | None = None,
    seed: int | Sequence[int] = 0,
    **evaluator_kwargs,
) -> Rollouts:
    """Evaluate ``thetas`` (P, d) once; build an :class:`Evaluator` to evaluate repeatedly."""
    evaluator = Evaluator(env, policy, **evaluator_kwargs)
    return evaluator.evaluate(thetas, episodes, max_steps, seed)
