"""NS-ES, NSR-ES and NSRA-ES (Conti et al., 2018): the k-nearest-neighbour novelty, the choice of
agents, NSRA's weight schedule, and escaping a trap that holds NES."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box

from neuroes import train
from neuroes.agents import make_policy
from neuroes.algorithms import Setup, make_algorithm
from neuroes.algorithms.novelty import novelty
from neuroes.envs import PointMazeEnv
from neuroes.objectives import fitness
from neuroes.rollout import Evaluator, Rollouts


def _brute_force(behaviors: torch.Tensor, archive: torch.Tensor, k: int) -> torch.Tensor:
    values = []
    for b in behaviors.tolist():
        distances = sorted(math.dist(b, a) for a in archive.tolist())
        values.append(sum(distances[:k]) / len(distances[:k]))
    return torch.tensor(values, dtype=torch.float64)


def _policy() -> torch.nn.Module:
    return make_policy("linear", Box(-1, 1, (4,)), Box(-1, 1, (2,)))


def test_novelty_is_the_mean_distance_to_the_k_nearest_archived_behaviors() -> None:
    archive = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [0.0, 1.0]], dtype=torch.float64)
    behaviors = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    # Distances from (0, 0): 0, 5, 10, 1; from (3, 0): 3, 4, sqrt(73), sqrt(10).
    cases = {
        2: [(0 + 1) / 2, (3 + math.sqrt(10)) / 2],
        3: [(0 + 1 + 5) / 3, (3 + math.sqrt(10) + 4) / 3],
        10: [(0 + 1 + 5 + 10) / 4, (3 + math.sqrt(10) + 4 + math.sqrt(73)) / 4],  # all 4
    }
    for k, expected in cases.items():
        torch.testing.assert_close(novelty(behaviors, archive, k), torch.tensor(expected).double())


def test_novelty_equals_a_brute_force_count_with_ties_and_small_archives() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randint(-3, 4, (12, 3), generator=generator).double()  # many equal distances
    archive = torch.cat([points, points[:4]])  # and duplicated archive entries
    behaviors = torch.cat([points[:5], torch.randn(20, 3, generator=generator).double()])
    for k in (1, 3, 10, 16, 40):  # 40: more neighbours than the archive holds
        expected = _brute_force(behaviors, archive, k)
        torch.testing.assert_close(novelty(behaviors, archive, k), expected)


def test_novelty_keeps_its_precision_for_close_behaviors_far_from_the_origin() -> None:
    """Positions near (1e4, 1e4), a millimetre apart: distances from |x|^2 + |y|^2 - 2 x.y
    (torch's faster form for more than 25 rows) would lose about 6 of their digits."""
    generator = torch.Generator().manual_seed(1)
    archive = 1e4 + 1e-3 * torch.randn(40, 2, generator=generator, dtype=torch.float64)
    behaviors = 1e4 + 1e-3 * torch.randn(30, 2, generator=generator, dtype=torch.float64)
    expected = _brute_force(behaviors, archive, 10)
    torch.testing.assert_close(novelty(behaviors, archive, 10), expected, rtol=1e-9, atol=0)


def _three_agents() -> object:
    policy = _policy()
    return make_algorithm("ns", Setup(policy, popsize=8, sigma=0.1, seed=5), {"agents": 3})


@pytest.mark.parametrize("scale", [1.0, 0.01])  # 0.01: novelties that sum to less than 1
def test_agents_are_chosen_in_proportion_to_their_novelty(scale) -> None:
    algorithm = _three_agents()
    archive = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    algorithm.archive = scale * archive
    behaviors = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 7.0]], dtype=torch.float64)
    algorithm.behaviors = scale * behaviors
    share = novelty(algorithm.behaviors, algorithm.archive, algorithm.neighbors)
    share = (share / share.sum()).numpy()
    draws = 20000
    counts = np.bincount([algorithm.choose() for _ in range(draws)], minlength=3)
    # Within 4.5 binomial standard deviations (a false alarm about once in 100,000 runs).
    tolerance = 4.5 * np.sqrt(share * (1 - share) / draws)
    assert np.all(np.abs(counts / draws - share) <= tolerance), (counts / draws, share)


def test_agents_whose_behaviors_are_all_archived_alike_are_chosen_uniformly() -> None:
    algorithm = _three_agents()
    algorithm.archive = torch.zeros(1, 2, dtype=torch.float64)
    algorithm.behaviors = torch.zeros(3, 2, dtype=torch.float64)
    counts = np.bincount([algorithm.choose() for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) <= 4.5 * np.sqrt(2 / 9 / 3000)), counts


