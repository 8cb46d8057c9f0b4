"""Faults of the workers: shards that hang, workers killed at random, a learner interrupted.

Every recovery must keep the evaluation bitwise equal to the in-process one; every failure
that cannot be recovered must stop with one line naming the members and the environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroes import checkpoint, shards
from neuroes.agents import get_flat, make_policy
from neuroes.algorithms import NES
from neuroes.population import Population
from neuroes.shards import MAX_KILLS, ShardTimeout, WorkerError, WorkerSpec
from neuroes.trainer import EVALUATION, stream_seed
from neuroes.workers import InProcess, LocalWorkers

FIELDS = ("returns", "lengths", "behaviors", "steps", "observation_sum", "observation_sum_sq")
HUNG = 1000  # the episode seed whose reset hangs
TIMEOUT = 3.0  # seconds, the shard deadline of these tests, set once the workers are warm


def assert_same(a, b) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _hanging_pendulum(folder: str, once: bool):
    """A Pendulum factory whose reset with seed ``HUNG`` sleeps for ten minutes: only the first
    time anywhere (the file ``hung`` in ``folder`` is created exclusively) if ``once``."""

    class Hang(gym.Wrapper):
        def reset(self, *, seed=None, options=None):
            if seed == HUNG:
                try:
                    os.close(os.open(os.path.join(folder, "hung"), os.O_CREAT | os.O_EXCL))
                    first = True
                except FileExistsError:
                    first = False
                if first or not once:
                    time.sleep(600)
            return super().reset(seed=seed, options=options)

    return lambda: Hang(gym.make("Pendulum-v1"))


def _spec(folder: Path, once: bool) -> WorkerSpec:
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    policy = make_policy("mlp", env.observation_space, env.action_space, hidden=(16,))
    return WorkerSpec(_hanging_pendulum(str(folder), once), policy)


@pytest.fixture(params=["local", "ray"])
def make_pool(request):
    """Makes two-worker pools of the parametrized kind and closes them after the test."""
    made = []

    def make(spec: WorkerSpec):
        """A pool with ``TIMEOUT`` once both workers are ready and have evaluated shards: a
        worker's first shard may take seconds on a loaded machine (imports, first forward)."""
        if request.param == "ray":
            request.getfixturevalue("ray_session")
            from neuroes.distributed import RayWorkers

            made.append(RayWorkers(spec, None, 2, shards_per_worker=2))
        else:
            made.append(LocalWorkers(spec, None, 2, shards_per_worker=2))
        while made[-1].starting or not made[-1].step_seconds:
            made[-1].evaluate(_population(spec), 1, 1, 30)
        made[-1].shard_timeout = TIMEOUT
        made[-1].scalars()
        return made[-1]

    yield make
    for pool in made:
        pool.close()


def _population(spec: WorkerSpec, popsize: int = 16):
    return NES(get_flat(spec.policy), 0.5, popsize=popsize, lr=0.1).ask()


def test_a_shard_that_hangs_once_goes_to_another_worker_and_changes_nothing(
    make_pool, tmp_path, caplog
) -> None:
    spec = _spec(tmp_path, once=True)
    population, seeds = _population(spec), np.r_[[1] * 5, HUNG, [1] * 10]
    pool = make_pool(spec)
    tick = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="neuroes.shards"):
        result = pool.evaluate(population, seeds, 1, 30)
    assert [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()] == [
        f"members 4-7 of {spec.env_name} timed out after 3 s; they go to another worker, "
        "the stuck one is replaced"
    ]
    assert time.monotonic() - tick < 2 * TIMEOUT + 20  # one deadline, one worker restarted
    assert (tmp_path / "hung").exists()
    assert_same(result, InProcess(spec, None).evaluate(population, seeds, 1, 30))
    assert pool.scalars()["time/shards_rerun"] == 1 and len(pool.live) == 2


def test_a_shard_that_always_hangs_stops_the_evaluation_with_one_line(make_pool, tmp_path) -> None:
    spec = _spec(tmp_path, once=False)
    population, seeds = _population(spec), np.r_[[1] * 5, HUNG, [1] * 10]
    pool = make_pool(spec)
    tick = time.monotonic()
    with pytest.raises(ShardTimeout) as stopped:  # shards of 4 rows: row 5 is in 4-7
        pool.evaluate(population, seeds, 1, 30)
    assert time.monotonic() - tick < shards.MAX_TIMEOUTS * (TIMEOUT + 5) + 20
    assert pool.scalars()["time/shards_rerun"] == shards.MAX_TIMEOUTS
    assert str(stopped.value).startswith(
        f"members 4-7 of {spec.env_name} timed out 3 times (the last deadline was 3 s"
    )
    expected = InProcess(spec, None).evaluate(population, 1, 1, 30)
    pool.shard_timeout = None  # replacement workers' first shards may be slow under load
    assert_same(pool.evaluate(population, 1, 1, 30), expected)  # the pool is still usable
    pool.close()  # and closing it twice (here and after the test) is harmless


