"""Scaling of the evaluation over worker processes, and the bytes a generation sends.

    python benchmarks/scaling.py                 # HalfCheetah-v5, population 64, full episodes
    python benchmarks/scaling.py --quick         # a smoke-sized run
    python benchmarks/scaling.py --no-ray        # local processes only

(a) Generations per second and environment steps per second of NES on HalfCheetah-v5 (MLP
64-64, population 64 plus the mean policy's 10 evaluation episodes, 1000-step episodes) in
process, with 1 and 2 local worker processes, and with 1 and 2 Ray actors on a local cluster.
The same run on every backend plays its generations in turn with the others, so that all meet
the same machine load (on a shared machine it varies), and the results are checked to be
identical. Every process runs torch on one thread. The first generation, which waits for the
workers to start, is not timed. Steps per second count the population's steps, as
``time/steps_per_second`` does in training. The chaos row is the 2-worker run with one of its
workers killed (SIGKILL) half-way through every generation: its shard is re-run on the other
worker while a replacement starts, and the results must still be identical; its ratio is to the
clean 2-worker run, the cost of a lost worker.

(b) Bytes per generation between the learner and 2 local workers for a policy of about 100k
parameters and a population of 1000 (plus 10 evaluation rows), measured on the pipes: once with
the Gaussian population sent as seeds, once with the same members sent as vectors (the path of
the GA and ES-ENAS). Episodes are cut at one step: the bytes do not depend on their length.
Then the sizes of one shard message per row count, from which a model of larger runs follows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import tempfile
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from neuroes.agents import (
    ObservationNormalizer,
    get_flat,
    make_policy,
    num_params,
    observation_dim,
)
from neuroes.algorithms import NES
from neuroes.config import Config
from neuroes.population import Population
from neuroes.rollout import Rollouts
from neuroes.shards import Backend, WorkerSpec, split
from neuroes.trainer import Run
from neuroes.workers import InProcess, LocalWorkers, encode


def generation(run: Run) -> tuple[float, Rollouts]:
    """One NES generation of ``run`` (ask, evaluate, tell): its seconds and rollouts."""
    start = time.perf_counter()
    population = run.algorithm.ask()
    rollouts, _ = run.evaluate(population)  # with the mean policy's rows, as in training
    run.normalizer.update(*rollouts.observation_stats)
    run.algorithm.tell(population, rollouts)
    run.generation += 1
    return time.perf_counter() - start, rollouts


CHAOS = "chaos"


def scaling(env_id: str, generations: int, max_steps: int | None, with_ray: bool) -> None:
    """Generations of every backend in turn, so that all see the same machine load."""
    cases = [("in process", 1), ("local", 1), ("local", 2), (CHAOS, 2)]
    cases += [("ray", 1), ("ray", 2)] if with_ray else []
    torch.set_num_threads(1)  # as workers do; two threads on two busy cores are much slower
    config = Config(env_id, popsize=64, max_steps=max_steps, progress=False).resolved()
    rates = [[] for _ in cases]  # (generations/s, steps/s) of every timed generation
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        if with_ray:
            import ray

            ray.init(num_cpus=3, include_dashboard=False, logging_level="WARNING")
            stack.callback(ray.shutdown)
        runs = []
        for index, (kind, workers) in enumerate(cases):
            run = Run.fresh(config, Path(folder) / str(index))
            stack.callback(run.close)
            run.backend.close()  # the same run on the backend of this case
            run.backend = backend(kind, workers, WorkerSpec(env_id, run.policy), run.normalizer)
            runs.append(run)
        rng = random.Random(0)
        for turn in range(generations + 1):  # turn 0 also waits for the workers: not timed
            results = []
            for run, (kind, _) in zip(runs, cases, strict=True):
                if kind != CHAOS:
                    results.append(generation(run))
                    continue
                clean = results[cases.index(("local", 2))][0]
                killer = threading.Timer(clean / 2, kill_a_worker, args=(run.backend, rng))
                killer.start()
                results.append(generation(run))
                killer.cancel()
            returns = results[0][1].returns
            assert all(np.array_equal(r.returns, returns) for _, r in results), "results differ"
            for index, (took, rollouts) in enumerate(results):
                if turn:
                    rates[index].append((1 / took, rollouts.env_steps / took))
    print(f"(a) {env_id}, population 64 + 10 evaluation rows, medians of {generations}")
    print("interleaved generations; the backends' results were identical")
    print(f"{'backend':>10} {'workers':>7} {'gen/s':>7} {'steps/s':>8} {'vs 1 worker':>11}")
    medians = {
        case: np.median(measured, axis=0) for case, measured in zip(cases, rates, strict=True)
    }
    for (kind, workers), (rate, steps) in medians.items():
        base, note = (
            (medians["local", 2][0], " of 2 clean") if kind == CHAOS else (medians[kind, 1][0], "")
        )
        print(f"{kind:>10} {workers:>7} {rate:>7.3f} {steps:>8.0f} {rate / base:>10.2f}x{note}")


def kill_a_worker(pool: LocalWorkers, rng: random.Random) -> None:
    """SIGKILL one of the pool's worker processes (none if it is already gone)."""
    with contextlib.suppress(ProcessLookupError, IndexError):
        os.kill(rng.choice(list(pool.processes.values())).pid, signal.SIGKILL)


