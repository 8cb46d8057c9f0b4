"""Rendering into videos: frames streamed in bounded memory, offscreen OpenGL for MuJoCo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import pytest
import torch

from neuroes import checkpoint
from neuroes.agents import make_policy
from neuroes.render import GL_HINT

MEBIBYTE = 2**20
CARTPOLE_FRAME = 400 * 600 * 3  # bytes of one rgb_array frame


def _linear_checkpoint(path: Path, env_id: str, env_kwargs: dict, weights=None) -> Path:
    """A linear policy saved as training would; ``weights`` set the last output's row."""
    env = gym.make(env_id)
    policy = make_policy("linear", env.observation_space, env.action_space)
    if weights is not None:
        with torch.no_grad():
            policy.layers[0].weight.zero_()
            policy.layers[0].bias.zero_()
            policy.layers[0].weight[-1] = torch.tensor(weights)
    payload = {"env_id": env_id, "env_kwargs": env_kwargs, "config": {}, "generation": 0}
    checkpoint.save(path, payload | {"policy": policy, "normalizer": None})
    return path


def _render(
    argv: list[str], cwd: Path, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, int]:
    """``python -m neuroes.render ARGV`` in a fresh process in ``cwd`` (where MuJoCo writes its
    log), and the largest peak resident set (bytes) of that process and its own children
    (ffmpeg, the OpenGL probe)."""
    script = (
        "import resource, subprocess, sys;"
        "done = subprocess.run([sys.executable, '-m', 'neuroes.render', *sys.argv[1:]]);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
        "sys.exit(done.returncode)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=cwd, env=env
    )
    *lines, peak = run.stderr.strip().splitlines()
    run.stderr = "\n".join(line for line in lines if "XDG_RUNTIME_DIR" not in line)
    return run, int(peak) * 1024  # Linux reports kibibytes


def test_a_gif_of_ten_cartpole_episodes_is_streamed_in_bounded_memory(tmp_path) -> None:
    """10 episodes of 80 steps are 810 frames of 600x400, 556 MiB if held until the end as
    imageio's pillow GIF writer did (5.5 GB for 10 episodes of 500 steps). Streamed through
    ffmpeg, the peak resident set was 246 MiB (the render process, most of it torch; ffmpeg
    itself about 50 MiB); the bound, 400 MiB, is well below the 790 MiB that holding every
    frame in that process would take."""
    balancing = [0.0, 0.0, 1.0, 0.5]  # push toward the side the pole falls to: 500 steps
    path = _linear_checkpoint(
        tmp_path / "cartpole.pt", "CartPole-v1", {"max_episode_steps": 80}, balancing
    )
    video = tmp_path / "cartpole.gif"
    run, peak = _render([str(path), "--episodes", "10", "--video", str(video)], tmp_path)
    assert run.returncode == 0, run.stderr
    frames = 10 * (80 + 1)  # one per step and one per reset
    assert f"wrote {frames} frames" in run.stdout
    assert iio.improps(video).shape == (frames, 400, 600, 3)
    assert peak < 400 * MEBIBYTE < frames * CARTPOLE_FRAME, f"peak {peak / MEBIBYTE:.0f} MiB"


def _headless_environ() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}


def test_mujoco_renders_without_a_display(tmp_path) -> None:
    pytest.importorskip("mujoco")
    path = _linear_checkpoint(
        tmp_path / "pendulum.pt", "InvertedPendulum-v5", {"max_episode_steps": 3}
    )
    video = tmp_path / "pendulum.gif"
    run, _ = _render([str(path), "--video", str(video)], tmp_path, _headless_environ())
    if run.returncode == 2 and GL_HINT in run.stderr:
        pytest.skip("no offscreen OpenGL backend works here (EGL or OSMesa)")
    assert run.returncode == 0, run.stderr
    assert iio.improps(video).shape[0] == 4


def test_without_an_offscreen_backend_mujoco_rendering_says_what_to_install(tmp_path) -> None:
    pytest.importorskip("mujoco")
    path = _linear_checkpoint(
        tmp_path / "pendulum.pt", "InvertedPendulum-v5", {"max_episode_steps": 3}
    )
    script = (
        "import sys; from neuroes import render; render.GL_BACKENDS = ();"
        "sys.exit(render.main(sys.argv[1:]))"
    )
    argv = [str(path), "--video", str(tmp_path / "pendulum.mp4")]
    run = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_headless_environ(),
    )
    lines = [line for line in run.stderr.splitlines() if "XDG_RUNTIME_DIR" not in line]
    assert run.returncode == 2 and lines == [f"error: {GL_HINT}"], run.stderr
