"""Train a policy with evolution strategies.

    python -m neuroes.train CartPole-v1
    python -m neuroes.train HalfCheetah-v5 --algo maxent --generations 200
    python -m neuroes.train CartPole-v1 --resume runs/CartPole-v1-nes-.../checkpoint.pt

Each run writes a folder with ``config.json``, TensorBoard event files, ``checkpoint.pt``
(the latest state, to resume from) and ``best.pt`` (the best evaluated mean policy).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuroes.algorithms import ALGORITHMS
from neuroes.cli import Parser
from neuroes.config import Config
from neuroes.presets import GENERIC, PRESETS
from neuroes.rollout import RolloutError
from neuroes.shards import WorkerError
from neuroes.trainer import DivergedError, Run


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


class RunStopped(RuntimeError):
    """Training stopped before its end; the message says why and what is on disk."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; the message says what is on disk."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RUN_FILES = (
    "config.json", "checkpoint.pt", "best.pt", "metrics.jsonl", "events.out.tfevents.*",
    "behaviors_*.png",
)  # fmt: skip


def train(config: Config | str, **settings: Any) -> Summary:
    """Train (or, with ``config.resume``, continue) a run: ``train("CartPole-v1")``,
    ``train("CartPole-v1", algo="ga", parents=8)`` or ``train(Config(...))``.

    ``settings`` are :class:`Config` fields or options of the algorithm; when resuming they
    are the changes to the saved run. A fresh run refuses a folder that holds another run
    unless ``overwrite``. Ctrl-C or SIGTERM writes the last completed generation to
    ``checkpoint.pt`` and raises :class:`Interrupted`; an environment error, a worker failure
    or divergence raises :class:`RunStopped`, leaving the last checkpoint as it was.
    """
    config = Config(config) if isinstance(config, str) else config
    if config.resume:
        overrides = {"env_id": config.env_id} | settings
        run = Run.resume(config.resume, overrides, config.logdir, config.trust)
        created = False
    else:
        config = config.updated(**settings).resolved()
        run_dir = _run_folder(config)
        created = not run_dir.exists()
        run = Run.fresh(config, run_dir)
    with _signals_as_interrupts(lambda: run.finishing) as received:
        try:
            while not run.finished:
                run.step()
                if received:  # an interrupt that something swallowed (a GC callback)
                    raise Interrupted("interrupted", received[0])
            run.save_last_completed()
        except KeyboardInterrupt as interrupt:
            run.save_last_completed()
            number = getattr(interrupt, "signal_number", signal.SIGINT)
            raise Interrupted(f"interrupted; {run.on_disk()}", number) from None
        except (RolloutError, WorkerError, DivergedError, ValueError) as error:
            if created and run.saved_generation is None:
                run.close()
                shutil.rmtree(run.run_dir, ignore_errors=True)
                disk = "no checkpoint was written; the run folder was removed"
            else:
                disk = run.on_disk()
            code = 3 if isinstance(error, DivergedError) else 2
            raise RunStopped(f"{error}; training stopped, {disk}", code) from error
        finally:  # also on errors: stop the workers, flush the logs
            run.close()
    return Summary(
        run.run_dir,
        run.generation,
        run.env_steps,
        run.wall_time,
        run.eval_return,
        run.best_return,
        run.solved,
    )


def train_seeds(config: Config | str, seeds: Sequence[int], **settings: Any) -> list[Summary]:
    """:func:`train` once per seed, into sibling folders ``<logdir>/seed-<s>`` (by default
    under one ``runs/<env>-<algo>-<time>``)."""
    config = Config(config) if isinstance(config, str) else config
    config = config.updated(**settings)
    parent = Path(config.logdir) if config.logdir else _run_folder(config.resolved())
    return [
        train(dataclasses.replace(config, seed=seed, logdir=str(parent / f"seed-{seed}")))
        for seed in seeds
    ]


