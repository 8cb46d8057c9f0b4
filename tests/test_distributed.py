"""Sharded evaluation on local worker processes and on a local Ray cluster.

Every backend must reproduce the single-process evaluation bitwise, survive a worker killed
mid-evaluation, and report an environment error with the member's row in the whole population.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroes import checkpoint, train
from neuroes.agents import ObservationNormalizer, get_flat, make_policy
from neuroes.algorithms import NES
from neuroes.config import Config
from neuroes.noise import NoiseTable
from neuroes.population import Population
from neuroes.rollout import RolloutError, Rollouts
from neuroes.shards import ShardEvaluator, WorkerError, WorkerSpec, split
from neuroes.workers import InProcess, LocalWorkers, answer, encode, make_backend

FIELDS = ("returns", "lengths", "behaviors", "steps", "observation_sum", "observation_sum_sq")


def assert_same(a: Rollouts, b: Rollouts) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _make_pool(request, spec: WorkerSpec, normalizer, **kwargs):
    """Two workers of the kind ``request.param``: local processes or Ray actors."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        from neuroes.distributed import RayWorkers

        return RayWorkers(spec, normalizer, 2, **kwargs)
    return LocalWorkers(spec, normalizer, 2, **kwargs)


@pytest.fixture(params=["local", "ray"])
def pool(request):
    """Makes two-worker pools of the parametrized kind and closes them after the test."""
    made = []

    def make(spec: WorkerSpec, normalizer=None):
        made.append(_make_pool(request, spec, normalizer))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


def _policy(env_id: str):
    env = gym.make(env_id)
    torch.manual_seed(0)
    return make_policy("mlp", env.observation_space, env.action_space, hidden=(16,))


def _normalizer(env_id: str) -> ObservationNormalizer:
    obs = np.stack([gym.make(env_id).observation_space.sample() for _ in range(50)]) * 0.1
    normalizer = ObservationNormalizer(obs.shape[1])
    normalizer.update(*ObservationNormalizer.statistics(obs))
    return normalizer


@pytest.mark.parametrize("env_id, max_steps", [("CartPole-v1", None), ("Pendulum-v1", 60)])
def test_shards_equal_the_single_process_evaluation(pool, env_id, max_steps) -> None:
    policy, normalizer = _policy(env_id), _normalizer(env_id)
    algorithm = NES(get_flat(policy), 0.5, popsize=22, lr=0.1)
    seeded = algorithm.ask().with_mean(algorithm.mean, 3)  # the mean's rows have sign 0
    seeds = np.r_[np.full(22, 5), [100, 102, 104]]
    spec = WorkerSpec(env_id, policy)
    expected = InProcess(spec, normalizer).evaluate(seeded, seeds, 2, max_steps)
    assert len(np.unique(expected.returns)) > 3, "members should differ"
    backend = pool(spec, normalizer)
    assert_same(backend.evaluate(seeded, seeds, 2, max_steps), expected)
    sent = getattr(backend, "bytes_sent", None)
    vectors = Population(seeded.thetas)  # the fallback of populations that are not seeded
    assert_same(backend.evaluate(vectors, seeds, 2, max_steps), expected)
    if sent is not None:
        assert backend.bytes_sent - sent > sent, "seeds should cost less than vectors"


def test_training_with_two_workers_gives_the_same_run(tmp_path, request) -> None:
    def run(name: str, **backend) -> tuple[train.Summary, dict]:
        config = Config(
            "CartPole-v1", logdir=str(tmp_path / name), progress=False, seed=1, popsize=16,
            generations=6, target_return=150.0, confirm_episodes=12, **backend,
        )  # fmt: skip
        summary = train.train(config)
        return summary, checkpoint.read(summary.run_dir / "checkpoint.pt")

    one, saved = run("one")
    assert one.solved and one.generations < 6  # so the runs compare a confirmation as well
    backends = [{"workers": 2}]
    if importlib.util.find_spec("ray") is not None:
        request.getfixturevalue("ray_session")
        backends.append({"workers": 2, "ray": "auto"})
    for backend in backends:
        summary, other = run("-".join(map(str, backend.values())), **backend)
        assert (summary.generations, summary.solved) == (one.generations, one.solved)
        assert torch.equal(saved["algorithm"]["mu"], other["algorithm"]["mu"])
        assert torch.equal(saved["normalizer"].total, other["normalizer"].total)
        assert saved["env_steps"] == other["env_steps"]


