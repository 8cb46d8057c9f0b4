"""Training on a cluster started with ``ray start --head`` on loopback, with token authentication.

The cluster lives in its own temporary folder, HOME included (its token never touches
``~/.ray``), and its processes, found by their environment, are killed after the tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import neuroes
from neuroes import checkpoint, train
from neuroes.agents import get_flat

PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
RAY = shutil.which("ray", path=PATH)  # first the one of this Python's Ray
ARGS = ["CartPole-v1", "--generations", "3", "--no-progress"]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # of a driver with RAY_AUTH_MODE=token and the token in HOME/.ray
    logs: Path  # worker-*.out: one per worker process, naming the actor it runs
    marker: bytes  # in the environment of every process of the cluster


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes_with(entry: bytes, title: bytes = b"") -> list[int]:
    """Live processes of this user whose environment holds ``entry`` (``NAME=value``) and
    whose command line holds ``title``."""
    found = []
    for folder in Path("/proc").iterdir():
        try:
            environ = (folder / "environ").read_bytes().split(b"\0")
            zombie = (folder / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
            command = (folder / "cmdline").read_bytes()
        except (OSError, IndexError):  # not a process, gone, or another user's
            continue
        if entry in environ and title in command and not zombie:
            found.append(int(folder.name))
    return found


def _kill_all(entry: bytes) -> None:
    """SIGKILL every process holding ``entry`` until none is left; they spawn no others once
    the raylet is gone."""
    deadline = time.monotonic() + 30
    while pids := _processes_with(entry):
        assert time.monotonic() < deadline, f"cluster processes still alive: {pids}"
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node with 2 CPUs on 127.0.0.1 with ``RAY_AUTH_MODE=token``."""
    if RAY is None:
        pytest.skip("the ray command line is not installed")
    if not sys.platform.startswith("linux"):
        pytest.skip("the cluster's processes are found in /proc")
    root = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths live under it
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env |= {"HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    env |= {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    marker = f"HOME={home}".encode()  # every process of the cluster inherits it
    port = _free_port()
    start = [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    start += ["--num-cpus", "2", "--temp-dir", str(root / "ray"), "--disable-usage-stats"]
    start += ["--include-dashboard", "false", "--dashboard-port", str(_free_port())]
    start += ["--ray-client-server-port", str(_free_port())]
    start += ["--dashboard-agent-listen-port", str(_free_port())]
    try:
        refused = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0
        assert "no authentication token was found" in refused.stderr
        subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, timeout=60)
        assert (home / ".ray" / "auth_token").is_file()
        started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        logs = root / "ray" / "session_latest" / "logs"
        yield Cluster(f"127.0.0.1:{port}", env, logs, marker)
    finally:
        _kill_all(marker)
        shutil.rmtree(root, ignore_errors=True)


def _train(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "neuroes.train", *ARGS, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _final_parameters(run_dir: Path) -> torch.Tensor:
    return get_flat(neuroes.load(run_dir / "checkpoint.pt").policy)


def test_training_on_the_cluster_equals_the_in_process_run(cluster, tmp_path) -> None:
    logdir = str(tmp_path / "ray")
    remote = _train(cluster.env, "--ray", cluster.address, "--workers", "2", "--logdir", logdir)
    assert remote.returncode == 0, remote.stderr[-2000:]
    actors = [log for log in cluster.logs.glob("worker-*.out") if "_Worker" in log.read_text()]
    assert len(actors) == 2
    assert train.main([*ARGS, "--logdir", str(tmp_path / "here")]) == 0
    assert torch.equal(_final_parameters(tmp_path / "ray"), _final_parameters(tmp_path / "here"))


@pytest.mark.parametrize(
    "with_mode, reason",
    [
        (False, "Authentication token is missing or incorrect"),
        (True, "Token authentication is enabled but no authentication token was found"),
    ],
    ids=["token-file-without-auth-mode", "auth-mode-without-token"],
)
def test_a_driver_without_the_token_gets_one_line_saying_what_to_do(
    cluster, tmp_path, with_mode, reason
) -> None:
    """Without RAY_AUTH_MODE=token Ray leaves the token file in HOME unused and the cluster
    refuses the driver; with it but no token Ray stops before trying."""
    env = cluster.env | {"RAY_gcs_server_port_wait_time_s": "1"}  # one try to connect, not 20
    if with_mode:
        env["HOME"] = str(tmp_path)
    else:
        del env["RAY_AUTH_MODE"]
    failed = _train(env, "--ray", cluster.address, "--logdir", str(tmp_path / "run"))
    assert (failed.returncode, failed.stdout) == (2, "")
    (line,) = failed.stderr.splitlines()
    assert line == (
        f"error: cannot reach a Ray cluster at '{cluster.address}': {reason}; run with "
        "RAY_AUTH_MODE=token and the cluster's token (copy the head node's ~/.ray/auth_token, "
        "or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
    )


ACTOR = b"ray::_Worker"  # the process title of a neuroes actor
PENDULUM = ["Pendulum-v1", "--popsize", "32", "--max-steps", "100", "--eval-episodes", "1",
            "--no-progress"]  # fmt: skip


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _wait_for(condition, process: subprocess.Popen, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.2)


def _still_running(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def _train_here(run_dir: Path, generations: int) -> None:
    argv = [*PENDULUM, "--generations", str(generations), "--logdir", str(run_dir)]
    assert train.main(argv) == 0


def test_actors_killed_at_random_change_nothing(cluster, tmp_path) -> None:
    """60 generations while a helper kills one of the run's actors every 2 seconds."""
    argv = [*PENDULUM, "--generations", "60", "--ray", cluster.address]
    command = [sys.executable, "-m", "neuroes.train", *argv, "--logdir", str(tmp_path / "ray")]
    with open(tmp_path / "driver.log", "w+") as log:
        process = subprocess.Popen(command, env=cluster.env, stdout=log, stderr=log)
        killed, rng = 0, random.Random(0)
        try:
            while _still_running(process, 2):
                # Only while another actor runs: a shard that loses 3 workers stops the run.
                if len(actors := _processes_with(cluster.marker, ACTOR)) >= 2:
                    os.kill(rng.choice(actors), signal.SIGKILL)
                    killed += 1
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, log.seek(0) or log.read()[-2000:]
    assert killed >= 2, "the run should have lost actors"
    assert sum(row["time/shards_rerun"] for row in _metrics(tmp_path / "ray")) >= 1
    _train_here(tmp_path / "here", 60)
    assert torch.equal(_final_parameters(tmp_path / "ray"), _final_parameters(tmp_path / "here"))


def _join_command(cluster: Cluster) -> list[str]:
    """``ray start --address`` of a second node with 2 CPUs on loopback.

    A node that may join a cluster (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1) replaces 127.0.0.1 in
    ``--address`` by the machine's network address, where the head does not listen; the command
    runs with that replacement turned off, so that the node stays on loopback.
    """
    shim = ("import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
            "from ray.scripts.scripts import main; main()")  # fmt: skip
    join = [sys.executable, "-c", shim, "start", "--address", cluster.address,
            "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
            "--temp-dir", str(cluster.logs.parent.parent), "--disable-usage-stats"]  # fmt: skip
    for option in ("node-manager", "object-manager", "dashboard-agent-listen",
                   "dashboard-agent-grpc", "metrics-export", "runtime-env-agent"):  # fmt: skip
        join += [f"--{option}-port", str(_free_port())]
    return join


def test_actors_follow_a_node_that_joins_and_leaves_and_stop_on_an_interrupt(
    cluster, tmp_path
) -> None:
    """The run's logged worker count goes 2 -> 4 -> 2 as a second node joins and is lost; Ctrl-C
    then leaves no actor behind and a checkpoint equal to an in-process run's."""
    run_dir, node = tmp_path / "elastic", {"NEUROES_TEST_NODE": "2"}
    argv = [
        *PENDULUM,
        "--ray",
        cluster.address,
        "--generations",
        "100000",
        "--logdir",
        str(run_dir),
    ]
    command = [sys.executable, "-m", "neuroes.train", *argv, "--checkpoint-every", "1000"]
    workers = lambda: [row["time/workers"] for row in _metrics(run_dir)]  # noqa: E731
    with open(tmp_path / "driver.log", "w+") as log:  # not pipes: nobody reads them meanwhile
        process = subprocess.Popen(command, env=cluster.env, stdout=log, stderr=log,
                                   start_new_session=True)  # fmt: skip
        try:
            _wait_for(lambda: workers()[-2:] == [2, 2], process, 180, "two generations on 2")
            joining = cluster.env | node | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
            joined = subprocess.run(_join_command(cluster), env=joining, stdout=log, stderr=log,
                                    timeout=180)  # fmt: skip
            assert joined.returncode == 0, log.seek(0) or log.read()[-2000:]
            _wait_for(lambda: workers()[-1] == 4, process, 180, "generation on both nodes")
            _kill_all(b"NEUROES_TEST_NODE=2")  # the node is lost
            _wait_for(lambda: workers()[-1] == 2, process, 180, "generation without the node")
            os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            _kill_all(b"NEUROES_TEST_NODE=2")
        assert process.returncode == 130, log.seek(0) or log.read()[-2000:]
    deadline = time.monotonic() + 20
    while left := _processes_with(cluster.marker, ACTOR):
        assert time.monotonic() < deadline, f"actors left behind: {left}"
        time.sleep(0.2)
    generation = checkpoint.read(run_dir / "checkpoint.pt")["generation"]
    _train_here(tmp_path / "here", generation)
    assert torch.equal(_final_parameters(run_dir), _final_parameters(tmp_path / "here"))
