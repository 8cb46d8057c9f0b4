"""The genetic algorithm and ES-ENAS: selection, mutation, masks, the controller, training."""

from __future__ import annotations

import itertools
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import neuroes
from neuroes import checkpoint, expectation, render, train
from neuroes.agents import get_flat, make_policy
from neuroes.agents.masked import EdgeSpace, PartitionSpace, make_space
from neuroes.algorithms import ENAS, GeneticAlgorithm, Setup, make_algorithm
from neuroes.algorithms.ga import rebuild
from neuroes.config import Config
from neuroes.distributions import TopK
from neuroes.rollout import Evaluator, Rollouts


def _rollouts(returns) -> Rollouts:
    n = len(returns)
    zeros = np.zeros((n, 1))
    return Rollouts(np.asarray(returns, dtype=float), np.ones(n), np.zeros((n, 0)),
                    np.ones(n, dtype=np.int64), zeros, zeros)  # fmt: skip


def _toy_fitness(thetas: torch.Tensor) -> np.ndarray:
    return -(thetas - 1.0).pow(2).sum(1).numpy()


def _initialize(dim: int):
    def initialize(seed: int) -> torch.Tensor:
        return torch.randn(dim, generator=torch.Generator().manual_seed(seed))

    return initialize


# Genetic algorithm


def test_ga_elite_is_the_best_candidate_after_re_evaluation_and_parents_are_the_top() -> None:
    calls, evaluated = [], []

    def evaluate(thetas, episodes, seed):
        calls.append((len(thetas), episodes))
        evaluated.append(thetas)
        return _rollouts(_toy_fitness(thetas))

    ga = GeneticAlgorithm(_initialize(6), 0.5, 12, parents=3, elite_candidates=4,
                          elite_episodes=7, evaluate=evaluate, seed=1)  # fmt: skip
    population = ga.ask()
    true = _toy_fitness(population.thetas)
    training = true.copy()
    training[np.argmax(true)] = -1e9  # a noisy episode hides the best member
    training[np.argsort(true)[0]] = 1e9  # and flatters the worst
    old_genomes, old = list(ga.genomes), population.thetas.clone()
    scalars = ga.tell(population, _rollouts(training))
    assert calls == [(4, 7)]
    candidates = np.argsort(-training, kind="stable")[:4]
    elite = candidates[np.argmax(true[candidates])]
    assert torch.equal(ga.vectors[0], old[elite]) and torch.equal(ga.mean, old[elite])
    top = [elite, *(i for i in np.argsort(-training, kind="stable") if i != elite)][:3]
    assert {g[:-1] for g in ga.genomes[1:]} <= {old_genomes[i] for i in top}
    assert scalars["ga/parents_return_mean"] == pytest.approx(training[top].mean())
    assert scalars["ga/genome_length"] == 1  # the elite is an initialization, not yet mutated
    assert scalars["ga/elite_env_steps"] == 4  # the toy rollouts: one step per candidate

    # Later generations: the previous elite (member 0) and the 3 best others, even when the
    # elite's training episode was its worst.
    population = ga.ask()
    training = _toy_fitness(population.thetas)
    training[0], training[1] = -1e9, 1e9
    ga.tell(population, _rollouts(training))
    others = [i for i in np.argsort(-training, kind="stable") if i != 0][:3]
    assert torch.equal(evaluated[-1], population.thetas[[0, *others]]) and others[0] == 1
    true = _toy_fitness(population.thetas)
    best = max([0, *others], key=lambda i: true[i])
    assert calls[-1] == (4, 7) and torch.equal(ga.mean, population.thetas[best])


