"""Time to solve CartPole-v1: neuroes NES with its CLI defaults against evotorch's PGPE.

    python benchmarks/cartpole_solve.py                 # 5 seeds each
    python benchmarks/cartpole_solve.py --seeds 2 --skip-evotorch

"Solved" means the mean policy reaches 475 on 10 evaluation episodes, then again on 100 fresh
ones. Both sides pay for the same evaluations inside their timed loop: neuroes runs them as
rows of its batched evaluator; evotorch's centre is evaluated with a native CartPole vector
environment. Wall seconds exclude interpreter start-up and imports; the whole-command time of
``python -m neuroes.train CartPole-v1`` (start-up included) is printed separately.

evotorch side, as run: ``VecGymNE("CartPole-v1", "Linear(obs_length, 16) >> Tanh() >>
Linear(16, act_length)", observation_normalization=True)`` with ``PGPE(popsize=100,
center_learning_rate=0.1, stdev_learning_rate=0.1, radius_init=0.27, optimizer="clipup",
optimizer_config={"max_speed": 0.2})``, in the main process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch

from neuroes.config import Config
from neuroes.train import train

TARGET = 475.0


def neuroes_run(seed: int, logdir: str) -> dict:
    summary = train(Config(env_id="CartPole-v1", seed=seed, progress=False, logdir=logdir))
    return {
        "solved": summary.solved,
        "seconds": summary.wall_time,
        "generations": summary.generations,
        "env_steps": summary.env_steps,
    }


def mean_return(policy: torch.nn.Module, episodes: int, seed: int) -> float:
    """Mean first-episode return of ``policy`` on a CartPole vector environment."""
    env = gym.make_vec("CartPole-v1", episodes, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=seed)
    total, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        with torch.no_grad():
            actions = policy(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()
        obs, reward, terminated, truncated, _ = env.step(actions)
        total += reward * running
        running &= ~(terminated | truncated)
    return float(total.mean())


def evotorch_run(seed: int, max_generations: int = 300) -> dict:
    from evotorch.algorithms import PGPE
    from evotorch.neuroevolution import VecGymNE

    torch.manual_seed(seed)
    start = time.perf_counter()
    problem = VecGymNE(
        "CartPole-v1",
        "Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)",
        observation_normalization=True,
    )
    searcher = PGPE(
        problem,
        popsize=100,
        center_learning_rate=0.1,
        stdev_learning_rate=0.1,
        radius_init=0.27,
        optimizer="clipup",
        optimizer_config={"max_speed": 0.2},
    )
    solved = False
    for generation in range(1, max_generations + 1):
        searcher.step()
        policy = problem.to_policy(searcher.status["center"])
        if mean_return(policy, 10, seed * 1000 + generation) >= TARGET:
            solved = mean_return(policy, 100, seed * 1000 + generation + 500) >= TARGET
            if solved:
                break
    return {
        "solved": solved,
        "seconds": time.perf_counter() - start,
        "generations": generation,
        "env_steps": problem.interaction_count,
    }


def whole_command_seconds(seed: int, logdir: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "neuroes.train",
            "CartPole-v1",
            "--seed",
            str(seed),
            "--no-progress",
            "--logdir",
            logdir,
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def report(name: str, runs: list[dict]) -> dict:
    for seed, run in enumerate(runs):
        rate = run["env_steps"] / run["seconds"]
        print(
            f"{name:8s} seed {seed}: solved={run['solved']!s:5s} {run['seconds']:7.2f} s "
            f"{run['generations']:4d} gens {run['env_steps']:9,d} steps {rate:11,.0f} steps/s"
        )
    median = {
        key: statistics.median(r[key] for r in runs)
        for key in ("seconds", "generations", "env_steps")
    }
    median["steps_per_second"] = statistics.median(r["env_steps"] / r["seconds"] for r in runs)
    print(
        f"{name:8s} median: {median['seconds']:.2f} s, {median['generations']:.0f} gens, "
        f"{median['env_steps']:,.0f} steps, {median['steps_per_second']:,.0f} steps/s; "
        f"solved {sum(r['solved'] for r in runs)}/{len(runs)}"
    )
    return median


def ahead(ours: float, theirs: float) -> str:
    """The library ahead on a larger-is-better figure, and by what factor."""
    if ours >= theirs:
        return f"neuroes {ours / theirs:.1f}x"
    return f"evotorch {theirs / ours:.1f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="runs per library (default: 5)")
    parser.add_argument("--skip-evotorch", action="store_true", help="measure neuroes only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ours = report("neuroes", [neuroes_run(s, f"{tmp}/n{s}") for s in range(args.seeds)])
        whole = [whole_command_seconds(s, f"{tmp}/c{s}") for s in range(args.seeds)]
    print(f"neuroes whole command (start-up included): median {statistics.median(whole):.2f} s")
    if args.skip_evotorch:
        return
    try:
        import evotorch  # noqa: F401
    except ImportError:
        print("evotorch is not installed (pip install 'neuroes[bench]'): neuroes only")
        return
    theirs = report("evotorch", [evotorch_run(s) for s in range(args.seeds)])
    speed = ahead(1 / ours["seconds"], 1 / theirs["seconds"])
    rate = ahead(ours["steps_per_second"], theirs["steps_per_second"])
    print(f"median wall time to solve: {speed} faster; median env steps/s: {rate} higher")


if __name__ == "__main__":
    main()
