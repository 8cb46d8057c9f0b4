"""Every algorithm at one wall-clock budget per environment, with evotorch's PGPE as a cross-check
of neuroes' PGPE.

    python benchmarks/algorithms.py          # 3 environments x 8 rows x seeds 0 1 2: about 90 min
    python benchmarks/algorithms.py --budget 3 --seeds 0      # every row once: about 2 minutes

Every run has one core: ``--jobs`` runs at a time (default 2, this machine's cores), each in its
own process, evaluating in that process on one thread (``--workers 1``); ``--jobs 1 --workers
2`` instead gives each run the whole machine (twice the time). Rows, seeds interleaved:

- neuroes ``nes``, ``snes``, ``pgpe``, ``ars``, ``sepcma``, ``cma`` and ``ga``: ``python -m
  neuroes.train ENV --algo ALGO --threads 1`` with the algorithm's defaults on that environment
  (``neuroes/presets.py``), ended only by the budget (``--time-limit B --target-return inf``).
  Full-covariance ``cma`` is refused above 2000 parameters (HalfCheetah's MLP 64-64): its row
  says so.
- evotorch PGPE: neuroes' ``pgpe`` settings on that environment run through evotorch's
  ``PGPE`` + ClipUp on a ``VecGymNE`` (in the run's process; on Ray actors with ``--workers``
  above 1): population, initial sigma (``stdev_init``), ClipUp step, max speed and momentum,
  sigma learning rate, 20% sigma change cap, centered ranks, symmetric sampling, the same
  network (tanh MLP; Box actions through ``tanh`` rescaled to the bounds, as neuroes' head), the
  same initial centre, observation normalization and episodes per member. After every
  generation its centre plays ``EVAL_EPISODES`` episodes on a second ``VecGymNE`` given a copy of
  the observation statistics, inside the budget, as neuroes evaluates its mean policy as extra
  rows.

Budgets (``--budget`` sets one for all): CartPole-v1 30 s, Pendulum-v1 120 s, HalfCheetah-v5
300 s per run. The clock counts generations only (neuroes' ``time/wall``); start-up done lazily
(worker processes, Ray actors) falls inside the first generation. Reported per environment: a
Markdown table of the best mean-policy (centre) return, median [range] over seeds, with the
seconds it took to reach it, generations and environment steps (medians), and neuroes'
``pgpe`` cut at evotorch's number of updates of the same seed (the two PGPEs compared update
for update, apart from their speed); a figure of the best return so far against seconds
(median over seeds); every run's learning curve in ``--figures``/algorithms_ENV.json, from
which ``--replot`` prints the tables and draws the figures again.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import gymnasium as gym
import matplotlib
import numpy as np
import torch

from neuroes.agents import get_flat, make_policy
from neuroes.algorithms import Setup, make_algorithm
from neuroes.config import Config
from neuroes.plot import curve
from neuroes.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

BUDGETS = {"CartPole-v1": 30.0, "Pendulum-v1": 120.0, "HalfCheetah-v5": 300.0}
ALGOS = ("nes", "snes", "pgpe", "ars", "sepcma", "cma", "ga")
EVOTORCH = "evotorch pgpe"
EVAL_EPISODES = 10  # neuroes' default eval_episodes


@dataclass
class Result:
    """One run: the best evaluation of its mean policy, its size and its learning curve."""

    best: float
    generations: int
    env_steps: int
    trace: list[tuple[float, float]]  # (seconds into the budget, mean-policy return) per generation

    def seconds_to_best(self) -> float:
        """Seconds into the budget of the first evaluation that reached the best of the curve
        (as saved: rounded)."""
        best = max(value for _, value in self.trace)
        return next(seconds for seconds, value in self.trace if value == best)


def run_neuroes(env_id: str, algo: str, budget: float, workers: int, seed: int) -> Result:
    with tempfile.TemporaryDirectory() as logdir:
        summary = train(
            Config(
                env_id,
                algo,
                seed=seed,
                workers=workers,
                threads=1,
                time_limit=budget,
                target_return=math.inf,
                generations=10**9,
                eval_episodes=EVAL_EPISODES,
                progress=False,
                logdir=logdir,
            )
        )
        walls, returns = curve(summary.run_dir, x="wall")
        trace = list(zip(walls.tolist(), returns.tolist(), strict=True))
    return Result(summary.best_return, summary.generations, summary.env_steps, trace)


def make_env(env_id: str) -> gym.Env:
    """``env_id`` with a Box action space rescaled from [-1, 1], for a network ending in tanh."""
    env = gym.make(env_id)
    if isinstance(env.action_space, gym.spaces.Box):
        one = np.ones(env.action_space.shape, np.float32)
        env = gym.wrappers.RescaleAction(env, -one, one)
    return env


class EnvMaker:
    """``num_envs`` copies of ``make_env(env_id)`` in evotorch's vector environment, as
    ``VecGymNE`` makes them from an environment name; picklable for Ray actors."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id

    def __call__(self, num_envs: int, **kwargs) -> gym.vector.VectorEnv:
        from evotorch.neuroevolution.net.vecrl import SyncVectorEnv

        return SyncVectorEnv([partial(make_env, self.env_id)] * num_envs, **kwargs)


