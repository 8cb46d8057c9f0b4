"""Never lose a run: bad input, reused folders, resume mismatches, divergence, interrupts."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from neuroes import checkpoint, train
from neuroes.agents import get_flat
from neuroes.algorithms import NES
from neuroes.config import Config

QUICK = ["--popsize", "8", "--eval-episodes", "1", "--max-steps", "50", "--no-progress"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "neuroes.train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> Path:
    """A finished run of 2 generations whose files no failed command may touch."""
    folder = tmp_path_factory.mktemp("previous") / "run"
    done = _cli("CartPole-v1", "--generations", "2", "--target-return", "inf",
                "--logdir", str(folder), *QUICK)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


def _corrupt(tmp: Path) -> str:
    (tmp / "corrupt.pt").write_bytes(b"PK\x03\x04" + bytes(64))
    return str(tmp / "corrupt.pt")


# (arguments, with {previous} for the previous run's folder, expected exit code, message)
BAD = [
    (["Nope-v0"], 2, "unknown environment 'Nope-v0'"),
    (["CartPole-v1", "--popsize", "0"], 2, "popsize must be a positive number"),
    (["CartPole-v1", "--popsize", "7"], 2, "popsize must be even"),
    (["CartPole-v1", "--popsize", "100000000"], 2, "GiB for the population's vectors and state"),
    (["CartPole-v1", "--lr", "inf"], 2, "lr must be a positive number, got inf"),
    (["CartPole-v1", "--lr", "nan"], 2, "lr must be a positive number, got nan"),
    (["CartPole-v1", "--weight-decay", "nan"], 2, "weight_decay must be a finite number"),
    (["CartPole-v1", "--algo", "maxvar", "--fitness-weight", "nan"], 2, "fitness_weight must"),
    (["CartPole-v1", "--hidden", "-3"], 2, "hidden layer sizes must be positive integers"),
    (["CartPole-v1", "--hidden", "0"], 2, "hidden layer sizes must be positive integers"),
    (["CartPole-v1", "--algo", "nes", "--parents", "5"], 2, "--parents is an option of ga"),
    (["CartPole-v1", "--lr", "1e308"], 3, "diverged at generation 1: the mean has non-finite"),
    (["CartPole-v1", "--algo", "maxvar", "--descriptor", "none"], 2,
     "error: this environment has no behavior descriptor; evolvability objectives need one "
     "(pass a descriptor function, or train with --algo nes)"),
    (["CartPole-v1", "--logdir", "{previous}"], 2, "already holds a run; continue it with"),
    (["CartPole-v1", "--resume", "{previous}/checkpoint.pt", "--hidden", "8"], 2,
     "cannot resume"),
    (["CartPole-v1", "--resume", "{previous}/checkpoint.pt", "--algo", "ga"], 2,
     "--algo ga (saved: nes)"),
    (["Pendulum-v1", "--resume", "{previous}/checkpoint.pt"], 2,
     "the environment Pendulum-v1 (saved: CartPole-v1)"),
    (["CartPole-v1", "--resume", "{previous}/checkpoint.pt"], 2,
     "already at generation 2; pass --generations M (M > 2)"),
    (["CartPole-v1", "--resume", "{corrupt}"], 2, "is corrupt or truncated"),
]  # fmt: skip
if not torch.cuda.is_available():
    BAD.append((["CartPole-v1", "--device", "cuda"], 2, "device 'cuda' is not available"))


@pytest.mark.parametrize("argv, code, message", BAD, ids=[" ".join(case[0]) for case in BAD])
def test_bad_input_is_one_line_and_touches_nothing(
    argv, code, message, previous, tmp_path, monkeypatch, capsys
):
    """Through ``train.main``, whose code ``python -m neuroes.train`` exits with (the other
    tests here start it as a process), in this process so that every failure path is seen
    by coverage; an exception escaping ``main`` fails the test as a traceback would."""
    before = _files(previous)
    names = {"previous": str(previous), "corrupt": _corrupt(tmp_path)}
    argv = [arg.format(**names) for arg in argv]
    if "--logdir" not in argv and "--resume" not in argv:
        argv += ["--logdir", str(tmp_path / "new")]
    monkeypatch.chdir(tmp_path)
    returned = train.main([*QUICK, *argv])  # the case's own values come last and win
    stderr = capsys.readouterr().err
    assert returned == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert _files(previous) == before
    assert not (tmp_path / "new").exists(), "a failed run leaves no folder behind"


def test_overwrite_replaces_the_run_and_the_default_folder_never_collides(previous, tmp_path):
    replaced = tmp_path / "replaced"
    _files(previous)  # the fixture's run exists
    for _ in range(2):
        done = _cli("CartPole-v1", "--generations", "1", "--logdir", str(replaced),
                    "--overwrite", *QUICK)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert len(list(replaced.glob("events.out.tfevents.*"))) == 1
    for _ in range(2):  # two runs started within the same second
        assert _cli("CartPole-v1", "--generations", "1", *QUICK, cwd=tmp_path).returncode == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_divergence_stops_at_the_first_non_finite_generation(tmp_path, monkeypatch):
    tell = NES.tell

    def diverging(self, population, results):
        scalars = tell(self, population, results)
        if self.optimizer.state[self.mu]["step"] == 3:
            with torch.no_grad():
                self.mu[0] = math.inf
        return scalars

    monkeypatch.setattr(NES, "tell", diverging)
    config = Config("CartPole-v1", popsize=8, generations=10, checkpoint_every=1,
                    max_steps=50, target_return=math.inf, progress=False,
                    logdir=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(train.RunStopped, match="diverged at generation 3.*holds generation 2"):
        train.train(config)
    saved = checkpoint.read(tmp_path / "run" / "checkpoint.pt")
    assert saved["generation"] == 2 and torch.isfinite(get_flat(saved["policy"])).all()


def _scalar_steps(run_dir: Path) -> list[int]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.step for event in events.Scalars("eval/return")]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_keeps_the_last_completed_generation(signal_number, tmp_path):
    """No periodic checkpoint: the interrupt writes the only one. Resumed for 3 more
    generations it ends where an uninterrupted run of as many generations ends, and TensorBoard
    and metrics.jsonl hold every generation once."""
    common = ["CartPole-v1", "--target-return", "inf", *QUICK, "--checkpoint-every", "1000"]
    folder = tmp_path / "interrupted"
    command = [sys.executable, "-m", "neuroes.train", *common, "--generations", "100000",
               "--logdir", str(folder)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    metrics, deadline = folder / "metrics.jsonl", time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal_number, stderr
    generation = checkpoint.read(folder / "checkpoint.pt")["generation"]
    assert stderr.strip() == f"interrupted; {folder}/checkpoint.pt holds generation {generation}"
    assert generation >= 3
    total = str(generation + 3)
    resumed = _cli("CartPole-v1", "--resume", str(folder / "checkpoint.pt"), "--generations", total)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    assert _cli(*common, "--generations", total, "--logdir", str(whole)).returncode == 0
    a, b = (checkpoint.read(path / "checkpoint.pt") for path in (whole, folder))
    assert torch.equal(get_flat(a["policy"]), get_flat(b["policy"]))
    assert torch.equal(a["normalizer"].total, b["normalizer"].total)
    every = list(range(1, int(total) + 1))
    assert _scalar_steps(folder) == every
    assert [json.loads(line)["generation"] for line in metrics.read_text().splitlines()] == every


def test_a_script_without_the_main_guard_is_told_about_it(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "from neuroes.config import Config\n"
        "from neuroes.train import train\n"
        "train(Config('CartPole-v1', generations=1, workers=2, progress=False, "
        f"logdir={str(tmp_path / 'run')!r}))\n"
    )
    failed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert failed.returncode == 1
    assert 'under `if __name__ == "__main__":`' in failed.stderr.strip().splitlines()[-1]


def test_an_interrupt_while_a_generation_is_logged_waits_for_its_checkpoint(tmp_path, monkeypatch):
    """The generation whose log line is written is the one the interrupt saves: no log line
    outruns the checkpoint (a resumed run would log that generation twice)."""
    from neuroes.monitor import Monitor

    log = Monitor.log

    def log_then_interrupt(self, generation, scalars):
        log(self, generation, scalars)
        if generation == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives before the generation is kept

    monkeypatch.setattr(Monitor, "log", log_then_interrupt)
    folder = tmp_path / "run"
    with pytest.raises(train.Interrupted):
        train.train(Config("CartPole-v1", generations=5, popsize=8, max_steps=20,
                           target_return=math.inf, progress=False, logdir=str(folder)))  # fmt: skip
    assert checkpoint.read(folder / "checkpoint.pt")["generation"] == 2
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 2