def seed_list(text: str) -> list[int]:
    """``"0-4"`` or ``"0,3,7"`` (or both, ``"0-2,9"``) as a list of seeds."""
    seeds = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            seeds += range(int(first), int(last or first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must look like 0-4 or 0,3,7, got {text!r}"
        ) from None
    return seeds


def _run_folder(config: Config) -> Path:
    """``config.logdir``, emptied of a previous run's files with ``overwrite``; else a fresh
    ``runs/<env>-<algo>-<time>`` (with a suffix if that exists). A folder holding a run is a
    ValueError naming ``--resume`` and ``--overwrite``."""
    if config.logdir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / f"{config.env_id.replace('/', '_')}-{config.algo}-{stamp}"
        folder, suffix = base, 1
        while folder.exists():
            suffix += 1
            folder = base.with_name(f"{base.name}-{suffix}")
        return folder
    folder = Path(config.logdir)
    files = [path for pattern in RUN_FILES for path in folder.glob(pattern)]
    if files and not config.overwrite:
        raise ValueError(
            f"{str(folder)!r} already holds a run; continue it with --resume "
            f"{folder / 'checkpoint.pt'}, or replace it with --overwrite"
        )
    for path in files:
        path.unlink()
    return folder


@contextlib.contextmanager
def _signals_as_interrupts(deferring: Callable[[], bool]) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM (what cluster schedulers send) are recorded in the yielded list and
    raise :class:`Interrupted`, unless ``deferring()``: then the caller raises it once the
    deferred work is done. An exception raised where Python swallows it (in a garbage
    collector's callback) still stops the run after the generation in flight."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(number: int, frame) -> None:
        received.append(number)
        if not deferring():
            raise Interrupted("interrupted", number)

    previous = {number: signal.signal(number, interrupt) for number in STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def parser() -> argparse.ArgumentParser:
    """The command line: one flag per :class:`Config` field, then every algorithm option under
    the names of the algorithms that take it."""
    cli = Parser(
        prog="python -m neuroes.train",
        description=__doc__.splitlines()[0],
        argument_default=argparse.SUPPRESS,
    )
    for item in dataclasses.fields(Config):
        if item.name == "env_id":
            cli.add_argument("env_id", help=item.metadata["help"])
        elif item.name != "options":
            _add_flag(cli, item)
    cli.add_argument(
        "--debug", action="store_true", help="print the full traceback of an error that stops a run"
    )
    cli.add_argument(
        "--seeds",
        type=seed_list,
        help="train once per seed (0-4, or 0,3,7) into sibling folders seed-N, then print a "
        "table of the final and best returns",
    )
    for declaring, items in _options_by_declaring_class().items():
        users = [name for name, cls in ALGORITHMS.items() if issubclass(cls.Options, declaring)]
        group = cli.add_argument_group(f"options of {', '.join(users)}")
        for item in items:
            _add_flag(group, item)
    return cli


def _options_by_declaring_class() -> dict[type, list[dataclasses.Field]]:
    """Every algorithm option once, under the options dataclass that declares it."""
    groups: dict[type, list[dataclasses.Field]] = {}
    for cls in ALGORITHMS.values():
        for item in dataclasses.fields(cls.Options):
            declaring = next(
                c
                for c in reversed(cls.Options.__mro__)
                if item.name in c.__dict__.get("__annotations__", {})
            )
            names = [known.name for known in groups.setdefault(declaring, [])]
            if item.name not in names:
                groups[declaring].append(item)
    return groups


def _add_flag(cli: argparse._ActionsContainer, item: dataclasses.Field) -> None:
    meta = dict(item.metadata)
    help_text = meta.pop("help")
    flag = "--" + item.name.replace("_", "-")
    if str(item.type).startswith("bool"):
        cli.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        return
    kind = _scalar_type(str(item.type).removeprefix("tuple["))
    cli.add_argument(flag, type=kind, help=help_text + _default_text(item), **meta)


def _default_text(item: dataclasses.Field) -> str:
    if item.name in GENERIC:
        return " (default: the environment's preset, see neuroes/presets.py)"
    if any(item.name in row for row in PRESETS.values()):
        return " (default: per environment and algorithm, see neuroes/presets.py)"
    return "" if item.default is None else f" (default: {item.default})"


def _scalar_type(annotation: str) -> type:
    for name, kind in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    try:
        args = vars(parser().parse_args(argv))
    except SystemExit as exit:  # --help, or a usage error already printed on one line
        return int(exit.code or 0)
    debug, seeds = args.pop("debug", False), args.pop("seeds", None)
    where = {key: args.pop(key) for key in ("resume", "logdir", "trust") if key in args}
    config = Config(args.pop("env_id"), **where)
    try:
        if seeds is not None:
            print(seed_table(train_seeds(config, seeds, **args), seeds))
            return 0
        summary = train(config, **args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunStopped as error:
        if debug:
            traceback.print_exception(error.__cause__, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except Interrupted as interrupt:
        print(interrupt, file=sys.stderr)
        return 128 + interrupt.signal_number
    except KeyboardInterrupt:  # before the run started
        print("interrupted; no checkpoint was written", file=sys.stderr)
        return 130
    state = "solved" if summary.solved else "stopped"
    print(
        f"{state} after {summary.generations} generations, {summary.env_steps} env steps, "
        f"{summary.wall_time:.2f} s; mean policy return {summary.eval_return:.1f}; "
        f"run folder {summary.run_dir}"
    )
    return 0


def seed_table(summaries: list[Summary], seeds: Sequence[int]) -> str:
    """The runs of several seeds: one row each, then the median and range."""
    rows = [f"{'seed':>6} {'generations':>11} {'final':>9} {'best':>9}  folder"]
    for seed, summary in zip(seeds, summaries, strict=True):
        rows.append(
            f"{seed:>6} {summary.generations:>11} {summary.eval_return:>9.1f} "
            f"{summary.best_return:>9.1f}  {summary.run_dir}"
        )
    for name in ("eval_return", "best_return"):
        values = [getattr(summary, name) for summary in summaries]
        label = "final" if name == "eval_return" else "best"
        rows.append(
            f"{label}: median {statistics.median(values):.1f}, range {min(values):.1f} to "
            f"{max(values):.1f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
