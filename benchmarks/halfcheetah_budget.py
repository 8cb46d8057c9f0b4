"""HalfCheetah-v5 on a fixed wall-clock budget: neuroes NES against evotorch's PGPE.

    python benchmarks/halfcheetah_budget.py                    # budgets of 2 and 5 minutes
    python benchmarks/halfcheetah_budget.py --budgets 30 --skip-evotorch

Both sides train an MLP 64-64 (tanh) with observation normalization, population 64, on every
core of the machine (neuroes: ``--workers N``; evotorch: ``num_actors=N``), and evaluate their
mean policy (centre) on 3 episodes after every generation, inside the budget. The figure is the
best mean-policy evaluation reached within the budget.

evotorch side, as run: ``VecGymNE("HalfCheetah-v5", "Linear(obs_length, 64) >> Tanh() >>
Linear(64, 64) >> Tanh() >> Linear(64, act_length)", observation_normalization=True,
num_actors=N)`` with ``PGPE(popsize=64, center_learning_rate=0.01125, stdev_learning_rate=0.1,
radius_init=0.27, optimizer="clipup", optimizer_config={"max_speed": 0.0225})``, the settings of
evotorch's own MuJoCo examples.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch

from neuroes.config import Config
from neuroes.train import train

NETWORK = "Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)"


def neuroes_best(budget: float, workers: int, seed: int, logdir: str) -> tuple[float, int]:
    config = Config(
        env_id="HalfCheetah-v5",
        seed=seed,
        workers=workers,
        time_limit=budget,
        eval_episodes=3,
        target_return=math.inf,
        generations=100_000,
        progress=False,
        logdir=logdir,
    )
    summary = train(config)
    return summary.best_return, summary.generations


def centre_return(policy: torch.nn.Module, episodes: int, seed: int) -> float:
    returns = []
    for episode in range(episodes):
        env = gym.make("HalfCheetah-v5")
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = policy(torch.as_tensor(obs, dtype=torch.float64)).numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def evotorch_best(budget: float, workers: int, seed: int) -> tuple[float, int]:
    from evotorch.algorithms import PGPE
    from evotorch.neuroevolution import VecGymNE

    torch.manual_seed(seed)
    start = time.perf_counter()
    problem = VecGymNE(
        "HalfCheetah-v5",
        NETWORK,
        observation_normalization=True,
        num_actors=workers if workers > 1 else None,
    )
    searcher = PGPE(
        problem,
        popsize=64,
        center_learning_rate=0.01125,
        stdev_learning_rate=0.1,
        radius_init=0.27,
        optimizer="clipup",
        optimizer_config={"max_speed": 0.0225},
    )
    best, generation = -math.inf, 0
    while time.perf_counter() - start < budget:
        searcher.step()
        generation += 1
        policy = problem.to_policy(searcher.status["center"]).double()  # its normalizer is float64
        best = max(best, centre_return(policy, 3, 1000 * seed + generation))
    return best, generation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[120, 300], help="wall-clock budgets in seconds"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-evotorch", action="store_true", help="measure neuroes only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"HalfCheetah-v5, population 64, MLP 64-64, {args.workers} workers per side, "
        f"torch {torch.__version__}, gymnasium {gym.__version__}"
    )
    print(f"{'budget':>8s} {'neuroes best':>13s} {'gens':>6s} {'evotorch best':>14s} {'gens':>6s}")
    for budget in args.budgets:
        with tempfile.TemporaryDirectory() as tmp:
            ours, our_gens = neuroes_best(budget, args.workers, args.seed, tmp)
        theirs, their_gens = (math.nan, 0)
        if not args.skip_evotorch:
            theirs, their_gens = evotorch_best(budget, args.workers, args.seed)
        print(f"{budget:7.0f}s {ours:13.1f} {our_gens:6d} {theirs:14.1f} {their_gens:6d}")


if __name__ == "__main__":
    main()