def test_nsra_weight_follows_the_papers_schedule_on_scripted_returns() -> None:
    """Start at w = 1; t = 10 updates without a new best mean return lower w by 0.05, a new
    best raises it by 0.05 (at most 1) and restarts the count."""
    t = 10
    script = [0.0] * (t - 1) + [-1.0] + [0.0] * 2 * t + [0.5, 1.0, 2.0, 3.0] + [0.0] * t
    expected = [1.0] * (t - 1) + [0.95] + [0.95] * (t - 1) + [0.9] + [0.9] * (t - 1) + [0.85]
    expected += [0.9, 0.95, 1.0, 1.0] + [1.0] * (t - 1) + [0.95]
    returns = iter([0.0, *script])  # the start policy's, then one per update

    def evaluate(thetas, episodes, seed) -> Rollouts:  # plays the mean policies
        return Rollouts.of([next(returns)], [[0.0, 0.0]])

    policy = _policy()
    nsra = make_algorithm("nsra", Setup(policy, popsize=8, sigma=0.1, evaluate=evaluate))
    weights = []
    for _ in script:
        population, used = nsra.ask(), nsra.weight
        fitness = -population.thetas.pow(2).sum(1)
        logged = nsra.tell(population, Rollouts.of(fitness, population.thetas[:, :2]))
        assert logged["novelty/reward_weight"] == used
        weights.append(nsra.weight)
    assert weights == pytest.approx(expected)
    impatient = make_algorithm("nsra", Setup(policy, 8, 0.1), {"patience": 1, "weight_delta": 1})
    assert (impatient.patience, impatient.weight_delta) == (1, 1)


@pytest.mark.parametrize("algo", ["ns", "nsra"])
def test_each_update_records_only_the_chosen_agents_behavior_return_and_steps(algo) -> None:
    """With an evaluator, the c-th mean policy played ends at (c, -c) with return c in 7
    steps; the start's play is reported with the first update."""
    seeds = []

    def evaluate(thetas, episodes, seed) -> Rollouts:
        seeds.append(seed)
        c = float(len(seeds) - 1)
        played = Rollouts.of([c], [[c, -c]])
        return dataclasses.replace(played, steps=np.array([7]))

    setup = Setup(_policy(), 8, 0.1, evaluate=evaluate)
    algorithm = make_algorithm(algo, setup, {"agents": 3})
    for generation in range(20):
        population = algorithm.ask()
        chosen, expected = algorithm.chosen, algorithm.behaviors.clone()
        told = Rollouts.of(torch.zeros(8), population.thetas[:, :2])
        scalars = algorithm.tell(population, told)
        c = float(len(algorithm.archive) - 1)
        expected[chosen] = torch.tensor([c, -c])
        assert torch.equal(algorithm.behaviors, expected)
        assert torch.equal(algorithm.archive[-1], expected[chosen])
        assert algorithm.returns[chosen] == c and algorithm.leader == chosen
        assert scalars["novelty/agent"] == chosen and scalars["novelty/agent_return"] == c
        assert scalars["novelty/leader"] == chosen and scalars["novelty/archive_size"] == c + 1
        assert scalars["novelty/mean_env_steps"] == (14 if generation == 0 else 7)
        assert scalars["novelty/member_novelty"] == pytest.approx(float(algorithm.novelty.mean()))
    assert max(seeds) < 2**31 and max(seeds) > 2**20  # episode seeds from the whole range


def test_without_an_evaluator_an_agent_is_recorded_at_its_members_average() -> None:
    algorithm = make_algorithm("ns", Setup(_policy(), 8, 0.1), {"agents": 3})
    for _ in range(4):
        population = algorithm.ask()
        chosen, before = algorithm.chosen, algorithm.behaviors
        expected = None if before is None else before.clone()
        behaviors = population.thetas[:, :2].double()
        algorithm.tell(population, Rollouts.of(torch.arange(8.0), behaviors))
        if expected is None:  # the start: every agent at the first members' average
            expected = behaviors.mean(0).expand(3, -1).clone()
        else:
            expected[chosen] = behaviors.mean(0)
        assert torch.allclose(algorithm.behaviors, expected)
        assert algorithm.returns[chosen] == 3.5


def test_the_reward_weight_mixes_the_novelty_and_return_gradients() -> None:
    """w = 0 follows the novelty ranks alone, w = 1 the return ranks alone (NES's step),
    w = 0.5 (NSR-ES) their average."""
    algorithm = make_algorithm("nsr", Setup(_policy(), 16, 0.1), {"agents": 1})
    population = algorithm.ask()
    behaviors = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)).double()
    returns = -population.thetas.pow(2).sum(1)
    algorithm.tell(population, Rollouts.of(returns, behaviors))  # the start is archived
    population, agent = algorithm.ask(), algorithm.agents[0]
    told = Rollouts.of(returns, behaviors)

    def gradient(weight: float) -> torch.Tensor:
        algorithm.weight, p = weight, agent.distribution()
        (grad,) = torch.autograd.grad(algorithm.objective(told, agent.draws(population), p), p.mu)
        return grad

    def gradient_of(values: torch.Tensor) -> torch.Tensor:
        p = agent.distribution()
        return torch.autograd.grad(fitness(values, agent.draws(population), p), p.mu)[0]

    by_novelty = gradient_of(novelty(behaviors, algorithm.archive, algorithm.neighbors))
    by_return = gradient_of(returns)
    torch.testing.assert_close(gradient(0.0), by_novelty)
    torch.testing.assert_close(gradient(1.0), by_return)
    torch.testing.assert_close(gradient(0.5), (by_novelty + by_return) / 2)