@pytest.mark.parametrize("seeded", [True, False])
def test_a_worker_answers_each_shard_until_its_pipe_closes(seeded) -> None:
    """The worker's side in this process: the answers to a broadcast and its shards join into
    the single-process evaluation; the noise table is the learner's, mapped, not rebuilt."""
    policy, normalizer = _policy("CartPole-v1"), _normalizer("CartPole-v1")
    population = NES(get_flat(policy), 0.5, popsize=10, lr=0.1).ask()
    if not seeded:
        population = Population(population.thetas)
    seeds = np.arange(10) * 3
    spec = WorkerSpec("CartPole-v1", policy)
    broadcast, shards = split(population, seeds, 2, 30, normalizer, shard_size=4)
    table = values = None  # the learner's noise table values, under another table's key:
    if seeded:
        table, values = NoiseTable(population.table.size, seed=11), population.table.values()
    ours, theirs = multiprocessing.Pipe()
    worker = threading.Thread(target=answer, args=(pickle.dumps(spec), theirs, table, values))
    worker.start()
    try:
        assert ours.poll(60) and pickle.loads(ours.recv_bytes()) == ("ready", os.getpid())
        ours.send_bytes(encode(("publish", broadcast)))
        parts = []
        for shard in shards:
            ours.send_bytes(encode(("shard", shard)))
            assert ours.poll(60)
            status, rollouts = pickle.loads(ours.recv_bytes())
            assert status == "done", rollouts
            parts.append(rollouts)
    finally:
        ours.close()
        worker.join(timeout=60)
    assert not worker.is_alive(), "the worker should stop when its pipe closes"
    assert_same(
        Rollouts.concatenate(parts),
        InProcess(spec, normalizer).evaluate(population, seeds, 2, 30),
    )
    assert not seeded or table.values() is values


def test_a_worker_that_cannot_build_its_evaluator_says_why() -> None:
    ours, theirs = multiprocessing.Pipe()
    spec = pickle.dumps(WorkerSpec("NoSuchEnv-v0", _policy("CartPole-v1")))
    answer(spec, theirs, None, None)
    status, error = pickle.loads(ours.recv_bytes())
    assert status == "failed" and isinstance(error, WorkerError)
    assert str(error).startswith("ValueError: unknown environment 'NoSuchEnv-v0'")


def _trap_pendulum(folder: str):
    """A Pendulum factory whose episodes started from seed 99 raise at step 3, and which, once
    the file ``armed`` exists in ``folder``, stalls at its first step after writing its process
    id to ``stalled`` (only once anywhere: that file is created exclusively)."""

    class Trap(gym.Wrapper):
        def reset(self, *, seed=None, options=None):
            self.t, self.bad = 0, seed == 99
            return super().reset(seed=seed, options=options)

        def step(self, action):
            self.t += 1
            if self.bad and self.t == 3:
                raise RuntimeError("simulator exploded")
            if os.path.exists(os.path.join(folder, "armed")):
                flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
                try:
                    handle = os.open(os.path.join(folder, "stalled"), flags)
                except FileExistsError:
                    return super().step(action)
                os.write(handle, str(os.getpid()).encode())
                os.close(handle)
                time.sleep(120)
            return super().step(action)

    return lambda: Trap(gym.make("Pendulum-v1"))


@pytest.fixture(scope="module", params=["local", "ray"])
def traps(request, tmp_path_factory):
    """A two-worker pool of each kind on the trap Pendulum, shards of 2 rows for 8 members."""
    folder = tmp_path_factory.mktemp("traps")
    spec = WorkerSpec(_trap_pendulum(str(folder)), _policy("Pendulum-v1"))
    backend = _make_pool(request, spec, None, shards_per_worker=2)
    try:
        yield backend, spec, folder
    finally:
        backend.close()


