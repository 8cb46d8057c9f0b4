"""Members kept as seeds: the score-function fast path and chunked evaluation.

The fast path (:func:`neuroes.noise.log_prob`) computes in float32 from the noise what the
generic path computes by autograd through ``Normal.log_prob`` of the member vectors. It is
compared with the generic path run in float64 on the same noise: the two differ only by
float32 rounding of sums over members and parameters (relative 1e-5 here), while the generic
path in float32 would also lose digits in ``(x - mu) / sigma`` when ``|mu|`` >> sigma.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from neuroes.agents import MLPPolicy, get_flat
from neuroes.distributions import Normal
from neuroes.expectation import expectation
from neuroes.noise import Draws, NoiseTable
from neuroes.objectives import fitness, maxent, maxvar
from neuroes.population import Population
from neuroes.rollout import Evaluator

DIM, N = 50, 24
TABLE = NoiseTable(2**16, seed=3)


def _draws(mirrored: bool, at_mean: int = 0) -> Draws:
    seeds, signs = Normal(torch.zeros(DIM), 1.0, mirrored, generator=5).sample_seeds(N)
    signs[:at_mean] = 0
    return Draws(seeds, signs, TABLE)


def _gradients(objective, dtype, sigma_kind: str, draws: Draws, fast: bool) -> list[torch.Tensor]:
    """Gradients of ``objective(sample, p)`` in mu and log-sigma, by either path."""
    generator = torch.Generator().manual_seed(0)
    mu = (torch.randn(DIM, generator=generator) * 2).to(dtype).requires_grad_(True)
    shape = () if sigma_kind != "diagonal" else (DIM,)
    base = 0.05 + 0.1 * torch.rand(shape, generator=generator)
    log_sigma = base.log().to(dtype).requires_grad_(sigma_kind != "fixed")
    p = Normal(mu, log_sigma.exp())
    sample = draws if fast else p.rebuild(draws.seeds, draws.signs, draws.table)
    objective(sample, p).backward()
    return [x.grad for x in (mu, log_sigma) if x.grad is not None]


def _returns(draws: Draws) -> torch.Tensor:
    return torch.linspace(-1, 2, len(draws)).roll(7)


def _behaviors(draws: Draws) -> torch.Tensor:  # 2-D, one dimension ten times the other's scale
    values = torch.linspace(0, 1, len(draws))
    return torch.stack([values.roll(3).sin(), 10 * values.roll(11).cos()], 1)


OBJECTIVES = {
    "expectation": lambda s, p: expectation(_returns(s).to(p.mu.dtype), s, p),
    "fitness": lambda s, p: fitness(_returns(s), s, p),
    "maxvar": lambda s, p: maxvar(_behaviors(s), s, p),
    "maxent": lambda s, p: maxent(_behaviors(s), s, p),
}


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("sigma_kind", ["fixed", "learned", "diagonal"])
@pytest.mark.parametrize("mirrored", [True, False])
def test_fast_path_gradients_equal_the_generic_path(objective, sigma_kind, mirrored) -> None:
    draws = _draws(mirrored, at_mean=2)  # rows of the mean itself count too
    fast = _gradients(OBJECTIVES[objective], torch.float32, sigma_kind, draws, fast=True)
    generic = _gradients(OBJECTIVES[objective], torch.float64, sigma_kind, draws, fast=False)
    assert len(fast) == len(generic) == (1 if sigma_kind == "fixed" else 2)
    for a, b in zip(fast, generic, strict=True):
        assert a.dtype == torch.float32
        assert torch.allclose(a.double(), b, rtol=1e-5, atol=1e-5 * b.abs().max())


def test_fast_path_log_prob_values_equal_the_generic_path() -> None:
    draws = _draws(mirrored=True, at_mean=1)
    mu, sigma = torch.randn(DIM, dtype=torch.float64), torch.full((DIM,), 0.2, dtype=torch.float64)
    p = Normal(mu, sigma)
    generic = p.log_prob(p.rebuild(draws.seeds, draws.signs, TABLE))
    assert torch.allclose(p.log_prob(draws), generic, rtol=1e-12)


def test_fast_path_chunks_do_not_change_the_gradient(monkeypatch) -> None:
    draws = _draws(mirrored=True)
    whole = _gradients(OBJECTIVES["fitness"], torch.float32, "diagonal", draws, fast=True)
    monkeypatch.setattr("neuroes.noise.CHUNK", 3 * DIM)  # three windows per chunk
    chunked = _gradients(OBJECTIVES["fitness"], torch.float32, "diagonal", draws, fast=True)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_rebuild_into_a_buffer_equals_a_fresh_rebuild() -> None:
    draws = _draws(mirrored=True, at_mean=3)
    p = Normal(torch.randn(DIM), torch.rand(DIM) + 0.1)
    buffer = torch.full((N, DIM + 14), float("nan"))[:, :DIM]  # a strided view, as the evaluator's
    built = p.rebuild(draws.seeds, draws.signs, TABLE, out=buffer)
    assert built.data_ptr() == buffer.data_ptr()
    assert torch.equal(built, p.rebuild(draws.seeds, draws.signs, TABLE))
    assert torch.equal(built[:3], p.mu.expand(3, -1))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_chunked_evaluation_equals_whole_population_bitwise(env_id) -> None:
    import gymnasium as gym

    env = gym.make(env_id)
    policy = MLPPolicy(env.observation_space, env.action_space, hidden=(8,))
    mu = get_flat(policy)
    p = Normal(mu, 0.5, mirrored=True, generator=1)
    seeds, signs = p.sample_seeds(10)
    population = Population(None, seeds, signs, mu=mu, sigma=p.sigma, table=NoiseTable(2**20))
    with pytest.raises(ValueError, match="^the mean rows of a seeded population must be its mu$"):
        population.with_mean(mu + 1, 2)  # another agent's mean, say
    population = population.with_mean(mu, 2)
    evaluator = Evaluator(env_id, policy, threads=1)
    whole = evaluator.evaluate(population.thetas, episodes=2, max_steps=60, seed=4)
    evaluator.chunk_bytes = 3 * 4 * 2 * mu.numel()  # three members of two episodes per chunk
    chunked = evaluator.evaluate(population, episodes=2, max_steps=60, seed=4)
    for name in ("returns", "lengths", "behaviors", "observation_sum", "observation_sum_sq"):
        assert np.array_equal(getattr(chunked, name), getattr(whole, name)), name
    assert len(set(whole.returns.tolist())) > 3  # the members differ


def test_a_table_adopts_values_received_from_another_process() -> None:
    table = NoiseTable(2**16, seed=99)
    received = torch.arange(2**16, dtype=torch.float32)  # stands for the learner's shared copy
    table.adopt(received)
    assert table.values().data_ptr() == received.data_ptr()
    assert torch.equal(table.noise(torch.tensor([5]), 3), torch.tensor([[5.0, 6.0, 7.0]]))
    with pytest.raises(ValueError, match="a table of 65536 values"):
        table.adopt(torch.zeros(10))
    fresh = NoiseTable(2**16, seed=98)  # built here: the values of randn, private until shared
    expected = torch.randn(2**16, generator=torch.Generator().manual_seed(98))
    assert torch.equal(fresh.values(), expected) and not fresh.values().is_shared()
    shared = fresh.shared()
    assert shared.is_shared() and shared.data_ptr() == fresh.values().data_ptr()


def test_a_table_is_built_once_when_threads_read_it_first() -> None:
    table = NoiseTable(2**22, seed=1234)
    with ThreadPoolExecutor(4) as pool:
        values = list(pool.map(lambda _: table.values(), range(4)))
    assert all(value is values[0] for value in values)