def test_without_a_timeout_the_deadline_follows_the_measured_shard_times(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(shards, "TIMEOUT_FLOOR", 2.0)
    spec = _spec(tmp_path, once=True)
    population, seeds = _population(spec), np.r_[[1] * 5, HUNG, [1] * 10]
    pool = LocalWorkers(spec, None, 2, shards_per_worker=2)
    try:
        flight = shards._InFlight(pool.job + 1, 0, 0.0, work=4, max_steps=30)
        assert pool._limit(flight, Counter()) is None  # nothing measured: no deadline
        pool.evaluate(population, 1, 1, 30)
        pool.scalars()
        expected = float(np.median(pool.step_seconds)) * 4 * 30
        assert pool._limit(flight, Counter()) == max(2.0, shards.TIMEOUT_FACTOR * expected)
        assert pool._limit(flight, Counter({0: 2})) == 4 * pool._limit(flight, Counter())
        result = pool.evaluate(population, seeds, 1, 30)
        assert_same(result, InProcess(spec, None).evaluate(population, seeds, 1, 30))
        assert pool.scalars()["time/shards_rerun"] == 1
    finally:
        pool.close()


def _kill_a_ready_worker(pool: LocalWorkers, rng: random.Random, killed: list[int]) -> None:
    with contextlib.suppress(KeyError, IndexError, ProcessLookupError):  # none ready, or gone
        ready = [pool.processes[slot] for slot in list(pool.live) if slot not in pool.starting]
        pid = rng.choice(ready).pid
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)


def test_fifteen_generations_with_workers_killed_at_random_end_where_one_process_ends(
    tmp_path,
) -> None:
    """A ready worker is killed at a random moment of every generation."""
    spec = _spec(tmp_path, once=True)
    algorithms = [NES(get_flat(spec.policy), 0.1, popsize=32, lr=0.05) for _ in range(2)]
    pool, here, rng = LocalWorkers(spec, None, 2), InProcess(spec, None), random.Random(0)
    killed = []
    try:
        while pool.starting:  # both workers ready before the first kill
            pool.evaluate(_population(spec), 0, 1, 1)
        for generation in range(15):
            when = rng.uniform(0, 0.05)
            killer = threading.Timer(when, _kill_a_ready_worker, (pool, rng, killed))
            killer.start()
            for algorithm, backend in zip(algorithms, (pool, here), strict=True):
                population = algorithm.ask()
                algorithm.tell(population, backend.evaluate(population, generation, 1, 100))
            killer.join()
        assert len(killed) >= 3, "the run should have lost workers"
        assert torch.equal(algorithms[0].mean, algorithms[1].mean)
    finally:
        pool.close()


def _pendulum_built_once(folder: str, fail: str):
    """A Pendulum factory that builds in the first process that calls it (its pid is written
    to the file ``built`` in ``folder``) and fails in any other: raises (``fail="raise"``) or
    ends the process with exit code 3 (``fail="exit"``)."""

    def make() -> gym.Env:
        marker = os.path.join(folder, "built")
        with contextlib.suppress(FileExistsError), open(marker, "x") as first:
            first.write(str(os.getpid()))
        if Path(marker).read_text() != str(os.getpid()):
            if fail == "exit":
                os._exit(3)
            raise RuntimeError("no simulator licence left")
        return gym.make("Pendulum-v1")

    return make


def _one_worker(tmp_path: Path, fail: str, built: bool) -> tuple[LocalWorkers, WorkerSpec]:
    if built:
        (tmp_path / "built").touch()
    spec = dataclasses.replace(
        _spec(tmp_path, once=True), env=_pendulum_built_once(str(tmp_path), fail)
    )
    return LocalWorkers(spec, None, 1), spec