def backend(kind: str, workers: int, spec: WorkerSpec, normalizer) -> Backend:
    """An explicit backend (``--ray`` with ``--workers 1`` would mean one actor per CPU)."""
    if kind in ("local", CHAOS):
        return LocalWorkers(spec, normalizer, workers)
    if kind == "ray":
        from neuroes.distributed import RayWorkers

        return RayWorkers(spec, normalizer, workers)
    return InProcess(spec, normalizer)


def message_bytes(hidden: tuple[int, ...], popsize: int) -> None:
    env = gym.make("HalfCheetah-v5")
    torch.manual_seed(0)
    policy = make_policy("mlp", env.observation_space, env.action_space, hidden=hidden)
    normalizer = ObservationNormalizer(observation_dim(env.observation_space))
    algorithm = NES(get_flat(policy), 0.02, popsize=popsize, lr=0.01)
    seeded = algorithm.ask().with_mean(algorithm.mean, 10)
    forms = [("seeds", seeded), ("vectors", Population(seeded.thetas))]
    print(f"\n(b) {num_params(policy)} parameters, population {popsize} + 10, 2 local workers,")
    print("8 shards: bytes per generation")
    print(f"{'form':>8} {'learner->workers':>17} {'workers->learner':>17}")
    backend = LocalWorkers(WorkerSpec("HalfCheetah-v5", policy), normalizer, 2)
    try:
        for name, population in forms:
            sent, received = backend.bytes_sent, backend.bytes_received
            rollouts = backend.evaluate(population, 0, 1, 1)
            sent, received = backend.bytes_sent - sent, backend.bytes_received - received
            print(f"{name:>8} {sent:>17,} {received:>17,}")
    finally:
        backend.close()
    print("\none message, by rows per shard (bytes):")
    print(f"{'rows':>6} {'seed shard':>11} {'vector shard':>13} {'reply':>7} {'broadcast':>10}")
    for rows in (1, 10, 100):
        broadcast, (seeds,) = split(seeded[:rows], 0, 1, None, normalizer, rows)
        _, (vectors,) = split(Population(seeded.thetas[:rows]), 0, 1, None, normalizer, rows)
        messages = [("shard", seeds), ("shard", vectors), ("done", rollouts[:rows])]
        sizes = [f"{len(encode(m)):,}" for m in [*messages, ("publish", broadcast)]]
        print(f"{rows:>6} {sizes[0]:>11} {sizes[1]:>13} {sizes[2]:>7} {sizes[3]:>10}")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--quick", action="store_true", help="a smoke-sized run")
    cli.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    args = cli.parse_args()
    print(
        f"torch {torch.__version__}, gymnasium {gym.__version__}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    generations, max_steps = (1, 50) if args.quick else (3, None)
    scaling("HalfCheetah-v5", generations, max_steps, not args.no_ray)
    message_bytes((32,) if args.quick else (304, 304), 100 if args.quick else 1000)


if __name__ == "__main__":
    main()