def test_the_elite_candidates_extra_episodes_count_among_the_run_steps(tmp_path) -> None:
    summary = train.train(
        "CartPole-v1", algo="ga", popsize=8, parents=3, generations=3, elite_candidates=2,
        elite_episodes=3, target_return=math.inf, progress=False, logdir=str(tmp_path / "r"),
    )  # fmt: skip
    lines = (summary.run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    members = sum(8 * row["rollout/length_mean"] for row in rows)
    elite = sum(row["ga/elite_env_steps"] for row in rows)
    assert elite > 0 and summary.env_steps == rows[-1]["time/env_steps"]
    assert summary.env_steps == pytest.approx(members + elite)


def test_ga_starts_from_independent_initializations_of_the_policy() -> None:
    """Such et al. (2017): the first generation is popsize random initializations, each rebuilt
    from its genome's first seed; normc gives every hidden unit's weight row norm 1."""
    policy = _policy()
    options = {"parents": 2, "elite_candidates": 2}
    ga = make_algorithm("ga", Setup(policy, popsize=6, sigma=0.1), options)
    thetas = ga.ask().thetas
    first = thetas[:, : 16 * 4].view(6, 16, 4)
    torch.testing.assert_close(first.norm(dim=2), torch.ones(6, 16))
    assert len({tuple(t.tolist()) for t in thetas}) == 6
    for (seed,), theta in zip(ga.genomes, thetas, strict=True):
        assert torch.equal(ga.initialize(seed), theta)
    with pytest.raises(ValueError, match="elite_candidates must be between 2 and popsize"):
        GeneticAlgorithm(ga.initialize, 0.1, 6, parents=2, elite_candidates=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"popsize": 1}, "the genetic algorithm needs popsize >= 2, got 1"),
        ({"parents": 0}, "parents must be between 1 and popsize (6), got 0"),
        ({"parents": 7}, "parents must be between 1 and popsize (6), got 7"),
        ({"elite_candidates": 1}, "elite_candidates must be between 2 and popsize (6), got 1"),
        ({"elite_candidates": 7}, "elite_candidates must be between 2 and popsize (6), got 7"),
        ({"elite_episodes": -1}, "elite_episodes must not be negative, got -1"),
        ({"crossover": 1.5}, "crossover must be a probability, got 1.5"),
        ({"crossover": -0.1}, "crossover must be a probability, got -0.1"),
    ],
)
def test_ga_bad_settings_are_one_line_errors(kwargs, message) -> None:
    settings = {"popsize": 6, "parents": 2, "elite_candidates": 2} | kwargs
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        GeneticAlgorithm(_initialize(3), 0.1, **settings)


def test_ga_accepts_the_bounds_and_starts_from_its_first_member() -> None:
    for settings in ({"popsize": 2, "parents": 1}, {"popsize": 6, "parents": 6}):
        ga = GeneticAlgorithm(_initialize(3), 0.1, elite_candidates=2, crossover=1.0, **settings)
        assert torch.equal(ga.mean, ga.ask().thetas[0])  # the elite before any generation
    ga = GeneticAlgorithm(_initialize(3), 0.1, 6, parents=2, elite_candidates=6, elite_episodes=0)
    assert ga.elite_candidates == 6 and ga.elite_episodes == 0


def test_ga_mutates_every_member_but_the_elite_and_genomes_rebuild_them_exactly() -> None:
    ga = GeneticAlgorithm(_initialize(20), 0.1, 10, parents=4, elite_candidates=3,
                          crossover=0.5, seed=2)  # fmt: skip
    elite_fitness = []
    for _ in range(6):
        population = ga.ask()
        old = population.thetas.clone()
        scalars = ga.tell(population, _rollouts(_toy_fitness(old)))
        assert scalars["ga/elite_env_steps"] == 0  # no evaluator: no re-evaluation
        elite_fitness.append(_toy_fitness(ga.mean.unsqueeze(0))[0])
        assert torch.equal(ga.vectors[0], old[np.argmax(_toy_fitness(old))])
        children = ga.vectors[1:]
        assert (children.unsqueeze(1) != old.unsqueeze(0)).any(-1).all()  # all differ from old
    population = ga.ask()
    assert torch.equal(population.thetas[0], ga.mean)  # the elite, not mutated
    assert (population.thetas[1:] != ga.mean).any(1).all()
    assert elite_fitness == sorted(elite_fitness) and elite_fitness[-1] > elite_fitness[0]
    assert any(isinstance(g[0], tuple) for g in ga.genomes)  # crossover children exist
    memo: dict = {}
    rebuilt = torch.stack([rebuild(g, ga.initialize, 0.1, ga.table, memo) for g in ga.genomes])
    assert torch.equal(rebuilt, ga.vectors)


# ES-ENAS search spaces and controller


def _policy(hidden=(16,)):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return make_policy("mlp", Box(-1, 1, (4,)), Discrete(2), hidden=hidden)