def run_evotorch(env_id: str, budget: float, workers: int, seed: int) -> Result:
    """evotorch's PGPE with the resolved settings of neuroes' ``pgpe`` on ``env_id``."""
    from evotorch.algorithms import PGPE
    from evotorch.neuroevolution import VecGymNE

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    if workers > 1:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)

    config = Config(env_id, "pgpe", seed=seed).resolved()
    env = gym.make(env_id)
    with torch.random.fork_rng():  # neuroes' initial policy for this seed
        torch.manual_seed(seed)
        hidden = {"hidden": config.hidden} if config.policy == "mlp" else {}
        policy = make_policy(config.policy, env.observation_space, env.action_space, **hidden)
    sizes = ["obs_length", *map(str, hidden.get("hidden", ())), "act_length"]
    layers = [f"Linear({a}, {b})" for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    box = isinstance(env.action_space, gym.spaces.Box)
    network = " >> Tanh() >> ".join(layers) + (" >> Tanh()" if box else "")
    torch.manual_seed(seed)
    problems = [
        VecGymNE(
            EnvMaker(env_id),
            network,
            observation_normalization=config.normalize,
            num_episodes=episodes,
            num_actors=workers if workers > 1 else None,
        )
        for episodes in (config.episodes, 1)
    ]
    problem, judge = problems
    setup = Setup(policy, config.popsize, config.sigma, seed)
    ours = make_algorithm("pgpe", setup, config.options)
    clipup = ours.optimizer.param_groups[0]
    searcher = PGPE(
        problem,
        popsize=config.popsize,
        center_init=get_flat(policy),
        center_learning_rate=clipup["lr"],
        stdev_init=config.sigma,
        stdev_learning_rate=ours.sigma_lr,
        stdev_max_change=ours.sigma_max_change,
        optimizer="clipup",
        optimizer_config={
            "max_speed": clipup["max_speed"] or 2 * clipup["lr"],
            "momentum": clipup["momentum"],
        },
        ranking_method="centered",
        symmetric=True,
    )
    trace, start = [], time.perf_counter()
    try:
        while time.perf_counter() - start < budget:
            searcher.step()
            if config.normalize:  # a copy: the judge's episodes add to what it is given
                judge.set_observation_stats(copy.deepcopy(problem.get_observation_stats()))
            batch = judge.generate_batch(EVAL_EPISODES)
            batch.set_values(searcher.status["center"].repeat(EVAL_EPISODES, 1))
            judge.evaluate(batch)
            trace.append((time.perf_counter() - start, batch.evals.mean().item()))
    finally:
        for each in problems:
            if each.actors:
                each.kill_actors()
    return Result(max(v for _, v in trace), len(trace), problem.interaction_count, trace)


def run_row(env_id: str, budget: float, workers: int, name: str, seed: int) -> Result | str:
    """One run of row ``name``, or the reason it was refused (e.g. full covariance above its
    limit)."""
    try:
        if name == EVOTORCH:
            return run_evotorch(env_id, budget, workers, seed)
        return run_neuroes(env_id, name, budget, workers, seed)
    except ValueError as error:
        return str(error)


def spread(values: list[float]) -> str:
    """Median [min, max]."""
    return f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def best_so_far(trace: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """The best return seen by each of ``times`` (NaN before the first evaluation)."""
    seconds = np.array([s for s, _ in trace])
    best = np.maximum.accumulate([v for _, v in trace])
    index = np.searchsorted(seconds, times, side="right") - 1
    return np.where(index >= 0, best[np.clip(index, 0, None)], np.nan)


def figure(env_id: str, results: dict[str, list[Result]], path: Path) -> None:
    start = min(r.trace[0][0] for runs in results.values() for r in runs)
    end = max(r.trace[-1][0] for runs in results.values() for r in runs)  # the last overrun
    times = np.geomspace(start, end, 200)  # on a log axis: fast rows are seen too
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in results.items():
        if runs:
            curves = np.array([best_so_far(r.trace, times) for r in runs])
            with warnings.catch_warnings():  # NaN before a row's first evaluation
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.plot(times, np.nanmedian(curves, axis=0), label=name)
    ax.set(
        xlabel="seconds",
        xscale="log",
        ylabel="best mean-policy return so far (median over seeds)",
        title=f"{env_id}, {len(next(iter(results.values())))} seeds",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS), help="environments")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=[*ALGOS, "evotorch"],
        choices=[*ALGOS, "evotorch"],
        help="rows to run",
    )
    parser.add_argument("--budget", type=float, help="seconds per run, every environment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per row")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per run")
    parser.add_argument(
        "--figures",
        default="benchmarks/results",
        help="folder of the figures and of the runs' learning curves (algorithms_ENV.json)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only print the tables and draw the figures again from the saved learning curves",
    )
    args = parser.parse_args(argv)
    if args.replot:
        for env_id in args.envs:
            report_saved(env_id, args.figures)
        return
    names = [EVOTORCH if row == "evotorch" else row for row in args.rows]
    versions = [f"torch {torch.__version__}", f"gymnasium {gym.__version__}"]
    if EVOTORCH in names:
        import evotorch

        versions.append(f"evotorch {evotorch.__version__}")
    print(
        f"{os.cpu_count()} CPUs, {', '.join(versions)}, {args.jobs} runs at a time, "
        f"{args.workers} worker(s) per run, seeds {args.seeds}, {time.strftime('%Y-%m-%d')}"
    )
    Path(args.figures).mkdir(parents=True, exist_ok=True)
    pool = ProcessPoolExecutor(
        args.jobs, get_context("spawn"), initializer=torch.set_num_threads, initargs=(1,)
    )
    with pool:
        for env_id in args.envs:
            budget = args.budget or BUDGETS.get(env_id, 300.0)
            runs = [(name, seed) for seed in args.seeds for name in names]
            outcomes = pool.map(
                partial(run_row, env_id, budget, args.workers),
                *zip(*runs, strict=True),
            )
            results: dict[str, list[Result]] = {name: [] for name in names}
            refused: dict[str, str] = {}
            for (name, seed), outcome in zip(runs, outcomes, strict=True):
                if isinstance(outcome, str):
                    if name not in refused:
                        print(f"{env_id} {name}: refused: {outcome}", flush=True)
                    refused[name] = outcome
                    continue
                results[name].append(outcome)
                print(
                    f"{env_id} seed {seed} {name:14s} {outcome.generations:5d} gens "
                    f"{outcome.env_steps:11,d} steps  best {outcome.best:8.1f}",
                    flush=True,
                )
            curves = {name: [rounded(r) for r in runs] for name, runs in results.items()}
            saved = {"budget": budget, "seeds": args.seeds, "refused": refused, "results": curves}
            curves_path(args.figures, env_id).write_text(json.dumps(saved))
            report_saved(env_id, args.figures)


