"""Train a policy with evolution strategies.

    python -m neuroes.train CartPole-v1
    python -m neuroes.train HalfCheetah-v5 --algo maxent --generations 200
    python -m neuroes.train CartPole-v1 --resume runs/CartPole-v1-nes-.../checkpoint.pt

Each run writes a folder with ``config.json``, TensorBoard event files, ``checkpoint.pt``
(the latest state, to resume from) and ``best.pt`` (the best evaluated mean policy).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroes.config import Config
from neuroes.presets import GENERIC
from neuroes.rollout import RolloutError
from neuroes.shards import WorkerError
from neuroes.trainer import Run


@dataclass
class Summary:
    """How a run ended."""

    run_dir: Path
    generations: int
    env_steps: int
    wall_time: float
    eval_return: float
    best_return: float
    solved: bool


def train(config: Config, resume_overrides: dict | None = None) -> Summary:
    """Run (or, with ``config.resume``, continue) the generation loop of ``config``."""
    if config.resume:
        run = Run.resume(config.resume, resume_overrides or {}, config.logdir, config.trust)
    else:
        config = config.resolved()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{config.env_id.replace('/', '_')}-{config.algo}-{stamp}"
        run = Run(config, Path(config.logdir or Path("runs") / name))
    try:
        return _loop(run)
    finally:  # also on errors: stop the workers, flush the logs
        run.close()


def _loop(run: Run) -> Summary:
    """Generations of ``run`` until it is solved or has run ``config.generations``."""
    config, solved = run.config, False
    start = time.perf_counter() - run.wall_time
    limit = config.time_limit or float("inf")
    while run.generation < config.generations and run.wall_time < limit and not solved:
        tick = time.perf_counter()
        population = run.algorithm.ask()
        rollouts, run.eval_return = run.evaluate(population)  # the mean policy rides along
        scalars = {}
        if run.eval_return > run.best_return:  # saved as evaluated, before this generation's step
            run.best_return = run.eval_return
            run.save("best.pt")
        if run.eval_return >= run.target:  # confirmed on many fresh episodes before stopping
            scalars["eval/confirmed_return"] = run.confirm(population)
            solved = scalars["eval/confirmed_return"] >= run.target
        if not solved:
            if run.normalizer is not None:  # updated after the generation: frozen within it
                run.normalizer.update(*rollouts.observation_stats)
            scalars |= run.algorithm.tell(population, rollouts)
        run.env_steps += rollouts.env_steps
        run.generation += 1
        run.wall_time = time.perf_counter() - start
        returns = rollouts.returns
        scalars |= {
            "rollout/return_mean": returns.mean(),
            "rollout/return_max": returns.max(),
            "rollout/return_min": returns.min(),
            "rollout/return_std": returns.std(),
            "rollout/length_mean": rollouts.lengths.mean(),
            "eval/return": run.eval_return,
            "time/env_steps": run.env_steps,
            "time/steps_per_second": rollouts.env_steps / (time.perf_counter() - tick),
            "time/wall": run.wall_time,
        }
        if config.algo in ("maxvar", "maxent"):
            scalars |= behavior_scalars(rollouts.behaviors)
            if run.generation % config.scatter_every == 0 or solved:
                run.monitor.scatter(run.generation, rollouts.behaviors, returns)
        run.monitor.log(run.generation, scalars)
        if run.generation % config.checkpoint_every == 0:
            run.save("checkpoint.pt")
    run.save("checkpoint.pt")
    return Summary(
        run.run_dir,
        run.generation,
        run.env_steps,
        run.wall_time,
        run.eval_return,
        run.best_return,
        solved,
    )


def behavior_scalars(behaviors: np.ndarray) -> dict[str, float]:
    """Spread of the population's final positions: total variance and a Gaussian entropy."""
    covariance = np.atleast_2d(np.cov(behaviors, rowvar=False))
    _, logdet = np.linalg.slogdet(covariance + 1e-9 * np.eye(len(covariance)))
    k = len(covariance)
    return {
        "behavior/variance": float(np.trace(covariance)),
        "behavior/entropy": float(0.5 * (k * np.log(2 * np.pi * np.e) + logdet)),
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    """The command line: one flag per :class:`Config` field, each with its help line."""
    cli = _Parser(
        prog="python -m neuroes.train",
        description=__doc__.splitlines()[0],
        argument_default=argparse.SUPPRESS,
    )
    for item in dataclasses.fields(Config):
        meta = dict(item.metadata)
        help_text = meta.pop("help")
        if item.name == "env_id":
            cli.add_argument("env_id", help=help_text)
            continue
        flag = "--" + item.name.replace("_", "-")
        if str(item.type).startswith("bool"):
            cli.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        kind = _scalar_type(str(item.type).removeprefix("tuple["))
        cli.add_argument(flag, type=kind, help=help_text + _default_text(item), **meta)
    return cli


def _default_text(item: dataclasses.Field) -> str:
    if item.name in GENERIC:
        return " (default: the environment's preset, see neuroes/presets.py)"
    return "" if item.default is None else f" (default: {item.default})"


def _scalar_type(annotation: str) -> type:
    for name, kind in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def main(argv: list[str] | None = None) -> int:
    try:
        args = vars(parser().parse_args(argv))
    except SystemExit as exit:  # --help, or a usage error already printed on one line
        return int(exit.code or 0)
    try:
        if "resume" in args:
            logdir, trust = args.pop("logdir", None), args.pop("trust", False)
            overrides = {k: v for k, v in args.items() if k not in ("env_id", "resume")}
            config = Config(args["env_id"], resume=args["resume"], logdir=logdir, trust=trust)
            summary = train(config, overrides)
        else:
            summary = train(Config(**args))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (RolloutError, WorkerError) as error:
        print(f"error: {error}; training stopped, the last checkpoint is intact", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130
    state = "solved" if summary.solved else "stopped"
    print(
        f"{state} after {summary.generations} generations, {summary.env_steps} env steps, "
        f"{summary.wall_time:.2f} s; mean policy return {summary.eval_return:.1f}; "
        f"run folder {summary.run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