@pytest.mark.parametrize("fraction, keep", [(0.25, [16, 8]), ((1.0, 0.125), [64, 4])])
def test_edge_masks_keep_exactly_k_edges_per_layer_and_every_bias(fraction, keep) -> None:
    policy = _policy()
    space = EdgeSpace(policy, fraction)
    assert space.keep == keep and space.edges_used == sum(keep) and space.total_edges == 96
    logits = torch.randn(space.num_logits, generator=torch.Generator().manual_seed(0))
    topologies = space.controller(logits, 0).sample(50)
    weights = torch.randn(50, space.dim).abs() + 0.1
    thetas = space.effective(weights, topologies)
    for layer, k in zip(space.layers, space.keep, strict=True):
        assert ((thetas[:, layer.weight] != 0).sum(1) == k).all()
        kept = thetas[:, layer.weight] != 0
        assert torch.equal(thetas[:, layer.weight][kept], weights[:, layer.weight][kept])
        assert torch.equal(thetas[:, layer.bias], weights[:, layer.bias])


@pytest.mark.parametrize(
    "fraction, message",
    [((0.5, 0.5, 0.5), r"one per layer \(2\), got 3"), ((1.0, 0.0), r"must be in \(0, 1\]")],
)
def test_bad_edge_fractions_are_rejected(fraction, message) -> None:
    with pytest.raises(ValueError, match=message):
        EdgeSpace(_policy(), fraction)


def test_partition_space_shares_one_weight_per_partition() -> None:
    policy = _policy()
    space = make_space("partition", policy, partitions=3)
    assert isinstance(space, PartitionSpace) and space.dim == 2 * 3 + 16 + 2
    weights = space.initial(get_flat(policy)).unsqueeze(0)
    topology = space.controller(torch.zeros(space.num_logits), 1).sample(1)
    theta = space.effective(weights, topology)[0]
    parts = topology[0].split([layer.edges for layer in space.layers])
    for k, (layer, assigned) in enumerate(zip(space.layers, parts, strict=True)):
        assert torch.equal(theta[layer.weight], weights[0, 3 * k : 3 * k + 3][assigned])
        assert len(theta[layer.weight].unique()) <= 3
    options = {"topology": "partition", "partitions": 3}
    enas = make_algorithm("enas", Setup(policy, popsize=8, sigma=0.1), options)
    assert enas.space.partitions == 3 and enas.space.dim == space.dim


def test_k_edge_draws_give_the_exact_gradient_of_a_set_function() -> None:
    logits = torch.tensor([0.3, -0.5, 1.0, 0.0, -1.2], requires_grad=True)
    p = TopK(logits, 2, generator=5)
    value = torch.tensor([1.0, 0.0, -2.0, 3.0, 0.5])  # f(set) = sum of its members' values
    orders = torch.tensor(list(itertools.permutations(range(5), 2)))
    weights = logits.exp()
    first, second = weights[orders[:, 0]], weights[orders[:, 1]]
    probabilities = first / weights.sum() * second / (weights.sum() - first)
    torch.testing.assert_close(p.log_prob(orders).exp(), probabilities)
    (exact,) = torch.autograd.grad((probabilities * value[orders].sum(1)).sum(), logits)
    draws = p.sample(100_000)
    assert (draws[:, 0] != draws[:, 1]).all()
    (estimate,) = torch.autograd.grad(expectation(value[draws].sum(1), draws, p), logits)
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)


def _set_probability(controller, target: list[int]) -> float:
    orders = torch.tensor(list(itertools.permutations(target)), dtype=torch.float32)
    return float(controller.log_prob(orders).detach().exp().sum())


def test_controller_gradient_moves_probability_toward_the_best_mask() -> None:
    policy = make_policy("linear", Box(-1, 1, (3,)), Discrete(2))  # 6 edges, keep 3
    algorithm = ENAS(get_flat(policy), 0.1, 20, 0.05, space=EdgeSpace(policy, 0.5),
                     controller_lr=0.2, seed=3)  # fmt: skip
    target = [0, 2, 4]  # the best mask: fitness counts its edges
    before = _set_probability(algorithm.controller(), target)
    logged = []
    for _ in range(30):
        population = algorithm.ask()
        hits = torch.isin(population.topologies.long(), torch.tensor(target)).sum(1)
        logged.append(algorithm.tell(population, _rollouts(hits.numpy())))
    after = _set_probability(algorithm.controller(), target)
    assert before == pytest.approx(1 / 20) and after > 0.5
    assert sorted(algorithm.topology.long().tolist()) == target
    first, last = logged[0], logged[-1]  # uniform at first: 6 * 5 * 4 equally likely draws
    assert first["enas/controller_entropy"] == pytest.approx(math.log(6 * 5 * 4))
    assert last["enas/controller_entropy"] < first["enas/controller_entropy"]
    assert first["enas/controller_grad_norm"] > 0
    assert (last["enas/edges_used"], last["enas/edge_fraction"]) == (3.0, 0.5)