@pytest.mark.parametrize(
    ("fail", "why"),
    [("raise", "RuntimeError: no simulator licence left"), ("exit", "exit code 3")],
)
def test_a_worker_that_cannot_start_before_any_was_ready_stops_the_evaluation(
    tmp_path, fail, why
) -> None:
    """Nothing has worked yet: the first worker that fails to build its evaluator, or dies
    building it, stops the evaluation with one line saying why."""
    pool, spec = _one_worker(tmp_path, fail, built=True)
    try:
        with pytest.raises(WorkerError, match=f"^worker 0 could not start: {why}"):
            pool.evaluate(_population(spec), 1, 1, 30)
        assert pool.failed_starts == 1
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("fail", "why", "starts"),
    [("exit", "exit code 3", MAX_KILLS), ("raise", "RuntimeError: no simulator licence left", 1)],
)
def test_after_a_worker_was_ready_dying_starters_are_replaced_and_failing_ones_stop(
    tmp_path, caplog, fail, why, starts
) -> None:
    """A worker was ready, then was killed. Replacements that die as they start are replaced
    until ``MAX_KILLS`` have died in a row; one whose evaluator fails to build stops the
    evaluation at once (building again would fail again). Either way: one line."""
    pool, spec = _one_worker(tmp_path, fail, built=False)
    try:
        population = _population(spec)
        pool.evaluate(population, 1, 1, 30)
        os.kill(pool.processes[next(iter(pool.live))].pid, signal.SIGKILL)
        with (
            caplog.at_level(logging.WARNING, logger="neuroes.shards"),
            pytest.raises(WorkerError, match=rf"^worker \d+ could not start: {why}$"),
        ):
            pool.evaluate(population, 1, 1, 30)
        assert pool.failed_starts == starts
        assert pool.scalars()["time/workers"] == 0  # its last replacement is starting
        retried = [m for m in caplog.messages if m.startswith("a starting worker died")]
        assert retried == [f"a starting worker died ({why}); another one starts"] * (starts - 1)
    finally:
        pool.close()


def test_an_idle_worker_that_died_is_replaced_and_the_evaluation_goes_on(tmp_path) -> None:
    spec = _spec(tmp_path, once=True)
    pool, population = LocalWorkers(spec, None, 2), _population(spec)
    try:
        while pool.starting:
            pool.evaluate(population, 1, 1, 30)
        idle = pool.idle[-1]  # one member, one shard: it goes to the first idle worker
        pool.processes[idle].kill()
        pool.processes[idle].join()
        one = Population(population.thetas[:1])
        assert_same(pool.evaluate(one, 1, 1, 30), InProcess(spec, None).evaluate(one, 1, 1, 30))
        assert idle not in pool.live and len(pool.live) == 2
    finally:
        pool.close()


def _pendulum_deadly_from_seed_77(folder: str):
    """A Pendulum factory whose episodes from seed 77 end their process at step 2 (exit code 5),
    after appending its process id to the file ``deaths`` in ``folder``."""

    class Deadly(gym.Wrapper):
        def reset(self, *, seed=None, options=None):
            self.t, self.deadly = 0, seed == 77
            return super().reset(seed=seed, options=options)

        def step(self, action):
            self.t += 1
            if self.deadly and self.t == 2:
                with open(os.path.join(folder, "deaths"), "a") as deaths:
                    deaths.write(f"{os.getpid()}\n")
                os._exit(5)
            return super().step(action)

    def make() -> gym.Env:
        return Deadly(gym.make("Pendulum-v1"))

    return make


def test_a_shard_that_takes_down_max_kills_workers_stops_the_evaluation_with_one_line(
    tmp_path, caplog
) -> None:
    """Each worker that dies with a shard is replaced and the shard goes to another, counted
    as a rerun, until the same shard has taken down ``MAX_KILLS`` workers."""
    spec = _spec(tmp_path, once=True)
    spec = dataclasses.replace(spec, env=_pendulum_deadly_from_seed_77(str(tmp_path)))
    pool = LocalWorkers(spec, None, 2, shards_per_worker=2)  # 8 members: shards of 2 rows
    rows = f"members 4-5 of {spec.env_name}"
    try:
        with (
            caplog.at_level(logging.WARNING, logger="neuroes.shards"),
            pytest.raises(
                WorkerError,
                match=f"^{re.escape(rows)} took down {MAX_KILLS} workers in one evaluation$",
            ),
        ):
            pool.evaluate(_population(spec, 8), np.r_[[1] * 5, 77, 1, 1], 1, 30)
        assert len((tmp_path / "deaths").read_text().split()) == MAX_KILLS
        warned = [
            r.getMessage() for r in caplog.records if "go to another worker" in r.getMessage()
        ]
        assert warned == [f"a worker died (exit code 5); {rows} go to another worker"] * (
            MAX_KILLS - 1
        )
        assert pool.scalars()["time/shards_rerun"] == MAX_KILLS
    finally:
        pool.close()


