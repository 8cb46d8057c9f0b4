"""The Ray backend: shards evaluated by Ray actors, on one machine or a cluster.

``python -m neuroes.train ENV --ray auto`` joins the running cluster (``ray start --head`` on
one machine, ``ray start --address HEAD:6379`` on the others; every node needs neuroes
installed: ``pip install "neuroes[ray]"``); ``--ray ADDRESS`` names it. A cluster with token
authentication needs ``RAY_AUTH_MODE=token`` and its token (``~/.ray/auth_token``) on every node
and on the driver. Each actor takes one CPU and builds its evaluator once. Per evaluation the
learner puts the :class:`neuroes.shards.Broadcast` in the object store once (``ray.put``); an
actor fetches it with its first shard of that evaluation, so shard messages carry only seeds.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

import cloudpickle
import ray
from ray.exceptions import AuthenticationError, RayError

from neuroes.agents import ObservationNormalizer
from neuroes.noise import NoiseTable
from neuroes.shards import Broadcast, Pool, Shard, ShardEvaluator, WorkerError, WorkerSpec


@ray.remote(num_cpus=1, max_restarts=0)
class _Worker:
    def __init__(self, spec: bytes, table: NoiseTable | None) -> None:
        self.worker = ShardEvaluator(cloudpickle.loads(spec))
        self.job = None
        if table is not None:
            table.values()  # built before "ready": not inside a shard's deadline

    def ready(self) -> tuple[str, None]:
        return "ready", None

    def evaluate(self, job: int, broadcast: list[ray.ObjectRef], shard: Shard):
        if job != self.job:  # the reference sits in a list so that Ray does not fetch it per call
            try:
                self.worker.publish(ray.get(broadcast[0]))
            except Exception as error:
                return "failed", WorkerError(
                    f"reading the broadcast: {type(error).__name__}: {error}"
                )
            self.job = job
        return self.worker.run(shard)


_TOKEN_HINT = (
    "run with RAY_AUTH_MODE=token and the cluster's token (copy the head node's "
    "~/.ray/auth_token, or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
)


def _connect(address: str | None) -> None:
    """``ray.init(address)``, or ValueError with one line saying why it failed.

    Ray's core writes a warning per failed attempt (20 by default) straight to the stderr
    descriptor; that output is held back, and passed on only if the connection succeeds.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, AuthenticationError) as error:
            reason = _reason(error)
            raise ValueError(f"cannot reach a Ray cluster at {address!r}: {reason}") from None
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        with open(2, "wb", closefd=False) as stderr:
            stderr.write(held.read())


def _reason(error: Exception) -> str:
    """Ray's reason when it lacks or the cluster refuses the authentication token, with what to
    do; else the first line of ``error``."""
    if isinstance(error, AuthenticationError):  # token mode without a token: raised before trying
        return f"{error.message}; {_TOKEN_HINT}"
    # The refusal reaches Python as the text of a traceback, the cause of ``error``.
    refused = re.search(r"AuthenticationError: (.*?)\.", str(error.__cause__))
    if refused:
        return f"{refused[1].rsplit(': ', 1)[-1]}; {_TOKEN_HINT}"
    return str(error).splitlines()[0]


class RayWorkers(Pool):
    """One Ray actor per CPU of the cluster, at most ``workers`` (None: no cap).

    The actors follow the cluster: at every evaluation actors are started on CPUs that joined;
    an actor lost with its node has its shard re-run and is replaced while the cluster counts
    a CPU for it (a replacement started before Ray declares the node dead waits for a CPU).
    Connects with ``ray.init(address)`` unless Ray is already initialized in this process, and
    shuts Ray down on :meth:`close` only if it connected.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        normalizer: ObservationNormalizer | None,
        workers: int | None = None,
        address: str | None = "auto",
        shards_per_worker: int = 4,
        shard_timeout: float | None = None,
        table: NoiseTable | None = None,
    ) -> None:
        self.table = table
        self.connected = not ray.is_initialized()
        if self.connected:
            _connect(address)
        self.spec = cloudpickle.dumps(spec)
        self.actors: dict[int, ray.actor.ActorHandle] = {}
        self.pending: dict[ray.ObjectRef, int] = {}  # outstanding call -> slot
        super().__init__(spec, workers or sys.maxsize, normalizer, shards_per_worker, shard_timeout)

    def _target(self) -> int:
        return min(self.workers, int(ray.cluster_resources().get("CPU", 1)))

    def _start(self, slot: int) -> None:
        self.actors[slot] = _Worker.remote(self.spec, self.table)
        self.pending[self.actors[slot].ready.remote()] = slot

    def _stop(self, slot: int) -> None:
        ray.kill(self.actors.pop(slot))
        self.pending = {call: owner for call, owner in self.pending.items() if owner != slot}

    def _publish(self, broadcast: Broadcast) -> None:
        self.broadcast = [ray.put(broadcast)]

    def _send(self, slot: int, shard: Shard) -> None:
        call = self.actors[slot].evaluate.remote(self.job, self.broadcast, shard)
        self.pending[call] = slot

    def _wait(self, timeout: float | None) -> list[tuple[int, str, object]]:
        if not ray.wait(list(self.pending), num_returns=1, timeout=timeout)[0]:
            return []
        done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        events = []
        for call in done:
            slot = self.pending.pop(call)
            try:
                events.append((slot, *ray.get(call)))
            except RayError as error:  # the actor died, or its node was lost
                events.append((slot, "died", str(error).splitlines()[0]))
        return events

    def close(self) -> None:
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()
        self.pending.clear()
        self.broadcast = None
        if self.connected:
            ray.shutdown()
            self.connected = False
