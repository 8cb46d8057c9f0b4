"""HalfCheetah-v5 on a fixed wall-clock budget: neuroes NES against evotorch's PGPE.

    python benchmarks/halfcheetah_budget.py      # 3 rows x seeds 0 1 2 x 5 minutes: about 50 min
    python benchmarks/halfcheetah_budget.py --budget 150 --seeds 0       # about 8 minutes

Rows, each on 2 worker processes (``--workers``):

- neuroes: ``python -m neuroes.train HalfCheetah-v5 --workers 2`` with its defaults (NES, MLP
  64-64 tanh, population 64, sigma 0.02, Adam lr 0.02, observation normalization), except that
  only the budget ends the run: ``--time-limit B --target-return inf --generations 1000000``.
- evotorch, linear: the PGPE + ClipUp configuration of evotorch's MuJoCo example
  (``examples/scripts/rl_clipup.py``, named config ``walker``; evotorch has no HalfCheetah
  example): ``Linear(obs_length, act_length)``, population 100, ClipUp max speed 0.015 and
  momentum 0.9, centre lr 0.75 x max speed, radius 15 x max speed, stdev lr 0.1, stdev max
  change 0.2, observation normalization; ``VecGymNE`` on 2 Ray actors. The example's adaptive
  population (75,000 interactions, at most 800 members) never grows here, since 100 HalfCheetah
  episodes always take 100,000 steps, so it is left out.
- evotorch, MLP 64-64: the same on neuroes' architecture (64-64 tanh), with the max speed, hence
  the radius and the centre lr, scaled by sqrt(d_mlp / d_linear): PGPE's radius is the norm of
  its whole sigma vector, so this keeps the example's per-parameter sigma and step size. Its
  centre starts at neuroes' initial mean for the same seed (OpenAI-ES normc init), not at
  evotorch's zeros: there the two hidden layers pass almost nothing, and no member moves.

The runs are interleaved (seed 0 of every row, then seed 1, ...). One protocol for every row:

- The clock starts with the generation loop. Before it, neuroes spawns its worker processes
  and Ray is started; the workers' own start-up and evotorch's actor creation fall inside the
  first generation. A generation begun within the budget runs to its end and counts.
- After every generation the centre (mean policy) plays 10 episodes on 2 workers, inside the
  budget: neuroes as extra rows of its batch, evotorch on a second ``VecGymNE`` with 2 actors
  of its own, given a copy of the observation statistics, as its example evaluates the centre.
  "best" is the best of these evaluations.
- After the budget, that best policy plays 10 more episodes with fixed seeds in this process,
  the same function for every row ("fresh"): a figure without the selection's optimism.
- Env steps count the population's episodes, not the evaluations.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import evotorch
import gymnasium as gym
import mujoco
import numpy as np
import ray
import torch
from evotorch.algorithms import PGPE
from evotorch.neuroevolution import VecGymNE
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import neuroes
from neuroes.agents import get_flat, make_policy
from neuroes.config import Config
from neuroes.train import train

ENV = "HalfCheetah-v5"
EPISODES = 10  # centre evaluations per generation (neuroes' default eval_episodes), and fresh
FRESH_SEED = 1_000_000
LINEAR = "Linear(obs_length, act_length)"
MLP = "Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)"
EXAMPLE_MAX_SPEED = 0.015


@dataclass
class Result:
    """One run: its evaluations and its size."""

    best: float
    fresh: float
    generations: int
    env_steps: int
    trace: list[tuple[float, float]]  # (seconds since the start, centre return) per generation


def fresh_return(act: Callable[[np.ndarray], np.ndarray], seed: int) -> float:
    """Mean return of ``act`` over ``EPISODES`` episodes seeded ``seed``, ``seed + 1``, ..."""
    env = gym.make(ENV)
    total = 0.0
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total, done = total + float(reward), terminated or truncated
    return total / EPISODES


def run_neuroes(budget: float, workers: int, seed: int) -> Result:
    """``python -m neuroes.train`` defaults on ``workers`` processes, ended by the budget."""
    with tempfile.TemporaryDirectory() as logdir:
        summary = train(
            Config(
                env_id=ENV,
                seed=seed,
                workers=workers,
                time_limit=budget,
                target_return=math.inf,
                generations=1_000_000,
                eval_episodes=EPISODES,
                progress=False,
                logdir=logdir,
            )
        )
        events = EventAccumulator(logdir)
        events.Reload()
        walls, returns = events.Scalars("time/wall"), events.Scalars("eval/return")
        trace = [(w.value, r.value) for w, r in zip(walls, returns, strict=True)]
        fresh = fresh_return(neuroes.load(Path(logdir) / "best.pt").act, FRESH_SEED + seed)
    return Result(summary.best_return, fresh, summary.generations, summary.env_steps, trace)


def neuroes_start(seed: int) -> torch.Tensor:
    """The initial mean of neuroes' MLP 64-64 policy in a run seeded ``seed``."""
    env = gym.make(ENV)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy = make_policy("mlp", env.observation_space, env.action_space, hidden=(64, 64))
    return get_flat(policy)


