"""Training on a cluster started with ``ray start --head`` on loopback, with token authentication.

The cluster lives in its own temporary folder, HOME included (its token never touches
``~/.ray``), and its processes, found by their environment, are killed after the tests.
"""

from __future__ import annotations

import os
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
from neuroes import train
from neuroes.agents import get_flat

PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
RAY = shutil.which("ray", path=PATH)  # first the one of this Python's Ray
ARGS = ["CartPole-v1", "--generations", "3", "--no-progress"]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # of a driver with RAY_AUTH_MODE=token and the token in HOME/.ray
    logs: Path  # worker-*.out: one per worker process, naming the actor it runs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes_with(entry: bytes) -> list[int]:
    """Live processes of this user whose environment holds ``entry`` (``NAME=value``)."""
    found = []
    for folder in Path("/proc").iterdir():
        try:
            environ = (folder / "environ").read_bytes().split(b"\0")
            zombie = (folder / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):  # not a process, gone, or another user's
            continue
        if entry in environ and not zombie:
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
        yield Cluster(f"127.0.0.1:{port}", env, root / "ray" / "session_latest" / "logs")
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
