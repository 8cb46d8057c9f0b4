"""The vectorized rollout evaluator: a population of parameter vectors on Gymnasium environments.

Every member plays ``episodes`` episodes; episode ``e`` of every member starts from
``reset(seed=seed + e)``, so all members of a generation meet the same start states (common
random numbers) and a member's result depends only on its parameters and the seed. A shard of
a population is therefore just a smaller population: member ``i`` of a batch gets exactly the
result of evaluating ``thetas[i:i+1]`` alone.

Each sub-environment plays exactly one episode and is never reset mid-evaluation, so the final
position is always read from the terminal state. The episodes run on a batch of environments
(:func:`neuroes.envs.vector.make_batch`): one numpy call per step for CartPole, Pendulum and
PointMaze, one ``mujoco.mj_step`` per member for the v5 MuJoCo family, a list of ordinary
environments otherwise. With ``threads`` > 1 the population is cut into that many shards, each
played on its own thread with its own batch.

The policy forward for the whole population is one batched call per step
(:class:`neuroes.agents.BatchedForward`); observations are normalized with the frozen
statistics of an :class:`neuroes.agents.ObservationNormalizer`, and the statistics of the
states visited are returned so the caller can update it after the generation.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, fields

import numpy as np
import torch
from gymnasium.spaces import Box
from numpy.typing import ArrayLike
from torch import Tensor

import neuroes.envs  # noqa: F401  (registers the custom environments)
from neuroes.agents import (
    BatchedForward,
    ObservationNormalizer,
    Policy,
    flatten_observations,
    observation_dim,
)
from neuroes.agents.flat import aligned_empty, aligned_rows
from neuroes.envs import Descriptor, descriptor_for
from neuroes.envs.vector import BatchEnv, EnvFailure, EnvSource, make_batch, make_env
from neuroes.population import Population

__all__ = [
    "EnvSource",
    "Evaluator",
    "RolloutError",
    "Rollouts",
    "default_threads",
    "evaluate",
    "make_env",
]

CHUNK_BYTES = 2**28
"""Parameter bytes a shard builds and plays at a time: populations of large policies play in
chunks of members, which bounds the evaluator's memory."""


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
    def of(cls, fitness: ArrayLike, behaviors: ArrayLike | None = None) -> Rollouts:
        """Results of a black-box evaluation: one fitness per member (array-like, (P,)) and
        optionally behaviors (P, k); no episodes, steps or observations."""
        returns = _float64(fitness)
        if returns.ndim != 1:
            raise ValueError(f"fitness must have one value per member, got shape {returns.shape}")
        n = len(returns)
        if behaviors is None:
            behaviors = np.zeros((n, 0))
        behaviors = _float64(behaviors)
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


