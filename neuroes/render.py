"""Play a saved policy: in a window, or into a video file.

python -m neuroes.render runs/CartPole-v1-nes-.../best.pt --episodes 3
python -m neuroes.render best.pt --video cartpole.mp4     # or .gif; works headless
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from neuroes.checkpoint import Agent, load

VIDEO_SUFFIXES = (".mp4", ".gif")


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
    if video is not None and Path(video).suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"video must end in {' or '.join(VIDEO_SUFFIXES)}, got {str(video)!r}")
    mode = "rgb_array" if video else "human" if window else None
    env = agent.make_env(render_mode=mode)
    writer = _video_writer(Path(video), env.metadata.get("render_fps", 30)) if video else None
    returns, frames = [], 0
    try:
        for episode in range(episodes):
            observation, _ = env.reset(seed=seed + episode)
            agent.reset()
            total, done = 0.0, False
            while True:
                if writer is not None:
                    writer.append_data(np.asarray(env.render()))
                    frames += 1
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
    return returns, frames


def _video_writer(path: Path, fps: int):
    import imageio.v2 as imageio

    if path.suffix == ".gif":
        return imageio.get_writer(path, mode="I", duration=1000 / fps, loop=0)
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise ValueError(
            "writing .mp4 needs imageio-ffmpeg: pip install 'neuroes[video]', or use a .gif"
        ) from None
    return imageio.get_writer(path, fps=fps, macro_block_size=1)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m neuroes.render", description=__doc__.splitlines()[0]
    )
    cli.error = lambda message: cli.exit(2, f"{cli.prog}: error: {message}\n")
    cli.add_argument("checkpoint", help="a checkpoint written by training (best.pt, checkpoint.pt)")
    cli.add_argument("--episodes", type=int, default=1, help="episodes to play (default: 1)")
    cli.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    cli.add_argument("--video", help="write the frames to this .mp4 or .gif instead of a window")
    cli.add_argument(
        "--trust",
        action="store_true",
        help="also load a checkpoint that holds code (a user-defined policy, or the pickle "
        "format of neuroes 0.1); only for files from a source you trust",
    )
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
