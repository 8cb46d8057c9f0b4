"""Environment steps per second of the evaluator against the limits set by the simulator.

    python benchmarks/rollout_throughput.py            # full size
    python benchmarks/rollout_throughput.py --quick    # a smoke-sized run

Everything runs in one process and one run; each figure is the median of ``--repeats``
timings, the variants of a case taking turns within each repeat so that they meet the same
machine load, and each ratio is the median of the ratios within a repeat. MLP 64-64 policies;
torch on one thread.

CartPole-v1 (populations 100 and 1000, a trained policy plus noise so that episodes last):
(a) ``Evaluator.evaluate``; (b) the bare limit: Gymnasium's native vector environment stepped
in a plain loop with one bare ``torch.baddbmm`` forward of the same MLP per step and nothing
else.

MuJoCo (HalfCheetah-v5, Hopper-v5, Ant-v5, population 64, the initial policy plus noise):
(a1) the evaluator on one thread; (aN) the evaluator on every core (``threads=N``); (g) the
evaluator on a list of ``gymnasium.make`` environments, the path the MuJoCo batch replaces;
(m) ``mujoco.mj_step`` alone on one thread, with the environment's frame skip, replaying the
evaluation's own trajectories: the same start states, and at every step the same running
members with the controls the policy chose (recorded once), and nothing else.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np
import torch

import neuroes
from neuroes.agents import get_flat, make_policy, num_params
from neuroes.config import Config
from neuroes.envs import descriptor_for
from neuroes.rollout import Evaluator, default_threads
from neuroes.train import train

MUJOCO = {"HalfCheetah-v5": 200, "Hopper-v5": 200, "Ant-v5": 50}  # steps per timing


def timed(runs: dict[str, Callable[[], int]], repeats: int) -> dict[str, list[float]]:
    """Steps per second of each ``run()`` (which returns the steps it took), ``repeats``
    times, the runs taking turns."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm up: environments built, caches filled
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            steps = run()
            rates[name].append(steps / (time.perf_counter() - start))
    return rates


def ratio(rates: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))


