"""Evaluate a saved policy headless: every episode in one batched population call.

python -m neuroes.evaluate runs/CartPole-v1-nes-.../best.pt --episodes 100
python -m neuroes.evaluate best.pt --episodes 20 --seed 1000 --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from neuroes.agents import get_flat
from neuroes.checkpoint import Agent, load
from neuroes.cli import saved_policy_parser
from neuroes.rollout import Evaluator, RolloutError


def evaluate(
    agent_or_path: Agent | str | Path,
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
) -> dict:
    """Play the saved mean policy for ``episodes`` episodes, episode ``e`` from
    ``reset(seed=seed + e)``, with the checkpoint's observation normalizer.

    The episodes are the rows of one population evaluated by :class:`neuroes.rollout.Evaluator`,
    so each return equals a plain loop of ``agent.act`` from the same seed. A path is loaded
    without trust (load a checkpoint that holds code with ``neuroes.load(path, trust=True)``).
    Returns a dict of ``env_id``, ``generation``, ``episodes``, ``seed``, ``max_steps``, the
    returns' ``mean``, ``std`` (population), ``min``, ``max``, ``mean_length`` and the
    per-episode ``returns`` and ``lengths``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps}")
    agent = agent_or_path if isinstance(agent_or_path, Agent) else load(agent_or_path)
    evaluator = Evaluator(
        agent.env_id,
        agent.policy,
        env_kwargs=agent.env_kwargs,
        descriptor=None,
        normalizer=agent.normalizer,
    )
    thetas = get_flat(agent.policy).expand(episodes, -1)
    rollouts = evaluator.evaluate(thetas, 1, max_steps, seed=seed + np.arange(episodes))
    returns = rollouts.returns
    return {
        "env_id": agent.env_id,
        "generation": agent.generation,
        "episodes": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "mean_length": float(rollouts.lengths.mean()),
        "returns": returns.tolist(),
        "lengths": rollouts.lengths.astype(int).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    cli = saved_policy_parser("neuroes.evaluate", __doc__, episodes=10)
    cli.add_argument(
        "--max-steps", type=int, help="cut episodes after this many steps (default: the env's)"
    )
    cli.add_argument("--json", action="store_true", help="print one JSON object")
    args = cli.parse_args(argv)
    try:
        agent = load(args.checkpoint, trust=args.trust)
        result = evaluate(agent, args.episodes, args.seed, args.max_steps)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RolloutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['env_id']}, generation {result['generation']}: return "
            f"{result['mean']:.2f} +- {result['std']:.2f} (min {result['min']:.2f}, max "
            f"{result['max']:.2f}) over {result['episodes']} episodes from seed {result['seed']}, "
            f"mean length {result['mean_length']:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