def _float64(values: ArrayLike) -> np.ndarray:
    """Tensors, arrays and lists as float64 arrays, with no precision lost on the way."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def default_threads() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
        threads: the population is cut into this many shards of consecutive members, each
            played on its own thread with its own environments. Default: every core this
            process may use where the environment's step releases the GIL (MuJoCo), else 1.
            Results do not depend on it.

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
        threads: int | None = None,
    ) -> None:
        if descriptor == "auto":
            descriptor = descriptor_for(env) if isinstance(env, str) else None
        elif descriptor is not None and not callable(descriptor):
            raise ValueError(f"descriptor must be 'auto', None or a function, got {descriptor!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        self.make_batch = functools.partial(make_batch, env, env_kwargs, descriptor)
        self.batches = [self.make_batch()]
        space, actions = self.batches[0].observation_space, self.batches[0].action_space
        if (policy.obs_dim, policy.head.shape) != (observation_dim(space), actions.shape):
            raise ValueError(
                f"the policy maps {policy.obs_dim} observations to actions of shape "
                f"{policy.head.shape}; the environment has {observation_dim(space)} and "
                f"{actions.shape}"
            )
        if threads is None:
            threads = default_threads() if self.batches[0].releases_gil else 1
        self.threads = threads
        self.executor: ThreadPoolExecutor | None = None
        self.cancel = threading.Event()  # set: the shards on threads stop
        self.has_behaviors = descriptor is not None
        self.policy = policy
        self.normalizer = normalizer
        self.device = torch.device(device)
        self.forward = BatchedForward(policy.to(self.device))
        self.chunk_bytes = CHUNK_BYTES
        self.buffers = threading.local()

    def evaluate(
        self,
        thetas: Tensor | Population,
        episodes: int = 1,
        max_steps: int | None = None,
        seed: int | Sequence[int] = 0,
    ) -> Rollouts:
        """Play ``episodes`` episodes of every member of ``thetas`` (P, d), or of a
        :class:`Population`, whose seeded or built members are made a chunk at a time.

        Episode ``e`` of member ``i`` starts from ``reset(seed=seed + e)``, or from
        ``reset(seed=seed[i] + e)`` when ``seed`` gives one base seed per member.
        """
        if isinstance(thetas, Tensor):
            if thetas.dim() != 2:
                raise ValueError(
                    f"thetas must have shape (population, parameters), got {tuple(thetas.shape)}"
                )
            thetas = Population(thetas)
        if episodes < 1:
            raise ValueError(f"episodes must be positive, got {episodes}")
        p = len(thetas)
        seeds = np.broadcast_to(np.asarray(seed, dtype=np.int64), (p,))
        shards = min(self.threads, p)
        if shards <= 1:
            return self._shard(self.batches[0], thetas, episodes, max_steps, seeds)
        while len(self.batches) < shards:
            self.batches.append(self.make_batch())
        if self.executor is None:
            # torch on one thread per shard: the shards are the parallelism (intra-op threads
            # are set per thread, and several of them spinning per shard would starve the rest).
            self.executor = ThreadPoolExecutor(
                self.threads, "neuroes-shard", initializer=torch.set_num_threads, initargs=(1,)
            )
        bounds = [p * k // shards for k in range(shards + 1)]
        futures = [
            self.executor.submit(self._shard, batch, thetas[a:b], episodes, max_steps, seeds[a:b])
            for batch, a, b in zip(self.batches, bounds, bounds[1:], strict=False)
        ]
        try:
            outcomes = [future.exception() for future in futures]
        except BaseException:  # Ctrl-C: the shards stop at their next step
            self.cancel.set()
            wait(futures)
            self.cancel.clear()
            raise
        errors = [
            error.shifted(start)
            for start, error in zip(bounds, outcomes, strict=False)
            if isinstance(error, RolloutError)
        ]
        if errors:
            raise _first(errors)
        return Rollouts.concatenate([future.result() for future in futures])

    def _shard(
        self,
        batch: BatchEnv,
        members: Population,
        episodes: int,
        max_steps: int | None,
        seeds: np.ndarray,
    ) -> Rollouts:
        """:meth:`evaluate` of ``members`` on ``batch``, with one base seed per member, in
        chunks of at most ``chunk_bytes`` of parameters (results do not depend on the chunks)."""
        rows = max(1, self.chunk_bytes // (4 * self.forward.size * episodes))
        parts, errors = [], []
        for start in range(0, len(members), rows):
            chunk = slice(start, start + rows)
            try:
                parts.append(self._chunk(batch, members[chunk], episodes, max_steps, seeds[chunk]))
            except RolloutError as error:  # the other chunks still play: report the first
                errors.append(error.shifted(start))
        if errors:
            raise _first(errors)
        return Rollouts.concatenate(parts)

    def _chunk(
        self,
        batch: BatchEnv,
        members: Population,
        episodes: int,
        max_steps: int | None,
        seeds: np.ndarray,
    ) -> Rollouts:
        """:meth:`_shard` of one chunk, played as one batch."""
        p, n = len(members), len(members) * episodes
        seeds = (seeds[:, None] + np.arange(episodes)).reshape(n)
        # One row per episode, so that an episode's actions do not depend on how many episodes
        # run beside it (matrix kernels round differently for different row counts).
        rows = members.repeated(episodes)
        if rows.seeded and self.device.type == "cpu":  # built in place, in the aligned layout
            thetas = rows.rows(0, n, out=self._buffer(n))
        else:
            thetas = rows.thetas.to(self.device, torch.float32)
        with torch.no_grad():
            returns, lengths, behaviors, total, total_sq = self._play(
                batch, thetas, seeds, max_steps, episodes
            )
        dim = total.shape[1]
        return Rollouts(
            returns=returns.reshape(p, episodes).mean(1),
            lengths=lengths.reshape(p, episodes).mean(1),
            behaviors=behaviors.reshape(p, episodes, -1).mean(1),
            steps=lengths.reshape(p, episodes).sum(1),
            observation_sum=total.reshape(p, episodes, dim).sum(1),
            observation_sum_sq=total_sq.reshape(p, episodes, dim).sum(1),
        )

    def _buffer(self, rows: int) -> Tensor:
        """This thread's reused parameter buffer, ``(rows, d)`` in the aligned layout."""
        buffer = getattr(self.buffers, "value", None)
        if buffer is None or len(buffer) < rows:
            buffer = self.buffers.value = aligned_empty(rows, self.forward.size)
        return buffer[:rows]

    def _play(
        self,
        batch: BatchEnv,
        thetas: Tensor,
        seeds: np.ndarray,
        max_steps: int | None,
        episodes: int,
    ) -> tuple[np.ndarray, ...]:
        """The episodes' returns, lengths, behaviors and observation sums, one row each.

        The per-step work besides the environment and the forward is a fixed handful of
        numpy and torch calls over the whole batch, each row computed on its own.
        """
        n, space = len(seeds), batch.observation_space
        dim = observation_dim(space)
        act = _Actors(self, thetas, dim, batch.action_space.shape)
        running, seen = np.ones(n, dtype=bool), True  # seen: the rows whose observations count
        returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        total, total_sq, square = np.zeros((n, dim)), np.zeros((n, dim)), np.empty((n, dim))
        behaviors = np.zeros((n, 0))
        try:
            obs = batch.reset(seeds)
        except EnvFailure as failure:
            raise self._error(failure.index, episodes, 0, failure.what) from failure
        if not np.isfinite(obs.sum()):
            self._check_finite(obs, returns, running, episodes, 0)
        if isinstance(space, Box):  # flatten_observations without its per-call checks
            flatten = lambda obs: obs.reshape(n, dim).astype(np.float32, copy=False)  # noqa: E731
        else:
            flatten = functools.partial(flatten_observations, space)
        for step in itertools.count(1):
            if self.cancel.is_set():
                raise _Cancelled
            flat = flatten(obs)
            np.add(total, flat, out=total, where=seen)
            np.multiply(flat, flat, out=square, dtype=np.float64)
            np.add(total_sq, square, out=total_sq, where=seen)
            try:
                obs, rewards, terminated, truncated = batch.step(act(flat), running)
            except EnvFailure as failure:
                raise self._error(failure.index, episodes, step, failure.what) from failure
            if not np.isfinite(rewards.sum() + obs.sum()):  # a sum that overflows is checked too
                self._check_finite(obs, rewards, running, episodes, step)
            np.add(returns, rewards, out=returns, where=running)
            lengths += running
            ended = running & (terminated | truncated)
            if max_steps is not None and step >= max_steps:
                ended = running.copy()
            if ended.any():
                if self.has_behaviors:
                    where = np.flatnonzero(ended)
                    positions = batch.positions(where)
                    if behaviors.shape[1] != positions.shape[1]:
                        behaviors = np.zeros((n, positions.shape[1]))
                    behaviors[where] = positions
                running &= ~ended
                if not running.any():
                    return returns, lengths, behaviors, total, total_sq
                seen = running[:, None]  # a view: follows running
                act.keep(running)

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