def rounded(result: Result) -> dict:
    """``result`` as JSON data, its curve to the millisecond and the hundredth of a return."""
    trace = [(round(seconds, 3), round(value, 2)) for seconds, value in result.trace]
    return dataclasses.asdict(result) | {"trace": trace}


def curves_path(folder: str, env_id: str) -> Path:
    return Path(folder) / f"algorithms_{env_id.replace('/', '_')}.json"


def report_saved(env_id: str, folder: str) -> None:
    """Reports the saved learning curves of ``env_id``: a run and its replot print the same."""
    saved = json.loads(curves_path(folder, env_id).read_text())
    saved["results"] = {
        name: [Result(**run) for run in runs] for name, runs in saved["results"].items()
    }
    report(env_id, **saved, folder=folder)


def report(
    env_id: str,
    budget: float,
    seeds: list[int],
    results: dict[str, list[Result]],
    refused: dict[str, str],
    folder: str,
) -> None:
    """Prints the Markdown table of one environment and draws its figure."""
    print(
        f"\n| {env_id}, {budget:.0f} s, seeds {', '.join(map(str, seeds))} "
        "| best mean-policy return, median [range] | seconds to it | generations | env steps |"
    )
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        if name in refused:
            print(f"| {name} | refused: {refused[name]} | | | |")
        elif runs:
            seconds = statistics.median(r.seconds_to_best() for r in runs)
            generations = statistics.median(r.generations for r in runs)
            steps = statistics.median(r.env_steps for r in runs)
            print(
                f"| {name} | {spread([r.best for r in runs])} | {seconds:.1f} | {generations:.0f} "
                f"| {steps:,.0f} |"
            )
    if results.get("pgpe") and results.get(EVOTORCH):
        # The same algorithm, update for update: neuroes evaluates its mean before each update
        # (trace[k] follows k updates), the evotorch loop its centre after each (trace[k]: k+1).
        matched = [
            max(v for _, v in ours.trace[: theirs.generations + 1])
            for ours, theirs in zip(results["pgpe"], results[EVOTORCH], strict=True)
        ]
        print(f"| pgpe, as many updates as {EVOTORCH} | {spread(matched)} | | | |")
    path = curves_path(folder, env_id).with_suffix(".png")
    figure(env_id, {name: runs for name, runs in results.items() if runs}, path)
    print(f"figure: {path}, learning curves: {path.with_suffix('.json')}\n", flush=True)


if __name__ == "__main__":
    main()