BROKEN_MODULE = """
import os
import time

import gymnasium as gym


class Broken(gym.Wrapper):
    \"\"\"CartPole whose episode from seed BROKEN_SEED raises (Faulty) or hangs (Hang).\"\"\"

    def __init__(self, hang):
        super().__init__(gym.make("CartPole-v1"))
        self.hang = hang

    def reset(self, *, seed=None, options=None):
        self.bad = seed == int(os.environ["BROKEN_SEED"])
        if self.bad and self.hang:
            time.sleep(600)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.bad:
            raise RuntimeError("simulator exploded")
        return super().step(action)


gym.register("Faulty-v0", entry_point=Broken, kwargs={"hang": False})
gym.register("Hang-v0", entry_point=Broken, kwargs={"hang": True})
"""


def _train_on_broken(tmp_path: Path, env_id: str, *options: str) -> subprocess.CompletedProcess:
    """``neuroes.train`` on 2 workers where the first evaluation episode of the mean policy in
    generation 2 (row 8 of 8 + 2) is broken."""
    (tmp_path / "broken_env.py").write_text(BROKEN_MODULE)
    environment = os.environ | {
        "PYTHONPATH": str(tmp_path),
        "BROKEN_SEED": str(stream_seed(0, 2, EVALUATION)),
    }
    argv = f"broken_env:{env_id} --workers 2 --popsize 8 --eval-episodes 2 --checkpoint-every 1"
    argv = [*argv.split(), *options, "--logdir", str(tmp_path / "run"), "--no-progress"]
    return subprocess.run(
        [sys.executable, "-m", "neuroes.train", *argv],
        capture_output=True, text=True, env=environment, timeout=120,
    )  # fmt: skip


def test_cli_stops_on_an_error_in_a_worker_with_one_line_and_the_checkpoint_intact(
    tmp_path,
) -> None:
    result = _train_on_broken(tmp_path, "Faulty-v0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: member 8, episode 0: environment raised RuntimeError: simulator exploded at "
        f"step 1; training stopped, {tmp_path / 'run' / 'checkpoint.pt'} holds generation 2"
    ]
    assert checkpoint.read(tmp_path / "run" / "checkpoint.pt")["generation"] == 2


def test_cli_stops_on_a_shard_that_always_hangs_with_one_line_and_the_checkpoint_intact(
    tmp_path,
) -> None:
    tick = time.monotonic()
    result = _train_on_broken(tmp_path, "Hang-v0", "--shard-timeout", "2")
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - tick < 60
    assert result.stderr.strip().splitlines()[-1] == (
        "error: members 8-9 of broken_env:Hang-v0 timed out 3 times (the last deadline was 2 s; "
        f"set it with --shard-timeout); training stopped, {tmp_path / 'run' / 'checkpoint.pt'} "
        "holds generation 2"
    )
    assert checkpoint.read(tmp_path / "run" / "checkpoint.pt")["generation"] == 2


def _descendants(pid: int) -> set[int]:
    """Live processes below ``pid`` (from /proc)."""
    parents = {}
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            stat = (folder / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat[0] != "Z":
            parents[int(folder.name)] = int(stat[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes are read in /proc")
def test_an_interrupt_mid_generation_stops_every_worker_and_resumes_bitwise(tmp_path) -> None:
    common = ["Pendulum-v1", "--popsize", "16", "--max-steps", "50", "--eval-episodes", "1",
              "--checkpoint-every", "1000", "--no-progress"]  # fmt: skip
    folder = tmp_path / "interrupted"
    command = [sys.executable, "-m", "neuroes.train", *common, "--workers", "2",
               "--generations", "100000", "--logdir", str(folder)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics, deadline = folder / "metrics.jsonl", time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    workers = _descendants(process.pid)
    assert len(workers) >= 2  # the fork server and its two workers
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C: to the learner and its workers
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    deadline = time.monotonic() + 5
    while alive := [pid for pid in workers if _alive(pid)]:
        assert time.monotonic() < deadline, f"worker processes left behind: {alive}"
        time.sleep(0.1)
    generation = checkpoint.read(folder / "checkpoint.pt")["generation"]
    total = str(generation + 2)
    resume = [
        sys.executable,
        "-m",
        "neuroes.train",
        "Pendulum-v1",
        "--no-progress",
        "--resume",
        str(folder / "checkpoint.pt"),
        "--generations",
        total,
        "--workers",
        "2",
    ]
    assert subprocess.run(resume, capture_output=True, timeout=120).returncode == 0
    whole = [sys.executable, "-m", "neuroes.train", *common, "--generations", total,
             "--logdir", str(tmp_path / "whole")]  # fmt: skip
    assert subprocess.run(whole, capture_output=True, timeout=120).returncode == 0
    a, b = (checkpoint.read(path / "checkpoint.pt") for path in (tmp_path / "whole", folder))
    assert torch.equal(get_flat(a["policy"]), get_flat(b["policy"]))