def _kill_when_stalled(marker: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pid = marker.read_text() if marker.exists() else ""
        if pid:
            os.kill(int(pid), signal.SIGKILL)
            return
        time.sleep(0.05)


def test_a_killed_worker_is_replaced_and_its_shard_evaluated_elsewhere(traps) -> None:
    backend, spec, folder = traps
    population = NES(get_flat(spec.policy), 0.5, popsize=16, lr=0.1).ask()
    (folder / "armed").touch()
    killer = threading.Thread(target=_kill_when_stalled, args=(folder / "stalled",))
    killer.start()
    try:
        result = backend.evaluate(population, 3, 1, 40)
    finally:
        killer.join()
    assert (folder / "stalled").read_text() != str(os.getpid())
    assert_same(result, InProcess(spec, None).evaluate(population, 3, 1, 40))


def test_an_environment_error_names_the_member_in_the_whole_population(traps) -> None:
    backend, spec, _ = traps
    population = Population(NES(get_flat(spec.policy), 0.5, popsize=8, lr=0.1).ask().thetas)
    message = "member 5, episode 0: environment raised RuntimeError: simulator exploded at step 3"
    with pytest.raises(RolloutError, match=message):  # member 5 is row 1 of the shard 4-5
        backend.evaluate(population, np.r_[[1] * 5, 99, 1, 1], 1, 20)
    # The backend stays usable: the abandoned evaluation's results are dropped.
    good = backend.evaluate(population, 1, 1, 20)
    assert_same(good, InProcess(spec, None).evaluate(population, 1, 1, 20))


def test_a_shard_reports_errors_with_the_global_row(tmp_path) -> None:
    threads = torch.get_num_threads()
    try:
        worker = ShardEvaluator(WorkerSpec(_trap_pendulum(str(tmp_path)), _policy("Pendulum-v1")))
        assert torch.get_num_threads() == 1, "a worker evaluates on one thread"
    finally:
        torch.set_num_threads(threads)
    assert worker.evaluator.threads == 1
    population = Population(
        NES(get_flat(worker.evaluator.policy), 0.5, popsize=8, lr=0.1).ask().thetas
    )
    broadcast, shards = split(population, np.r_[[1] * 5, 99, 1, 1], 1, 20, None, shard_size=4)
    worker.publish(broadcast)
    assert worker.run(shards[0])[0] == "done"
    status, error = worker.run(shards[1])  # member 5 is row 1 of the shard 4-7
    assert status == "failed" and isinstance(error, RolloutError)
    assert str(error).startswith("member 5, episode 0: environment raised RuntimeError")
    wrong = dataclasses.replace(shards[0], thetas=np.zeros((4, 3), np.float32))
    status, error = worker.run(wrong)
    assert status == "failed" and type(error) is WorkerError
    assert str(error).startswith("worker raised RuntimeError: shape")


def test_ray_missing_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    monkeypatch.delitem(sys.modules, "neuroes.distributed", raising=False)
    run_dir = tmp_path / "run"
    assert train.main(["CartPole-v1", "--ray", "auto", "--logdir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: --ray needs Ray: pip install "neuroes[ray]"'
    assert not run_dir.exists()


def test_make_backend_picks_the_backend_with_its_settings(ray_session, monkeypatch, caplog):
    """One worker is this process; more are local processes, at most one per core; with Ray,
    ``workers`` caps the actors (1: no cap, one per CPU of the 2-CPU cluster)."""
    spec, table = WorkerSpec("CartPole-v1", _policy("CartPole-v1")), NoiseTable(2**16, seed=3)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert type(make_backend(spec, None)) is InProcess
    backends = []
    with caplog.at_level(logging.WARNING, logger="neuroes.workers"):
        backends.append(make_backend(spec, None, 2, table=table, shard_timeout=7.0))
        assert not caplog.records  # as many workers as cores: nothing to say
        backends.append(make_backend(spec, None, 5))
    assert caplog.messages == ["--workers 5 is more than the 2 cores here; using 2"]
    backends.append(make_backend(spec, None, 1, ray="auto"))
    backends.append(make_backend(spec, None, 2, ray="auto", table=table, shard_timeout=7.0))
    try:
        local, capped_local, uncapped, capped = backends
        assert type(local) is LocalWorkers and local.workers == 2 == capped_local.workers
        assert local.table[0] is table and local.shard_timeout == 7.0
        assert len(uncapped.live) == 2 and uncapped.workers > 2
        assert capped.workers == 2 and capped.table is table and capped.shard_timeout == 7.0
    finally:
        for backend in backends:
            backend.close()
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one core
    assert type(make_backend(spec, None, 2)) is InProcess


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        Config("CartPole-v1", workers=0).resolved()
