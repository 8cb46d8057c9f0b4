"""Environment steps per second of the evaluator against the limits set by the simulator.

    python benchmarks/rollout_throughput.py            # full size
    python benchmarks/rollout_throughput.py --quick    # a smoke-sized run

For each case, in one process and one run, it measures (median of ``--repeats`` timings):

(a) ``neuroes.rollout.Evaluator.evaluate`` on a population of an MLP 64-64 policy;
(b) the bare limit: the same vector of environments stepped in a plain loop together with one
    bare ``torch.bmm`` forward of the same MLP per step (all members batched) and nothing else;
(c) the raw environment with random actions (the native vector environment for CartPole, one
    plain environment for MuJoCo).

CartPole populations are a trained policy plus noise, so that episodes last (the evaluator
counts only the steps of running episodes). Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from neuroes.agents import get_flat, make_policy, num_params
from neuroes.config import Config
from neuroes.rollout import Evaluator
from neuroes.train import train


def median_rate(run, repeats: int) -> float:
    """Median steps per second of ``run()``, which returns the steps it took."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        steps = run()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def bare_weights(policy, population: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random per-member weights shaped like the policy's layers, for the bare forward."""
    layers = []
    for layer in policy.layers:
        out_features, in_features = layer.weight.shape
        layers.append(
            (
                torch.randn(population, in_features, out_features) * 0.1,
                torch.zeros(population, 1, out_features),
            )
        )
    return layers


def bare_forward(layers, obs: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(obs.astype(np.float32)).unsqueeze(1)
    for k, (weight, bias) in enumerate(layers):
        x = torch.baddbmm(bias, x, weight)
        if k < len(layers) - 1:
            x = torch.tanh(x)
    return x[:, 0]


def cartpole_case(population: int, steps: int, repeats: int, trained: torch.Tensor, policy):
    evaluator = Evaluator("CartPole-v1", policy)
    noise = torch.randn(population, num_params(policy), generator=torch.Generator().manual_seed(0))
    thetas = trained + 0.02 * noise

    def evaluator_run() -> int:
        return evaluator.evaluate(thetas, max_steps=steps, seed=1).env_steps

    vector = gym.make_vec("CartPole-v1", population, vectorization_mode="vector_entry_point")
    layers = bare_weights(policy, population)

    def bare_run() -> int:
        obs, _ = vector.reset(seed=0)
        for _ in range(steps):
            actions = bare_forward(layers, obs).argmax(-1).numpy()
            obs, *_ = vector.step(actions)
        return population * steps

    def raw_run() -> int:
        vector.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(steps):
            vector.step(rng.integers(0, 2, population))
        return population * steps

    return [median_rate(f, repeats) for f in (evaluator_run, bare_run, raw_run)]


def halfcheetah_case(population: int, steps: int, repeats: int):
    env = gym.make("HalfCheetah-v5")
    torch.manual_seed(0)
    policy = make_policy("mlp", env.observation_space, env.action_space, hidden=(64, 64))
    evaluator = Evaluator("HalfCheetah-v5", policy)
    noise = torch.randn(population, num_params(policy), generator=torch.Generator().manual_seed(0))
    thetas = get_flat(policy) + 0.02 * noise

    def evaluator_run() -> int:
        return evaluator.evaluate(thetas, max_steps=steps, seed=1).env_steps

    envs = [gym.make("HalfCheetah-v5", disable_env_checker=True) for _ in range(population)]
    layers = bare_weights(policy, population)

    def bare_run() -> int:
        obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
        for _ in range(steps):
            actions = torch.tanh(bare_forward(layers, obs)).numpy()
            obs = np.stack([e.step(a)[0] for e, a in zip(envs, actions, strict=True)])
        return population * steps

    def raw_run() -> int:
        env.reset(seed=0)
        for _ in range(steps * 4):
            env.step(env.action_space.sample())
        return steps * 4

    return [median_rate(f, repeats) for f in (evaluator_run, bare_run, raw_run)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (median)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps, repeats = (50, 2) if args.quick else (500, args.repeats)
    solved = train(
        Config(
            env_id="CartPole-v1",
            hidden=(64, 64),
            normalize=False,
            seed=0,
            progress=False,
            logdir="runs/benchmark-throughput",
        )
    )
    trained_policy = __import__("neuroes").load(solved.run_dir / "checkpoint.pt").policy
    trained = get_flat(trained_policy)
    cases = [
        ("CartPole-v1", 100, *cartpole_case(100, steps, repeats, trained, trained_policy)),
        ("CartPole-v1", 1000, *cartpole_case(1000, steps, repeats, trained, trained_policy)),
        ("HalfCheetah-v5", 32, *halfcheetah_case(32, steps // 5 if args.quick else 200, repeats)),
    ]
    print(
        f"torch {torch.__version__}, gymnasium {gym.__version__}, 1 thread, "
        f"median of {repeats}; MLP 64-64"
    )
    print(
        f"{'environment':16s} {'pop':>5s} {'(a) evaluator':>14s} {'(b) bare limit':>15s} "
        f"{'(c) raw env':>12s} {'a/b':>6s} {'a/c':>6s}"
    )
    for name, population, a, b, c in cases:
        print(
            f"{name:16s} {population:5d} {a:14,.0f} {b:15,.0f} {c:12,.0f} {a / b:6.2f} {a / c:6.2f}"
        )


if __name__ == "__main__":
    main()