def run_evotorch(network: str, same_start: bool, budget: float, workers: int, seed: int) -> Result:
    """PGPE with the example's ClipUp settings, scaled to the size of ``network``; with
    ``same_start``, from neuroes' initial mean (else from evotorch's zeros)."""
    torch.manual_seed(seed)
    problem = VecGymNE(ENV, network, observation_normalization=True, num_actors=workers)
    judge = VecGymNE(ENV, network, observation_normalization=True, num_actors=workers)
    env = gym.make(ENV)
    linear_length = (env.observation_space.shape[0] + 1) * env.action_space.shape[0]
    max_speed = EXAMPLE_MAX_SPEED * math.sqrt(problem.solution_length / linear_length)
    searcher = PGPE(
        problem,
        popsize=100,
        center_init=neuroes_start(seed) if same_start else None,
        center_learning_rate=0.75 * max_speed,
        stdev_learning_rate=0.1,
        stdev_max_change=0.2,
        radius_init=15 * max_speed,
        optimizer="clipup",
        optimizer_config={"max_speed": max_speed, "momentum": 0.9},
    )
    best, policy, trace = -math.inf, None, []
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < budget:
            searcher.step()
            centre = searcher.status["center"]
            # A copy: the judge's evaluations add to the statistics it is given.
            judge.set_observation_stats(copy.deepcopy(problem.get_observation_stats()))
            batch = judge.generate_batch(EPISODES)
            batch.set_values(centre.repeat(EPISODES, 1))
            judge.evaluate(batch)
            value = batch.evals.mean().item()
            trace.append((time.perf_counter() - start, value))
            if value > best:  # the module keeps a copy of the statistics as they are now
                best, policy = value, problem.to_policy(centre).double()
    finally:
        for each in (problem, judge):
            if each.actors:
                each.kill_actors()

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy(torch.as_tensor(obs, dtype=torch.float64)).numpy()

    fresh = fresh_return(act, FRESH_SEED + seed)
    return Result(best, fresh, len(trace), problem.interaction_count, trace)


ROWS: dict[str, Callable[[float, int, int], Result]] = {
    "neuroes NES, MLP 64-64": run_neuroes,
    "evotorch PGPE, linear": partial(run_evotorch, LINEAR, False),
    "evotorch PGPE, MLP 64-64": partial(run_evotorch, MLP, True),
}


def trend(trace: list[tuple[float, float]], budget: float) -> str:
    """Best centre return so far at each quarter of the budget (the last includes overrun)."""
    marks = []
    for quarter in (1, 2, 3):
        seen = [value for seconds, value in trace if seconds <= quarter * budget / 4]
        marks.append(f"{max(seen):.1f}" if seen else "-")
    return " ".join([*marks, f"{max(value for _, value in trace):.1f}"])


def spread(values: list[float]) -> str:
    """Median and range."""
    return f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300, help="seconds of training per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per row")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"{ENV}, budget {args.budget:.0f} s, seeds {args.seeds}, {args.workers} workers; "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, gymnasium {gym.__version__}, "
        f"mujoco {mujoco.__version__}, evotorch {evotorch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print("best centre return so far at 1/4, 2/4, 3/4 and the end of the budget in brackets")
    logging.getLogger("evotorch").setLevel(logging.WARNING)
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    results: dict[str, list[Result]] = {name: [] for name in ROWS}
    try:
        for seed in args.seeds:
            for name, run in ROWS.items():
                result = run(args.budget, args.workers, seed)
                results[name].append(result)
                print(
                    f"seed {seed} {name:25s} {result.generations:4d} gens "
                    f"{result.env_steps:11,d} steps  best {result.best:7.1f}  "
                    f"fresh {result.fresh:7.1f}  [{trend(result.trace, args.budget)}]",
                    flush=True,
                )
    finally:
        ray.shutdown()
    print(
        f"\n| {ENV}, {args.budget:.0f} s, seeds {', '.join(map(str, args.seeds))} "
        "| best centre return, median [range] | fresh 10 episodes, median [range] "
        "| generations, median | env steps, median |"
    )
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        generations = statistics.median(r.generations for r in runs)
        steps = statistics.median(r.env_steps for r in runs)
        print(
            f"| {name} | {spread([r.best for r in runs])} | {spread([r.fresh for r in runs])} "
            f"| {generations:.0f} | {steps:,.0f} |"
        )


if __name__ == "__main__":
    main()