def test_telling_no_behaviors_is_a_one_line_error() -> None:
    algorithm = make_algorithm("ns", Setup(_policy(), 8, 0.1))
    message = (
        "novelty search needs behaviors and got none: train with a behavior descriptor "
        "(--descriptor auto or module:function), or tell Rollouts.of(fitness, behaviors)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        algorithm.tell(algorithm.ask(), Rollouts.of(torch.zeros(8)))


# A cup open to the left around the start: the reward (progress in +x) leads into its far wall.
CUP = ((0.5, -1.1, 0.6, 1.1), (-1.0, 1.0, 0.6, 1.1), (-1.0, -1.1, 0.6, -1.0))


def _mean_positions(algo: str, generations: int = 30) -> torch.Tensor:
    """Final positions of the mean policies of every generation: NES's mean, the archive of a
    novelty algorithm (the start and every updated agent's mean)."""
    env = PointMazeEnv(walls=CUP)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy = make_policy("mlp", env.observation_space, env.action_space, hidden=(16,))
    evaluator = Evaluator("neuroes/PointMaze-v0", policy, env_kwargs={"walls": CUP})

    def evaluate(thetas, episodes, seed) -> Rollouts:
        return evaluator.evaluate(thetas, episodes, None, seed)

    algorithm = make_algorithm(algo, Setup(policy, 40, 0.1, 0, evaluate), {"lr": 0.05})
    means = []
    for generation in range(generations):
        if algo == "nes":
            means.append(evaluate(algorithm.mean.unsqueeze(0), 1, 10_000 + generation).behaviors)
        population = algorithm.ask()
        algorithm.tell(population, evaluate(population.thetas, 1, generation))
    return torch.as_tensor(np.concatenate(means)) if algo == "nes" else algorithm.archive


def _outside_the_cup(positions: torch.Tensor) -> torch.Tensor:
    x, y = positions[:, 0], positions[:, 1]
    return (x < -1.0) | (x > 0.6) | (y.abs() > 1.1)


def test_novelty_search_reaches_places_of_a_trap_that_nes_does_not() -> None:
    """30 generations of 40 members: NES's mean runs into one corner of the cup's far wall and
    stays inside; NS-ES's mean policies leave the cup (most of the archive lies outside), and
    NSR-ES's, pulled in by the reward, cover the far wall from corner to corner."""
    nes, ns, nsr = (_mean_positions(algo) for algo in ("nes", "ns", "nsr"))

    def both_corners(positions: torch.Tensor) -> bool:
        return bool(positions[:, 1].min() < -0.95 and positions[:, 1].max() > 0.95)

    assert not _outside_the_cup(nes).any() and not both_corners(nes), nes
    assert _outside_the_cup(ns).float().mean() > 0.4, ns
    assert both_corners(nsr), nsr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--agents", "0"], "error: agents must be at least 1, got 0"),
        (["--neighbors", "0"], "error: neighbors must be at least 1, got 0"),
        (["--mean-episodes", "0"], "error: mean_episodes must be at least 1, got 0"),
        (["--descriptor", "none"], "error: novelty search needs behaviors and got none"),
        (["--algo", "nsra", "--patience", "0"], "error: patience must be at least 1, got 0"),
        (["--algo", "nsra", "--weight-delta", "0"], "error: weight_delta must be in (0, 1], "),
        (["--algo", "nsra", "--weight-delta", "1.5"], "error: weight_delta must be in (0, 1], "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flags, message, capsys, tmp_path) -> None:
    argv = ["CartPole-v1", "--algo", "ns", "--popsize", "8", "--generations", "1",
            "--logdir", str(tmp_path / "run"), "--no-progress", *flags]  # fmt: skip
    assert train.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_the_benchmark_runs_end_to_end(tmp_path, capsys) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import novelty as benchmark

    argv = ["--seeds", "0", "--generations", "2", "--jobs", "1", "--out", str(tmp_path)]
    assert benchmark.main(argv) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split()[:2] for row in rows[2:6]] == [[a, "0/1"] for a in benchmark.ALGORITHMS]
    assert (tmp_path / "novelty_hard_maze.png").stat().st_size > 10_000
