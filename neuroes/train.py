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

from neuroes.algorithms import ALGORITHMS
from neuroes.config import Config
from neuroes.presets import GENERIC, PRESETS
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
        run = Run.fresh(config, Path(config.logdir or Path("runs") / name))
    try:
        while not run.finished:
            run.step()
        run.save("checkpoint.pt")
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    """The command line: one flag per :class:`Config` field, then every algorithm option under
    the names of the algorithms that take it."""
    cli = _Parser(
        prog="python -m neuroes.train",
        description=__doc__.splitlines()[0],
        argument_default=argparse.SUPPRESS,
    )
    for item in dataclasses.fields(Config):
        if item.name == "env_id":
            cli.add_argument("env_id", help=item.metadata["help"])
        elif item.name != "options":
            _add_flag(cli, item)
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
                c for c in reversed(cls.Options.__mro__) if item.name in c.__dict__.get(
                    "__annotations__", {}
                )
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
        return f" (default: the environment's preset, else {item.default})"
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
    fields = {item.name for item in dataclasses.fields(Config)}
    options = {key: args.pop(key) for key in list(args) if key not in fields}
    try:
        if "resume" in args:
            logdir, trust = args.pop("logdir", None), args.pop("trust", False)
            overrides = {k: v for k, v in args.items() if k not in ("env_id", "resume")}
            config = Config(args["env_id"], resume=args["resume"], logdir=logdir, trust=trust)
            summary = train(config, overrides | options)
        else:
            summary = train(Config(**args, options=options))
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
