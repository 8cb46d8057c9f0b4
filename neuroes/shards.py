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

import itertools
import logging
import math
import statistics
import time
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
MAX_TIMEOUTS = 3  # a shard that misses this many deadlines in one evaluation is abandoned
TIMEOUT_FACTOR = 10.0  # a shard's deadline: this many times its expected time,
TIMEOUT_FLOOR = 10.0  # and at least this many seconds
TIMEOUT_WINDOW = 64  # the expected time comes from this many recent shards
START_TIMEOUT = 300.0  # seconds that workers may take to start when none is ready


class WorkerError(RuntimeError):
    """A worker failed outside the environment: it could not start, or kept dying."""


class ShardTimeout(WorkerError):
    """A shard missed its deadline ``MAX_TIMEOUTS`` times in one evaluation."""


class Backend(Protocol):
    """Evaluates populations; :class:`neuroes.trainer.Run` talks only to this."""

    def evaluate(
        self, population: Population, seeds: np.ndarray, episodes: int, max_steps: int | None
    ) -> Rollouts:
        """Rollouts of every row of ``population``; row ``i`` starts from ``seeds[i] + e``."""
        ...

    def scalars(self) -> dict[str, float]:
        """``time/`` scalars of the workers since the last call (none in process)."""
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

    @property
    def env_name(self) -> str:
        """The environment's id, or its factory's name."""
        if isinstance(self.env, str):
            return self.env
        return getattr(self.env, "__qualname__", type(self.env).__name__)

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


