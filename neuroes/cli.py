"""What neuroes' command-line tools share: usage errors in one line, and the arguments of the
tools that play a saved policy."""

from __future__ import annotations

import argparse
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``prog: error: message``, with exit
    status 2 (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def saved_policy_parser(module: str, doc: str, episodes: int) -> Parser:
    """The parser of ``python -m module``, which plays a saved policy: the checkpoint,
    ``--episodes`` (default ``episodes``), ``--seed`` and ``--trust``."""
    cli = Parser(prog=f"python -m {module}", description=doc.splitlines()[0])
    cli.add_argument("checkpoint", help="a checkpoint written by training (best.pt, checkpoint.pt)")
    cli.add_argument(
        "--episodes", type=int, default=episodes, help=f"episodes to play (default: {episodes})"
    )
    cli.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    cli.add_argument(
        "--trust",
        action="store_true",
        help="also load a checkpoint that holds code (a user-defined policy, or the pickle "
        "format of neuroes 0.1); only for files from a source you trust",
    )
    return cli