def bare_weights(policy, population: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random per-member weights shaped like the policy's layers, for the bare forward."""
    layers = []
    for layer in policy.layers:
        out_features, in_features = layer.weight.shape
        weight = torch.randn(population, in_features, out_features) * 0.1
        layers.append((weight, torch.zeros(population, 1, out_features)))
    return layers


def bare_forward(layers, obs: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(obs.astype(np.float32)).unsqueeze(1)
    for k, (weight, bias) in enumerate(layers):
        x = torch.baddbmm(bias, x, weight)
        if k < len(layers) - 1:
            x = torch.tanh(x)
    return x[:, 0]


def population(policy, center: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    noise = torch.randn(size, num_params(policy), generator=torch.Generator().manual_seed(0))
    return center + scale * noise


def cartpole_case(size: int, steps: int, repeats: int, trained: torch.Tensor, policy):
    evaluator = Evaluator("CartPole-v1", policy)
    thetas = population(policy, trained, size, 0.02)
    vector = gym.make_vec("CartPole-v1", size, vectorization_mode="vector_entry_point")
    layers = bare_weights(policy, size)

    def bare() -> int:
        obs, _ = vector.reset(seed=0)
        for _ in range(steps):
            obs, *_ = vector.step(bare_forward(layers, obs).argmax(-1).numpy())
        return size * steps

    runs = {
        "a": lambda: evaluator.evaluate(thetas, max_steps=steps, seed=1).env_steps,
        "b": bare,
    }
    return timed(runs, repeats)


def recorded_steps(evaluator: Evaluator, thetas: torch.Tensor, steps: int) -> list:
    """The rows stepped and their controls at every step of one evaluation (one thread)."""
    batch, calls = evaluator.batches[0], []
    step = batch.step

    def record(actions: np.ndarray, running: np.ndarray):
        calls.append((np.flatnonzero(running).tolist(), actions.astype(np.float64)))
        return step(actions, running)

    batch.step = record
    evaluator.evaluate(thetas, max_steps=steps, seed=1)
    del batch.step
    return calls


def mujoco_case(env_id: str, size: int, steps: int, repeats: int, threads: int):
    env = gym.make(env_id)
    torch.manual_seed(0)
    policy = make_policy("mlp", env.observation_space, env.action_space, hidden=(64, 64))
    thetas = population(policy, get_flat(policy), size, 0.02)
    one, every = Evaluator(env_id, policy, threads=1), Evaluator(env_id, policy, threads=threads)
    listed = Evaluator(lambda: gym.make(env_id), policy, descriptor=descriptor_for(env_id))
    single = env.unwrapped
    single.reset(seed=1)
    datas = [mujoco.MjData(single.model) for _ in range(size)]
    controls = [data.ctrl for data in datas]
    calls = recorded_steps(one, thetas, steps)

    def bare() -> int:
        """The evaluation's own trajectories: the same rows, starts and controls."""
        for data in datas:
            mujoco.mj_copyData(data, single.model, single.data)
        for rows, actions in calls:
            for j in rows:
                controls[j][:] = actions[j]
                mujoco.mj_step(single.model, datas[j], single.frame_skip)
        return sum(len(rows) for rows, _ in calls)

    def evaluation(evaluator: Evaluator) -> Callable[[], int]:
        return lambda: evaluator.evaluate(thetas, max_steps=steps, seed=1).env_steps

    runs = {"a1": evaluation(one), "aN": evaluation(every), "g": evaluation(listed), "m": bare}
    return timed(runs, repeats), sum(len(rows) for rows, _ in calls) / size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (median)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats, scale = (2, 10) if args.quick else (args.repeats, 1)
    threads = default_threads()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as logdir:
        config = Config(
            "CartPole-v1", hidden=(64, 64), normalize=False, seed=0, progress=False, logdir=logdir
        )
        solved = train(config)
        trained_policy = neuroes.load(solved.run_dir / "checkpoint.pt").policy
    trained = get_flat(trained_policy)
    cartpole = {
        size: cartpole_case(size, 500 // scale, repeats, trained, trained_policy)
        for size in (100, 1000)
    }
    mujoco_rates = {
        env_id: mujoco_case(env_id, 64, max(steps // scale, 5), repeats, threads)
        for env_id, steps in MUJOCO.items()
    }
    print(
        f"torch {torch.__version__}, gymnasium {gym.__version__}, mujoco {mujoco.__version__}, "
        f"{threads} cores, median of {repeats}; MLP 64-64; load average "
        f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"\n{'CartPole-v1':12s} {'(a) evaluator':>14s} {'(b) bare loop':>14s} {'a/b':>6s}")
    for size, rates in cartpole.items():
        a, b = (statistics.median(rates[k]) for k in "ab")
        print(f"{'pop ' + str(size):12s} {a:14,.0f} {b:14,.0f} {ratio(rates, 'a', 'b'):6.2f}")
    columns = ("(a1) 1 thread", f"(aN) {threads} threads", "(g) gym list", "(m) mj_step")
    print(f"\n{'pop 64':15s}" + "".join(f"{c:>16s}" for c in columns), end="")
    print(f"{'a1/m':>7s}{'aN/m':>7s}{'aN/a1':>7s}{'a1/g':>7s}{'length':>8s}")
    for env_id, (rates, length) in mujoco_rates.items():
        figures = "".join(f"{statistics.median(rates[k]):16,.0f}" for k in ("a1", "aN", "g", "m"))
        ratios = [
            ratio(rates, a, b) for a, b in (("a1", "m"), ("aN", "m"), ("aN", "a1"), ("a1", "g"))
        ]
        print(f"{env_id:15s}{figures}" + "".join(f"{r:7.2f}" for r in ratios) + f"{length:8.1f}")


if __name__ == "__main__":
    main()