@dataclass
class _InFlight:
    """A shard given to a worker: of which evaluation, which shard, sent when, its rows x
    episodes, and the evaluation's ``max_steps``."""

    job: int
    index: int
    sent: float
    work: int
    max_steps: int | None


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
    """Hands shards to workers from a queue, ``shards_per_worker`` shards per worker.

    An evaluation of P rows is cut into shards of ``ceil(P / (live workers *
    shards_per_worker))`` rows: small enough that a slow worker takes fewer of them, large
    enough that each shard still batches its members' policy forward. Which worker evaluates a
    shard, and how often, never changes its result, so every recovery below keeps the
    evaluation bitwise.

    Faults:

    - a worker that dies is replaced and its shard goes back to the front of the queue; a shard
      that takes down ``MAX_KILLS`` workers in one evaluation stops it (:class:`WorkerError`);
    - a shard in flight past its deadline goes back to the queue and its worker is killed and
      replaced; after ``MAX_TIMEOUTS`` deadlines the evaluation stops (:class:`ShardTimeout`).
      The deadline is ``shard_timeout`` seconds when given; else ``TIMEOUT_FACTOR`` times the
      shard's expected time, at least ``TIMEOUT_FLOOR`` seconds, doubled at each retry of the
      shard. The expected time is its rows x episodes x the episode length (``max_steps``, else
      the longest episode seen) at the median seconds per step of the last ``TIMEOUT_WINDOW``
      shards; until a shard has finished there is none;
    - no worker ready for ``START_TIMEOUT`` seconds, with none working, is a
      :class:`WorkerError` (a cluster without a free CPU);
    - the number of workers follows :meth:`_target` at every evaluation (a Ray cluster's CPUs).

    Subclasses implement the transport: ``_start(slot)`` starts a worker, which reports
    ``"ready"`` when it can take shards; ``_stop(slot)`` kills it and drops whatever it would
    still send; ``_publish(broadcast)`` makes a broadcast available to all workers;
    ``_send(slot, shard)`` gives a ready worker a shard; ``_wait(timeout)`` blocks until there
    are events ``(slot, kind, payload)`` or ``timeout`` seconds pass, with ``kind`` one of
    ``"ready"``, ``"done"`` (payload: Rollouts), ``"failed"`` (an exception to raise) or
    ``"died"`` (a description).
    """

    def __init__(
        self,
        spec: WorkerSpec,
        workers: int,
        normalizer: ObservationNormalizer | None,
        shards_per_worker: int = 4,
        shard_timeout: float | None = None,
    ) -> None:
        if workers < 1 or shards_per_worker < 1:
            raise ValueError(
                f"workers and shards_per_worker must be positive, got {workers}, "
                f"{shards_per_worker}"
            )
        if shard_timeout is not None and not shard_timeout > 0:
            raise ValueError(f"shard_timeout must be positive seconds, got {shard_timeout}")
        self.workers, self.shards_per_worker = workers, shards_per_worker
        self.shard_timeout, self.env_name = shard_timeout, spec.env_name
        self.normalizer = normalizer
        self.job = 0  # counts evaluations; results of an abandoned one are dropped
        self.slots = itertools.count()
        self.live: set[int] = set()  # started and not stopped: starting, idle or busy
        self.idle: deque[int] = deque()
        self.starting: dict[int, float] = {}  # slot -> when it was started
        self.busy: dict[int, _InFlight] = {}
        self.step_seconds: deque[float] = deque(maxlen=TIMEOUT_WINDOW)
        self.longest = 0  # the longest episode seen, in steps
        self.reruns = 0  # shards re-run since the last :meth:`scalars`
        self.failed_starts = 0  # workers that died starting since one was last ready
        self.ever_ready = False
        self._resize()

    def scalars(self) -> dict[str, float]:
        """The workers ready now (not those starting), and the shards re-run (lost or timed
        out) since the last call."""
        ready = len(self.live) - len(self.starting)
        scalars = {"time/workers": float(ready), "time/shards_rerun": float(self.reruns)}
        self.reruns = 0
        return scalars

    def evaluate(
        self, population: Population, seeds: np.ndarray, episodes: int, max_steps: int | None
    ) -> Rollouts:
        self.job += 1
        self._resize()
        shard_size = math.ceil(len(population) / (len(self.live) * self.shards_per_worker))
        broadcast, shards = split(
            population, seeds, episodes, max_steps, self.normalizer, shard_size
        )
        self._publish(broadcast)
        queue, results, kills, timeouts = deque(range(len(shards))), {}, Counter(), Counter()
        while len(results) < len(shards):
            while queue and self.idle:
                slot, index = self.idle.popleft(), queue.popleft()
                work = len(shards[index]) * episodes
                self.busy[slot] = _InFlight(self.job, index, time.monotonic(), work, max_steps)
                self._send(slot, shards[index])
            failure = None
            for slot, kind, payload in self._wait(self._time_left(timeouts)):
                flight = self.busy.pop(slot, None)
                current = flight is not None and flight.job == self.job
                if kind == "died":
                    failure = failure or self._started_badly(slot, kind, payload)
                    self._replace(slot)
                    if current:
                        failure = failure or self._lost(shards[flight.index], payload, kills)
                        queue.appendleft(flight.index)
                    continue
                if slot in self.starting and kind == "failed":  # its evaluator failed to build
                    failure = failure or self._started_badly(slot, kind, payload)
                    self._replace(slot)
                    continue
                self.idle.append(slot)
                if kind == "ready":
                    self.starting.pop(slot)
                    self.ever_ready, self.failed_starts = True, 0
                if current and kind == "done":
                    results[flight.index] = payload
                    self._measure(payload, time.monotonic() - flight.sent)
                elif current and kind == "failed":
                    failure = failure or payload
            for slot, flight in self._overdue(timeouts):
                self._replace(slot)
                if flight.job == self.job:
                    shard, limit = shards[flight.index], self._limit(flight, timeouts)
                    timeouts[flight.index] += 1
                    failure = failure or self._timed_out(shard, limit, timeouts[flight.index])
                    queue.appendleft(flight.index)
            failure = failure or self._none_ready()
            if failure is not None:
                raise failure
        return Rollouts.concatenate([results[i] for i in range(len(shards))])

    def _measure(self, rollouts: Rollouts, seconds: float) -> None:
        self.step_seconds.append(seconds / max(rollouts.env_steps, 1))
        self.longest = max(self.longest, int(np.max(rollouts.lengths, initial=0)))

    def _limit(self, flight: _InFlight, timeouts: Counter) -> float | None:
        """Seconds the shard of ``flight`` may take (None: no deadline yet)."""
        if self.shard_timeout is not None:
            return self.shard_timeout
        if not self.step_seconds:
            return None
        steps = flight.work * (flight.max_steps or self.longest)
        expected = statistics.median(self.step_seconds) * steps
        retries = timeouts[flight.index] if flight.job == self.job else 0
        return max(TIMEOUT_FLOOR, TIMEOUT_FACTOR * expected) * 2**retries

    def _time_left(self, timeouts: Counter) -> float | None:
        """Seconds until the first deadline of a shard in flight, or of the workers' start
        when none is ready; None: no deadline."""
        ends = []
        for flight in self.busy.values():
            limit = self._limit(flight, timeouts)
            if limit is not None:
                ends.append(flight.sent + limit)
        if not self.busy and not self.idle and self.starting:
            ends.append(min(self.starting.values()) + START_TIMEOUT)
        return max(0.0, min(ends) - time.monotonic()) if ends else None

    def _overdue(self, timeouts: Counter) -> list[tuple[int, _InFlight]]:
        now = time.monotonic()
        return [
            (slot, flight)
            for slot, flight in list(self.busy.items())
            if (limit := self._limit(flight, timeouts)) is not None and now >= flight.sent + limit
        ]

    def _none_ready(self) -> WorkerError | None:
        if self.busy or self.idle or not self.starting:
            return None
        waited = time.monotonic() - min(self.starting.values())
        if waited < START_TIMEOUT:
            return None
        return WorkerError(
            f"no worker became ready in {waited:.0f} s ({len(self.starting)} starting); is "
            f"there a free CPU for them?"
        )

    def _replace(self, slot: int) -> None:
        """Stop the worker in ``slot`` and forget it, then start workers up to the target."""
        self._stop(slot)
        self.live.discard(slot)
        self.starting.pop(slot, None)
        self.busy.pop(slot, None)
        if slot in self.idle:
            self.idle.remove(slot)
        self._resize()

    def _resize(self) -> None:
        """Start workers until ``_target()`` are live (workers are never stopped to shrink)."""
        while len(self.live) < max(1, self._target()):
            slot = next(self.slots)
            self.live.add(slot)
            self.starting[slot] = time.monotonic()
            self._start(slot)

    def _target(self) -> int:
        """How many workers to keep: ``workers``."""
        return self.workers

    def _rows(self, shard: Shard) -> str:
        return f"members {shard.start}-{shard.start + len(shard) - 1} of {self.env_name}"

    def _started_badly(self, slot: int, kind: str, payload: object) -> WorkerError | None:
        """The error of a worker that failed to build its evaluator, or died starting before
        any worker was ready or ``MAX_KILLS`` times in a row; None: it is just replaced."""
        if slot not in self.starting:
            return None
        self.failed_starts += 1
        if kind == "failed" or not self.ever_ready or self.failed_starts >= MAX_KILLS:
            return WorkerError(f"worker {slot} could not start: {payload}")
        log.warning("a starting worker died (%s); another one starts", payload)
        return None

    def _lost(self, shard: Shard, why: str, kills: Counter) -> WorkerError | None:
        kills[shard.start] += 1
        self.reruns += 1
        if kills[shard.start] >= MAX_KILLS:
            return WorkerError(
                f"{self._rows(shard)} took down {MAX_KILLS} workers in one evaluation"
            )
        log.warning("a worker died (%s); %s go to another worker", why, self._rows(shard))
        return None

    def _timed_out(self, shard: Shard, limit: float, count: int) -> ShardTimeout | None:
        self.reruns += 1
        if count >= MAX_TIMEOUTS:
            return ShardTimeout(
                f"{self._rows(shard)} timed out {count} times (the last deadline was "
                f"{limit:.3g} s; set it with --shard-timeout)"
            )
        log.warning(
            "%s timed out after %.3g s; they go to another worker, the stuck one is replaced",
            self._rows(shard), limit,
        )  # fmt: skip
        return None

    def _start(self, slot: int) -> None:
        raise NotImplementedError

    def _stop(self, slot: int) -> None:
        raise NotImplementedError

    def _publish(self, broadcast: Broadcast) -> None:
        raise NotImplementedError

    def _send(self, slot: int, shard: Shard) -> None:
        raise NotImplementedError

    def _wait(self, timeout: float | None) -> list[tuple[int, str, object]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
