"""Sharded evaluation: what the learner sends to workers, what a worker does with it, and the
queue that hands shards to a pool of workers.

A shard is a block of consecutive rows of the evaluated population. Member ``i``'s result
depends only on its parameters and episode seeds, and :class:`Rollouts` rows concatenate, so a
shard is evaluated exactly like a smaller population and the joined shards equal the
single-process evaluation bitwise.

Per evaluation the learner publishes one :class:`Broadcast` (the mean, sigma, the noise table
and the normalizer) and sends each shard only its rows' noise seeds, signs and episode seeds;
workers rebuild the parameters with :meth:`Normal.rebuild` a chunk at a time, as the
in-process evaluator does. Populations that are not seeded (GA, ES-ENAS) send their shards'
parameter vectors instead. Workers send back :class:`Rollouts`.

:class:`Pool` hands out shards from a queue (several per worker, so a slow worker does not
stall the evaluation) and restarts a worker that dies, giving its shard to the next free one.
Its subclasses move the bytes: :class:`neuroes.workers.LocalWorkers` (local processes) and
:class:`neuroes.distributed.RayWorkers` (Ray actors).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from neuroes.agents import ObservationNormalizer, Policy
from neuroes.envs import Descriptor
from neuroes.noise import NoiseTable
from neuroes.population import Population
from neuroes.rollout import EnvSource, Evaluator, RolloutError, Rollouts

log = logging.getLogger(__name__)

MAX_KILLS = 3  # a shard that takes down this many workers in one evaluation is abandoned


class WorkerError(RuntimeError):
    """A worker failed outside the environment: it could not start, or kept dying."""


class Backend(Protocol):
    """Evaluates populations; :class:`neuroes.trainer.Run` talks only to this."""

    def evaluate(
        self, population: Population, seeds: np.ndarray, episodes: int, max_steps: int | None
    ) -> Rollouts:
        """Rollouts of every row of ``population``; row ``i`` starts from ``seeds[i] + e``."""
        ...

    def close(self) -> None:
        """Stop the workers; the backend is unusable afterwards."""
        ...


@dataclass
class WorkerSpec:
    """What a worker builds its evaluator from, once: the environment, the policy, the device,
    the behavior descriptor (as :class:`Evaluator` takes it) and the evaluator's threads
    (None: its default in the learner's own evaluator, one thread in each worker of a pool)."""

    env: EnvSource
    policy: Policy
    env_kwargs: dict | None = None
    device: str = "cpu"
    threads: int | None = None
    descriptor: Descriptor | str | None = "auto"

    def evaluator(
        self, normalizer: ObservationNormalizer | None = None, threads: int | None = None
    ) -> Evaluator:
        """The evaluator, on ``threads`` threads where the spec leaves them unset."""
        return Evaluator(
            self.env,
            self.policy,
            self.env_kwargs,
            normalizer=normalizer,
            device=self.device,
            threads=self.threads if self.threads is not None else threads,
            descriptor=self.descriptor,
        )


@dataclass
class Broadcast:
    """Published once per evaluation: what all its shards share."""

    episodes: int
    max_steps: int | None
    normalizer: ObservationNormalizer | None
    mu: np.ndarray | None = None  # float32 (d,), for seeded populations
    sigma: np.ndarray | None = None
    table: NoiseTable | None = None


@dataclass
class Shard:
    """Rows ``start ..`` of a population: noise seeds and signs, or else parameter vectors."""

    start: int
    seeds: np.ndarray  # int64 episode seeds
    noise_seeds: np.ndarray | None = None  # int64
    signs: np.ndarray | None = None  # int8: +1, -1, or 0 for the mean
    thetas: np.ndarray | None = None  # float32 (rows, d), for populations that are not seeded

    def __len__(self) -> int:
        return len(self.seeds)


def split(
    population: Population,
    seeds: np.ndarray,
    episodes: int,
    max_steps: int | None,
    normalizer: ObservationNormalizer | None,
    shard_size: int,
) -> tuple[Broadcast, list[Shard]]:
    """The broadcast and shards of ``shard_size`` rows that describe one evaluation."""
    broadcast = Broadcast(episodes, max_steps, normalizer)
    if population.seeded:
        broadcast.mu = population.mu.detach().cpu().numpy()
        broadcast.sigma = population.sigma.detach().cpu().numpy()
        broadcast.table = population.table
    seeds = np.broadcast_to(np.asarray(seeds, dtype=np.int64), (len(population),))
    shards = []
    for start in range(0, len(population), shard_size):
        part, rows = population[start : start + shard_size], slice(start, start + shard_size)
        if population.seeded:
            shard = Shard(start, seeds[rows], part.seeds.numpy(), part.signs.numpy())
        else:
            shard = Shard(start, seeds[rows], thetas=part.thetas.detach().cpu().numpy())
        shards.append(shard)
    return broadcast, shards


class ShardEvaluator:
    """The worker side: an evaluator built once, evaluating shards of the published evaluation.

    Runs torch, and the evaluator unless the spec sets its threads, on one thread: the workers
    are the parallelism. Arrays are copied into tensors (``torch.tensor``): those Ray hands
    over are read-only views of its object store.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        torch.set_num_threads(1)
        self.evaluator = spec.evaluator(threads=1)
        self.broadcast: Broadcast | None = None
        self.mu = self.sigma = None  # of the published seeded population

    def publish(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        self.evaluator.normalizer = broadcast.normalizer
        if broadcast.mu is not None:
            self.mu, self.sigma = torch.tensor(broadcast.mu), torch.tensor(broadcast.sigma)

    def evaluate(self, shard: Shard) -> Rollouts:
        b = self.broadcast
        if shard.thetas is not None:
            members = Population(torch.tensor(shard.thetas))
        else:
            seeds, signs = torch.tensor(shard.noise_seeds), torch.tensor(shard.signs)
            members = Population(None, seeds, signs, None, self.mu, self.sigma, b.table)
        try:
            return self.evaluator.evaluate(members, b.episodes, b.max_steps, shard.seeds)
        except RolloutError as error:
            raise error.shifted(shard.start) from None

    def run(self, shard: Shard) -> tuple[str, Rollouts | Exception]:
        """``("done", rollouts)``, or ``("failed", error)`` with a picklable error to re-raise
        in the learner: a :class:`RolloutError` naming the member's global row, or a
        :class:`WorkerError`."""
        try:
            return "done", self.evaluate(shard)
        except RolloutError as error:
            return "failed", error
        except Exception as error:
            return "failed", WorkerError(f"worker raised {type(error).__name__}: {error}")


class Pool:
    """Hands shards to ``workers`` workers from a queue, ``shards_per_worker`` shards each.

    An evaluation of P rows is cut into shards of ``ceil(P / (workers * shards_per_worker))``
    rows: small enough that a slow worker takes fewer of them, large enough that each shard
    still batches its members' policy forward. Subclasses implement the transport and
    :meth:`close`: ``_start(slot)`` starts a worker, which reports
    ``"ready"`` when it can take shards; ``_publish(broadcast)`` makes a broadcast available
    to all workers; ``_send(slot, shard)`` gives a ready worker a shard; ``_wait()`` blocks
    until there are events ``(slot, kind, payload)``, with ``kind`` one of ``"ready"``,
    ``"done"`` (payload: Rollouts), ``"failed"`` (an exception to raise) or ``"died"``
    (a description). A worker that dies is restarted in its slot and its shard goes back to
    the front of the queue.
    """

    def __init__(
        self,
        workers: int,
        normalizer: ObservationNormalizer | None,
        shards_per_worker: int = 4,
    ) -> None:
        if workers < 1 or shards_per_worker < 1:
            raise ValueError(
                f"workers and shards_per_worker must be positive, got {workers}, "
                f"{shards_per_worker}"
            )
        self.workers, self.shards_per_worker = workers, shards_per_worker
        self.normalizer = normalizer
        self.job = 0  # counts evaluations; results of an abandoned one are dropped
        self.idle: deque[int] = deque()
        self.starting: set[int] = set(range(workers))
        self.busy: dict[int, tuple[int, int]] = {}  # slot -> (job, shard index)
        for slot in range(workers):
            self._start(slot)

    def evaluate(
        self, population: Population, seeds: np.ndarray, episodes: int, max_steps: int | None
    ) -> Rollouts:
        self.job += 1
        shard_size = math.ceil(len(population) / (self.workers * self.shards_per_worker))
        broadcast, shards = split(
            population, seeds, episodes, max_steps, self.normalizer, shard_size
        )
        self._publish(broadcast)
        queue, results, kills = deque(range(len(shards))), {}, Counter()
        while len(results) < len(shards):
            while queue and self.idle:
                slot, index = self.idle.popleft(), queue.popleft()
                self.busy[slot] = (self.job, index)
                self._send(slot, shards[index])
            failure = None
            for slot, kind, payload in self._wait():
                job, index = self.busy.pop(slot, (None, None))
                if slot in self.starting and kind != "ready":
                    raise WorkerError(f"worker {slot} could not start: {payload}")
                if kind == "died":
                    self.starting.add(slot)
                    self._start(slot)
                    if job == self.job:
                        self._count_loss(shards[index], payload, kills)
                        queue.appendleft(index)
                    continue
                self.idle.append(slot)
                self.starting.discard(slot)
                if job == self.job and kind == "done":
                    results[index] = payload
                elif job == self.job and kind == "failed":
                    failure = failure or payload
            if failure is not None:
                raise failure
        return Rollouts.concatenate([results[i] for i in range(len(shards))])

    @staticmethod
    def _count_loss(shard: Shard, why: str, kills: Counter) -> None:
        rows = f"rows {shard.start}-{shard.start + len(shard) - 1}"
        kills[shard.start] += 1
        if kills[shard.start] >= MAX_KILLS:
            raise WorkerError(f"{rows} took down {MAX_KILLS} workers in one evaluation")
        log.warning("a worker died (%s); %s go to another worker", why, rows)

    def _start(self, slot: int) -> None:
        raise NotImplementedError

    def _publish(self, broadcast: Broadcast) -> None:
        raise NotImplementedError

    def _send(self, slot: int, shard: Shard) -> None:
        raise NotImplementedError

    def _wait(self) -> list[tuple[int, str, object]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