@pytest.mark.parametrize("mirrored", [True, False])
def test_mirrored_pairs_share_their_topology_and_unmirrored_members_draw_their_own(mirrored):
    policy = make_policy("linear", Box(-1, 1, (3,)), Discrete(2))
    algorithm = ENAS(get_flat(policy), 0.1, 40, 0.05, mirrored=mirrored,
                     space=EdgeSpace(policy, 0.5), seed=3)  # fmt: skip
    topologies = algorithm.ask().topologies
    assert len(topologies) == 40
    same = (topologies[0::2] == topologies[1::2]).all(1)
    assert same.all() if mirrored else not same.all()


# Training: short runs, checkpoints, resume


def _logged(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


SHORT = {
    "ga": {"popsize": 32, "generations": 6, "seed": 4,
           "options": {"parents": 4, "elite_candidates": 3, "elite_episodes": 3}},
    "enas": {"popsize": 64, "generations": 15, "seed": 1},
}  # fmt: skip


@pytest.fixture(scope="module", params=["ga", "enas"])
def short_run(request, tmp_path_factory) -> tuple[str, train.Summary]:
    algo = request.param
    logdir = str(tmp_path_factory.mktemp(algo) / "run")
    config = Config("CartPole-v1", algo, logdir=logdir, progress=False, target_return=math.inf,
                    **SHORT[algo])  # fmt: skip
    return algo, train.train(config)


def test_short_cartpole_run_improves(short_run) -> None:
    algo, summary = short_run
    scalars = _logged(summary.run_dir)
    evaluations = scalars["eval/return"]
    assert evaluations[0] < 100
    assert max(evaluations[len(evaluations) // 2 :]) > 3 * evaluations[0] + 100
    prefix = {"ga": "ga/elite_return", "enas": "enas/controller_entropy"}[algo]
    assert prefix in scalars


def test_checkpoint_loads_and_plays_the_saved_policy(short_run) -> None:
    algo, summary = short_run
    path = summary.run_dir / "checkpoint.pt"
    saved = checkpoint.read(path)
    state, config = saved["algorithm"], Config.from_dict(saved["config"])
    agent = neuroes.load(path)
    if algo == "ga":
        setup = Setup(agent.policy, config.popsize, config.sigma)
        ga = make_algorithm("ga", setup, config.options)
        ga.load_state_dict(state)
        expected = ga.mean
    else:
        options = config.options
        space = make_space(options["topology"], agent.policy, options["edge_fraction"])
        expected = space.effective(state["mu"].unsqueeze(0), state["topology"].unsqueeze(0))[0]
        assert int((expected != 0).sum()) <= space.edges_used + 16 + 2  # kept edges and biases
    assert torch.equal(get_flat(agent.policy), expected)
    returns, _ = render.play(agent, 1, seed=11)
    evaluator = Evaluator("CartPole-v1", agent.policy, normalizer=agent.normalizer)
    assert returns[0] == evaluator.evaluate(expected.unsqueeze(0), 1, None, 11).returns[0]


def test_a_genetic_algorithm_state_of_neuroes_0_1_is_refused_in_one_line() -> None:
    options = {"parents": 2, "elite_candidates": 2}
    ga = make_algorithm("ga", Setup(_policy(), popsize=8, sigma=0.1), options)
    old = {"init": 5, "genomes": [(5,)] * 8, "has_elite": False, "generator": None}
    message = (
        "this genetic algorithm state was saved by neuroes 0.1, whose first generation mutated "
        "one network; it cannot be resumed (its saved policy still loads)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ga.load_state_dict(old)


def test_first_generation_members_build_the_same_on_evaluator_threads() -> None:
    """Initializations seed torch's global generator; shards built on threads must not mix."""
    options = {"parents": 4, "elite_candidates": 3, "elite_episodes": 0}
    population = make_algorithm("ga", Setup(_policy(), popsize=40, sigma=0.1), options).ask()
    expected = population.thetas
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda k: population.rows(10 * k, 10 * k + 10), range(4)))
    assert torch.equal(torch.cat(parts), expected)
