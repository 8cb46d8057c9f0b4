"""Play a saved policy: in a window, or into a video file.

python -m neuroes.render runs/CartPole-v1-nes-.../best.pt --episodes 3
python -m neuroes.render best.pt --video cartpole.mp4     # or .gif; works headless

Frames are streamed to ffmpeg (``pip install "neuroes[video]"``) as they are drawn, so a video
of any length takes the memory of about one frame. On Linux without a display, MuJoCo is given
an offscreen OpenGL backend (EGL, else OSMesa) unless ``MUJOCO_GL`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from neuroes.checkpoint import Agent, load
from neuroes.cli import saved_policy_parser

# ffmpeg settings per suffix; a GIF frame gets a palette of its own colors, computed from that
# frame alone, so that ffmpeg never waits for (and keeps) the frames that follow.
FFMPEG = {
    ".mp4": {},
    ".gif": {
        "codec": "gif",
        "pix_fmt_out": "pal8",
        "quality": None,
        "output_params": [
            "-vf",
            "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1",
        ],
    },
}
GL_BACKENDS = ("egl", "osmesa")  # MUJOCO_GL values for rendering without a display
GL_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
with mujoco.Renderer(model, 8, 8) as renderer:
    renderer.update_scene(mujoco.MjData(model))
    renderer.render()
"""
GL_HINT = (
    "MuJoCo found no OpenGL backend to render without a display: install EGL or OSMesa "
    "(Debian: apt-get install libegl1 or libosmesa6), or set MUJOCO_GL"
)


def play(
    agent: Agent,
    episodes: int = 1,
    seed: int = 0,
    video: str | Path | None = None,
    window: bool = False,
) -> tuple[list[float], int]:
    """Play ``episodes`` episodes with seeds ``seed``, ``seed + 1``, ...

    Frames go to ``video`` (one after each reset and one after each step), or to a window when
    ``window`` is set, or nowhere. Returns the episodes' returns and the frames written.
    """
    if window and video is None and _headless():
        raise ValueError("no display to open a window on; write a video (--video out.mp4 or .gif)")
    writer = VideoWriter(video) if video is not None else None
    if writer is not None and _headless():
        offscreen_gl()
    env = agent.make_env(render_mode="rgb_array" if writer else "human" if window else None)
    if writer is not None:
        writer.fps = env.metadata.get("render_fps", writer.fps)
    returns = []
    try:
        for episode in range(episodes):
            observation, _ = env.reset(seed=seed + episode)
            agent.reset()
            total, done = 0.0, False
            while True:
                if writer is not None:
                    writer.write(_frame(env))
                if done:
                    break
                observation, reward, terminated, truncated, _ = env.step(agent.act(observation))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
        if writer is not None:
            writer.close()
    return returns, writer.frames if writer is not None else 0


class VideoWriter:
    """Streams RGB frames into an .mp4 or .gif through ffmpeg, one frame in memory at a time.

    ``fps`` (frames per second) may be changed until the first frame is written.
    """

    def __init__(self, path: str | Path, fps: float = 30) -> None:
        self.path = Path(path)
        if self.path.suffix not in FFMPEG:
            raise ValueError(f"video must end in {' or '.join(FFMPEG)}, got {str(path)!r}")
        if importlib.util.find_spec("imageio_ffmpeg") is None:
            raise ValueError('writing videos needs imageio-ffmpeg: pip install "neuroes[video]"')
        self.fps, self.stream, self.frames = fps, None, 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 frame; the first one sets the video's size."""
        if self.stream is None:
            import imageio_ffmpeg

            height, width = frame.shape[:2]
            self.stream = imageio_ffmpeg.write_frames(
                str(self.path),
                (width, height),
                fps=self.fps,
                macro_block_size=1,
                ffmpeg_log_level="error",
                **FFMPEG[self.path.suffix],
            )
            self.stream.send(None)
        self.stream.send(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self) -> None:
        """Finish the file (ffmpeg writes its trailer)."""
        if self.stream is not None:
            self.stream.close()


def _headless() -> bool:
    return sys.platform == "linux" and not os.environ.get("DISPLAY")


def offscreen_gl() -> str | None:
    """The ``MUJOCO_GL`` backend MuJoCo renders with on a machine without a display.

    When ``MUJOCO_GL`` is unset and MuJoCo is installed, sets it to the first of EGL and OSMesa
    that renders a frame here; each is tried in a fresh process, because a process cannot
    switch backends once OpenGL is loaded. Returns None when MuJoCo is missing or neither
    backend works.
    """
    if os.environ.get("MUJOCO_GL") or importlib.util.find_spec("mujoco") is None:
        return os.environ.get("MUJOCO_GL")
    for backend in GL_BACKENDS:
        try:
            probe = subprocess.run(
                [sys.executable, "-c", GL_PROBE],
                env=os.environ | {"MUJOCO_GL": backend},
                capture_output=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:  # a driver that hangs does not work either
            continue
        if probe.returncode == 0:
            os.environ["MUJOCO_GL"] = backend
            return backend
    return None


def _frame(env) -> np.ndarray:
    """The environment's frame; without a display, MuJoCo's failure to find OpenGL is one line."""
    if not _headless():
        return np.asarray(env.render())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="glfw")  # its search for a display
            return np.asarray(env.render())
    except Exception as error:
        if type(error).__module__.partition(".")[0] == "mujoco":
            raise ValueError(GL_HINT) from None
        raise


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    cli = saved_policy_parser("neuroes.render", __doc__, episodes=1)
    cli.add_argument("--video", help="write the frames to this .mp4 or .gif instead of a window")
    args = cli.parse_args(argv)
    try:
        if args.episodes < 1:
            raise ValueError(f"episodes must be positive, got {args.episodes}")
        agent = load(args.checkpoint, trust=args.trust)
        returns, frames = play(agent, args.episodes, args.seed, args.video, not args.video)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for episode, total in enumerate(returns):
        print(f"episode {episode}: return {total:.2f}")
    print(f"mean return {np.mean(returns):.2f} over {len(returns)} episodes")
    if args.video:
        print(f"wrote {frames} frames to {args.video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
