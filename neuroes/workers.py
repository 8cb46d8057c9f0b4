"""Evaluation backends on one machine, and the choice between them.

:class:`InProcess` (the default) runs the whole population in the learner's evaluator, with
no copies and no messages. :class:`LocalWorkers` runs ``--workers N`` processes, each with its
own environments and evaluator, fed shards by :class:`neuroes.shards.Pool` through a pipe.
They are forked from multiprocessing's fork server, which imports neuroes (torch, gymnasium)
once, so a worker starts in a fraction of a second and inherits nothing of the learner's
state; it maps the algorithm's noise table from shared memory instead of building its own.
``--ray`` picks :class:`neuroes.distributed.RayWorkers`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import time
from multiprocessing.connection import Connection, wait

import cloudpickle
import numpy as np
import torch

from neuroes.agents import ObservationNormalizer
from neuroes.noise import NoiseTable
from neuroes.population import Population
from neuroes.rollout import Rollouts
from neuroes.shards import Backend, Broadcast, Pool, Shard, ShardEvaluator, WorkerError, WorkerSpec

log = logging.getLogger(__name__)

MAIN_GUARD = (
    "worker processes import the main script, so a script that trains with --workers must "
    'start training under `if __name__ == "__main__":`'
)


class InProcess:
    """The learner's own evaluator on the whole population."""

    def __init__(self, spec: WorkerSpec, normalizer: ObservationNormalizer | None) -> None:
        self.evaluator = spec.evaluator(normalizer)

    def evaluate(
        self, population: Population, seeds: np.ndarray, episodes: int, max_steps: int | None
    ) -> Rollouts:
        return self.evaluator.evaluate(population, episodes, max_steps, seeds)

    def scalars(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


def encode(message: tuple) -> bytes:
    """The bytes of one message on a worker's pipe."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _serve(
    spec: bytes, conn: Connection, table: NoiseTable | None, values: torch.Tensor | None
) -> None:
    """A worker process: :func:`answer` until the pipe closes. Ctrl-C is left to the learner.
    The process ends with ``os._exit``: the interpreter's teardown of torch and the simulators
    takes most of a second and has nothing to save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        answer(spec, conn, table, values)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def answer(
    spec: bytes, conn: Connection, table: NoiseTable | None, values: torch.Tensor | None
) -> None:
    """Build the evaluator once, then evaluate shards until the pipe closes.

    Messages in: ``("publish", Broadcast)`` and ``("shard", Shard)``; out: ``("ready", pid)``,
    then one ``ShardEvaluator.run`` answer per shard, or one ``("failed", WorkerError)`` if the
    evaluator cannot be built. ``values``: the learner's noise table, mapped rather than built.
    """
    if values is not None:
        table.adopt(values)
    elif table is not None:
        table.values()  # built before "ready": not inside a shard's deadline
    try:
        worker = ShardEvaluator(cloudpickle.loads(spec))
        conn.send_bytes(encode(("ready", os.getpid())))
        while True:
            kind, payload = pickle.loads(conn.recv_bytes())
            if kind == "publish":
                worker.publish(payload)
            else:
                conn.send_bytes(encode(worker.run(payload)))
    except (EOFError, OSError):  # the learner closed the pipe
        pass
    except Exception as error:  # building the evaluator failed, or reading a broadcast
        conn.send_bytes(encode(("failed", WorkerError(f"{type(error).__name__}: {error}"))))


class LocalWorkers(Pool):
    """``workers`` local processes; each receives a broadcast once per evaluation it joins.

    ``bytes_sent`` and ``bytes_received`` count the pickled messages in each direction.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        normalizer: ObservationNormalizer | None,
        workers: int,
        shards_per_worker: int = 4,
        table: NoiseTable | None = None,
        shard_timeout: float | None = None,
    ) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["neuroes.shards"])  # torch, gymnasium: imported once
        self.spec = cloudpickle.dumps(spec)
        self.table = (table, None if table is None else table.shared())  # and its shared values
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.conns: dict[int, Connection] = {}
        self.published: dict[int, int] = {}  # slot -> the job whose broadcast it holds
        self.bytes_sent = self.bytes_received = 0
        super().__init__(spec, workers, normalizer, shards_per_worker, shard_timeout)

    def _start(self, slot: int) -> None:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=_serve,
            args=(self.spec, theirs, *self.table),
            name=f"neuroes-worker-{slot}",
            daemon=True,
        )
        process.start()
        theirs.close()  # so that the worker's death reads as end-of-file here
        self.processes[slot], self.conns[slot] = process, ours

    def _stop(self, slot: int) -> None:
        process = self.processes.pop(slot)
        self.conns.pop(slot).close()
        self.published.pop(slot, None)
        process.kill()
        process.join(timeout=5)

    def _publish(self, broadcast: Broadcast) -> None:
        self.broadcast = encode(("publish", broadcast))

    def _send(self, slot: int, shard: Shard) -> None:
        try:
            if self.published.get(slot) != self.job:
                self._write(slot, self.broadcast)
                self.published[slot] = self.job
            self._write(slot, encode(("shard", shard)))
        except OSError:  # the worker died: _wait reports it
            pass

    def _write(self, slot: int, message: bytes) -> None:
        self.conns[slot].send_bytes(message)
        self.bytes_sent += len(message)

    def _wait(self, timeout: float | None) -> list[tuple[int, str, object]]:
        ready = wait(list(self.conns.values()), timeout)
        events = []
        for slot, conn in list(self.conns.items()):
            if conn not in ready:
                continue
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                process = self.processes[slot]
                process.join(timeout=5)
                why = f"exit code {process.exitcode}"
                first = slot in self.starting and not self.ever_ready
                if first and hasattr(sys.modules["__main__"], "__file__"):
                    why += f"; {MAIN_GUARD}"
                events.append((slot, "died", why))
                continue
            self.bytes_received += len(message)
            events.append((slot, *pickle.loads(message)))
        return events

    def close(self) -> None:
        """Idle workers exit when their pipe closes; busy or starting ones are killed."""
        for slot, conn in self.conns.items():
            conn.close()
            if slot in self.busy or slot in self.starting:
                self.processes[slot].kill()
        deadline = time.monotonic() + 2.0
        for process in self.processes.values():
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        self.processes.clear()
        self.conns.clear()


def make_backend(
    spec: WorkerSpec,
    normalizer: ObservationNormalizer | None,
    workers: int = 1,
    ray: str | None = None,
    table: NoiseTable | None = None,
    shard_timeout: float | None = None,
) -> Backend:
    """Ray actors when ``ray`` names a cluster ("auto" or an address), else ``workers`` local
    processes, else (one worker) this process. With Ray, ``workers`` caps the actors, one per
    CPU of the cluster (1: no cap). ``table``, the algorithm's noise table if it has one, is
    mapped by local processes and built by Ray actors before they take shards.
    ``shard_timeout``: see :class:`neuroes.shards.Pool`."""
    if ray is not None:
        try:
            from neuroes.distributed import RayWorkers
        except ModuleNotFoundError as error:
            if error.name != "ray":
                raise
            raise ValueError('--ray needs Ray: pip install "neuroes[ray]"') from None
        cap = workers if workers > 1 else None
        return RayWorkers(spec, normalizer, cap, ray, shard_timeout=shard_timeout, table=table)
    cores = os.cpu_count() or 1
    if workers > cores:
        log.warning("--workers %d is more than the %d cores here; using %d", workers, cores, cores)
        workers = cores
    if workers > 1:
        return LocalWorkers(spec, normalizer, workers, table=table, shard_timeout=shard_timeout)
    return InProcess(spec, normalizer)