def _first(errors: list[RolloutError]) -> RolloutError:
    """The error a single batch of all the rows would meet first."""
    return min(errors, key=lambda error: (error.step, error.member))


class _Cancelled(Exception):
    """A shard stopped because the evaluation it belonged to was interrupted."""


class _Actors:
    """The policies of a shard's rows (``thetas`` (n, d)), acting for the rows still running.

    The forward runs on the live rows only, chosen again whenever at most half of them still
    run: a member's actions are bitwise the same in any batch, and finished members would
    otherwise cost as much per step as running ones. Rows that are not live keep their last
    actions.
    """

    def __init__(
        self, evaluator: Evaluator, thetas: Tensor, dim: int, action_shape: tuple[int, ...]
    ) -> None:
        self.forward, self.head = evaluator.forward, evaluator.policy.head
        self.normalizer, self.device = evaluator.normalizer, evaluator.device
        self.dim, self.action_shape = dim, action_shape
        state = evaluator.policy.initial_state(len(thetas))
        self.state = None if state is None else state.to(self.device).unsqueeze(1)
        self.live: np.ndarray | None = None  # None: every row
        self.actions: np.ndarray | None = None
        self._bind(thetas)

    def _bind(self, thetas: Tensor) -> None:
        self.thetas = thetas
        self.policies = self.forward.bind(self.forward.prepare(thetas))
        self.inputs = aligned_rows(torch.zeros(len(thetas), 1, self.dim, device=self.device))
        self.row = self.inputs[:, 0]

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        """Actions (n, *action_shape) for flat float32 observations (n, dim)."""
        observed = torch.from_numpy(flat).to(self.device)
        if self.live is not None:
            observed = observed[self.rows]
        self.row.copy_(observed if self.normalizer is None else self.normalizer(observed))
        outputs, self.state = self.policies(self.inputs, self.state)
        actions = self.head.to_numpy(self.head(outputs)).reshape(len(outputs), *self.action_shape)
        if self.live is None:
            self.actions = actions
        else:
            self.actions[self.live] = actions
        return self.actions

    def keep(self, running: np.ndarray) -> None:
        """Narrows the forward to the running rows once at most half of the live ones run."""
        if 2 * running.sum() > len(self.thetas):
            return
        live = np.flatnonzero(running)
        within = live if self.live is None else np.searchsorted(self.live, live)
        index = torch.from_numpy(within).to(self.device)
        self._bind(self.thetas[index])
        self.state = None if self.state is None else self.state[index]
        self.live, self.rows = live, torch.from_numpy(live).to(self.device)
        self.actions = self.actions.copy()


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
