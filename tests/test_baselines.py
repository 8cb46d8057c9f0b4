"""The standard baselines against their papers: SNES and PGPE steps computed by hand, their
convergence, ClipUp's speed limit, ARS's direction selection and scaling, and CMA-ES through
pycma (convergence, exact resume from a checkpoint, the full-covariance limit)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cma.sampler import GaussFullSampler
from gymnasium.spaces import Box

from neuroes import checkpoint
from neuroes.agents import make_policy
from neuroes.algorithms import ARS, CMA, PGPE, SNES, SepCMA
from neuroes.algorithms.cmaes import MAX_FULL_DIM
from neuroes.optim import ClipUp
from neuroes.population import Population

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import algorithms as algorithms_benchmark  # noqa: E402

MU0 = torch.tensor([1.0, -2.0, 0.5, 3.0])
NEAR = torch.tensor([0.6, 0.3, 0.5, 0.9])  # near the optimum, the quadratic term ranks pairs too
D = 10
ROTATION, _ = torch.linalg.qr(
    torch.randn(D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
)
SCALES = torch.logspace(0, 2, D, dtype=torch.float64)  # Hessian eigenvalues 1 ... 100


def quadratic(x: torch.Tensor) -> np.ndarray:
    """Returns (higher is better) of a quadratic with its optimum at (0.5, ...)."""
    return -((x.double() - 0.5) ** 2 * torch.arange(1, x.shape[1] + 1)).sum(1).numpy()


def sphere(x: torch.Tensor) -> torch.Tensor:
    return (x.double() ** 2).sum(1)


def ellipsoid(x: torch.Tensor) -> torch.Tensor:
    """A rotated ellipsoid of condition number 100."""
    return ((x.double() @ ROTATION) ** 2 * SCALES).sum(1)


def minimize(algorithm, f, generations: int) -> list[float]:
    """``f`` of the mean after each generation of ``algorithm`` told ``-f``."""
    values = []
    for _ in range(generations):
        population = algorithm.ask()
        algorithm.tell(population, -f(population.thetas).numpy())
        values.append(float(f(algorithm.mean.unsqueeze(0))[0]))
    return values


def snes_by_hand(mu, sigma, z, returns, c=0.0):
    """One SNES step (Schaul et al., 2011, Algorithm 2), in float64; weight decay ``c`` adds
    ``-c * mu / sigma`` to the mean's gradient, so ``-c * sigma * mu`` to its natural step."""
    n, d = z.shape
    s = (z - mu) / sigma
    k = np.arange(1, n + 1)
    raw = np.maximum(0, np.log(n / 2 + 1) - np.log(k))
    u = np.empty(n)
    u[np.argsort(-returns, kind="stable")] = raw / raw.sum() - 1 / n
    grad_mu, grad_sigma = u @ s, u @ (s**2 - 1)
    eta_sigma = (3 + math.log(d)) / (5 * math.sqrt(d))
    return mu + sigma * (grad_mu - c * mu), sigma * np.exp(eta_sigma / 2 * grad_sigma)


@pytest.mark.parametrize("c", [0.0, 0.2])
def test_snes_steps_are_the_papers(c) -> None:
    snes = SNES(MU0, 0.3, 6, weight_decay=c, seed=4)
    mu, sigma = MU0.double().numpy(), np.full(4, 0.3)
    for _ in range(2):  # the second step starts from a sigma that differs per parameter
        population = snes.ask()
        returns = quadratic(population.thetas)
        scalars = snes.tell(population, returns)
        mu, sigma = snes_by_hand(mu, sigma, population.thetas.double().numpy(), returns, c)
        np.testing.assert_allclose(snes.mean.numpy(), mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(snes.log_sigma.detach().exp().numpy(), sigma, rtol=1e-5)
        spread = (scalars["es/sigma_min"], scalars["es/sigma_max"])
        np.testing.assert_allclose(spread, (sigma.min(), sigma.max()), rtol=1e-5)
        pairs = population.thetas[0::2] + population.thetas[1::2]
        assert not torch.allclose(pairs, 2 * population.thetas.mean(0)), "SNES does not mirror"
    assert len(set(sigma.round(8))) == 4


def centered_ranks_by_hand(f: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(f))
    ranks[np.argsort(f)] = np.arange(len(f))
    return ranks / (len(f) - 1) - 0.5


def pgpe_by_hand(mu, sigma, x, returns, lr, sigma_lr):
    """Sehnke et al. (2010), symmetric sampling with step sizes ``lr * sigma^2`` (the mean) and
    ``sigma_lr * sigma^2`` (sigma), on centered ranks with the mean rank as baseline; sigma's
    change capped at 20%."""
    eps = x[0::2] - mu
    np.testing.assert_allclose(x[1::2], mu - eps, rtol=1e-6, atol=1e-6)  # symmetric pairs
    r = centered_ranks_by_hand(returns)
    plus, minus, b = r[0::2], r[1::2], r.mean()
    step_mu = ((plus - minus) / 2) @ eps / len(eps)
    step_sigma = ((plus + minus) / 2 - b) @ ((eps**2 - sigma**2) / sigma) / len(eps)
    return step_mu, np.clip(sigma + sigma_lr * step_sigma, 0.8 * sigma, 1.2 * sigma)


@pytest.mark.parametrize("sigma_lr", [0.2, 1000.0])  # 1000: every sigma hits the 20% cap
def test_pgpe_step_is_the_papers(sigma_lr) -> None:
    pgpe = PGPE(NEAR, 0.3, 8, lr=0.5, optimizer="sgd", sigma_lr=sigma_lr, seed=4)
    population = pgpe.ask()
    returns = quadratic(population.thetas)
    pgpe.tell(population, returns)
    mu = NEAR.double().numpy()
    step_mu, sigma = pgpe_by_hand(
        mu, 0.3, population.thetas.double().numpy(), returns, 0.5, sigma_lr
    )
    np.testing.assert_allclose(pgpe.mean.numpy(), mu + 0.5 * step_mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pgpe.log_sigma.detach().exp().numpy(), sigma, rtol=1e-5)
    if sigma_lr == 1000.0:
        assert np.allclose(np.abs(sigma / 0.3 - 1), 0.2)


def test_pgpe_mirrors_and_bounds_the_change_of_sigma() -> None:
    population = PGPE(MU0, 0.3, 8, seed=4).ask()
    assert torch.allclose(population.thetas[0::2] + population.thetas[1::2], 2 * MU0)
    assert PGPE(MU0, 0.3, 8, sigma_max_change=0.99).sigma_max_change == 0.99
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^sigma_max_change must be in \(0, 1\), got {bad}$"):
            PGPE(MU0, 0.3, 8, sigma_max_change=bad)


def test_pgpe_with_clipup_first_moves_the_mean_by_lr_along_the_paper_step() -> None:
    pgpe = PGPE(NEAR, 0.3, 8, lr=0.05, seed=4)
    population = pgpe.ask()
    returns = quadratic(population.thetas)
    pgpe.tell(population, returns)
    mu = NEAR.double().numpy()
    step_mu, _ = pgpe_by_hand(mu, 0.3, population.thetas.double().numpy(), returns, 0.05, 0.1)
    expected = mu + 0.05 * step_mu / np.linalg.norm(step_mu)
    np.testing.assert_allclose(pgpe.mean.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_pgpe_hands_momentum_and_max_speed_to_clipup() -> None:
    """A max_speed below lr caps the first step at max_speed; without momentum the second step
    is the normalized gradient alone, lr long (with ClipUp's default momentum of 0.9 it is not)."""
    pgpe = PGPE(NEAR, 0.3, 8, lr=0.05, max_speed=0.03, seed=4)
    population = pgpe.ask()
    pgpe.tell(population, quadratic(population.thetas))
    assert float((pgpe.mean - NEAR).norm()) == pytest.approx(0.03, rel=1e-4)  # float32: ~1e-6
    pgpe = PGPE(NEAR, 0.3, 8, lr=0.05, momentum=0.0, max_speed=1.0, seed=4)
    for _ in range(2):
        before = pgpe.mean.clone()
        population = pgpe.ask()
        pgpe.tell(population, quadratic(population.thetas))
    assert float((pgpe.mean - before).norm()) == pytest.approx(0.05, rel=1e-4)


# Budgets: 300 generations in 10-D from (1, ..., 1) with sigma 1. Bounds are about 10x above
# what the seeds reach. ClipUp keeps its step size, so PGPE with it settles within a distance
# of a few max speeds, where the paper's plain step keeps converging.
CONVERGENCE = [
    ("snes", lambda: SNES(torch.ones(D), 1.0, 10, seed=0), sphere, 1e-10),
    ("snes", lambda: SNES(torch.ones(D), 1.0, 10, seed=0), ellipsoid, 1e-2),
    ("pgpe", lambda: PGPE(torch.ones(D), 1.0, 10, lr=1.0, optimizer="sgd", seed=0), sphere, 1e-3),
    ("pgpe", lambda: PGPE(torch.ones(D), 1.0, 10, lr=1.0, optimizer="sgd", seed=0), ellipsoid, 0.1),
    ("pgpe+clipup", lambda: PGPE(torch.ones(D), 1.0, 20, lr=0.01, seed=0), sphere, 0.03),
    ("pgpe+clipup", lambda: PGPE(torch.ones(D), 1.0, 20, lr=0.01, seed=0), ellipsoid, 0.5),
]


@pytest.mark.parametrize(
    ("name", "make", "f", "bound"),
    CONVERGENCE,
    ids=[f"{c[0]}-{c[2].__name__}" for c in CONVERGENCE],
)
def test_converges_within_the_budget(name, make, f, bound) -> None:
    start = float(f(torch.ones(1, D))[0])
    values = minimize(make(), f, 300)
    assert max(values[-50:]) < bound < start, (start, values[-50:])


def test_clipup_velocity_never_exceeds_max_speed_and_round_trips(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    params = [torch.zeros(5, requires_grad=True), torch.zeros(3, requires_grad=True)]
    optimizer = ClipUp(params, lr=0.3, momentum=0.9, max_speed=0.5)
    speeds = []
    for step in range(60):
        bias = 1.0 if step < 30 else -1.0  # a steady direction, then a reversal
        for p in params:
            p.grad = bias + 0.3 * torch.randn(p.shape, generator=generator)
        before = [p.detach().clone() for p in params]
        optimizer.step()
        moved = torch.cat([(p.detach() - b) for p, b in zip(params, before, strict=True)])
        velocity = torch.cat([optimizer.state[p]["velocity"] for p in params])
        torch.testing.assert_close(moved, velocity)  # x <- x + v
        speeds.append(float(velocity.norm()))
    assert max(speeds) <= 0.5 * (1 + 1e-6) and max(speeds) > 0.5 * (1 - 1e-6)  # the limit binds
    assert abs(speeds[0] - 0.3) < 1e-6  # first step: lr along the normalized gradient
    path = tmp_path / "clipup.pt"
    torch.save(optimizer.state_dict(), path)
    copies = [p.detach().clone().requires_grad_(True) for p in params]
    restored = ClipUp(copies, lr=0.3, momentum=0.9, max_speed=0.5)
    restored.load_state_dict(torch.load(path, weights_only=True))
    for group in (params, copies):
        for p in group:
            p.grad = torch.linspace(-1, 2, p.numel())
    optimizer.step()
    restored.step()
    assert all(torch.equal(a, b) for a, b in zip(params, copies, strict=True))


def test_clipup_default_max_speed_is_twice_lr_and_bad_values_are_errors() -> None:
    p = torch.zeros(4, requires_grad=True)
    optimizer = ClipUp([p], lr=0.1, momentum=0.99)
    for _ in range(100):
        p.grad = torch.ones(4)
        optimizer.step()
    assert abs(float(optimizer.state[p]["velocity"].norm()) - 0.2) < 1e-6
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.5"):
        ClipUp([p], lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="max_speed must be positive, got -1"):
        ClipUp([p], lr=0.1, max_speed=-1)


def test_ars_keeps_the_top_directions_and_divides_by_their_std() -> None:
    ars = ARS(MU0, 0.1, 8, lr=0.05, top=2, seed=0)
    population = ars.ask()
    deltas = ((population.thetas[0::2] - MU0) / 0.1).double().numpy()
    # Pairs (r+, r-) with max 1, 5, 7, 3: directions 2 and 1 are kept.
    returns = np.array([1.0, 0.0, 5.0, 2.0, 0.0, 7.0, 3.0, 3.0])
    ars.tell(population, returns)
    used = np.array([[0.0, 7.0], [5.0, 2.0]])
    step = ((used[:, 0] - used[:, 1]) @ deltas[[2, 1]]) / (2 * used.std())
    expected = MU0.double().numpy() + 0.05 * step
    np.testing.assert_allclose(ars.mean.numpy(), expected, rtol=1e-5, atol=1e-6)
    # Other returns of the dropped directions, and any affine change of the returns (the std
    # division), give the same step; equal returns give none.
    for changed in ([0.5, 0.9, 5.0, 2.0, 0.0, 7.0, -3.0, 2.0], 3 * returns + 100, returns / 100):
        again = ARS(MU0, 0.1, 8, lr=0.05, top=2, seed=0)
        again.tell(again.ask(), np.asarray(changed))
        np.testing.assert_allclose(again.mean.numpy(), ars.mean.numpy(), rtol=1e-5, atol=1e-6)
    flat = ARS(MU0, 0.1, 8, lr=0.05, top=2, seed=0)
    flat.tell(flat.ask(), np.full(8, 4.0))
    assert torch.equal(flat.mean, MU0)


def test_ars_uses_every_direction_by_default_and_checks_top() -> None:
    ars = ARS(MU0, 0.1, 8, seed=0)
    assert ars.top == 4
    assert ARS(MU0, 0.1, 8, top=1).top == 1
    for top in (0, 5):
        with pytest.raises(ValueError, match=r"top must be between 1 and popsize / 2 \(4 dir"):
            ARS(MU0, 0.1, 8, top=top)


@pytest.mark.parametrize("cls", [CMA, SepCMA])
def test_cma_reaches_1e_8_on_a_10d_sphere(cls) -> None:
    values = minimize(cls(torch.ones(D), 0.5, 10, seed=0), sphere, 250)
    assert values[-1] < 1e-8, values[-1]


@pytest.mark.parametrize("cls", [CMA, SepCMA])
def test_cma_resumes_exactly_from_a_checkpoint(cls, tmp_path) -> None:
    """Across pycma's lazy eigendecompositions, with numpy's global generator untouched."""
    policy = make_policy("linear", Box(-1, 1, (4,)), Box(-1, 1, (2,)))
    global_state = np.random.get_state()[1].copy()
    whole = cls(torch.ones(D), 0.5, 8, seed=3)
    minimize(whole, ellipsoid, 12)
    path = tmp_path / "cma.pt"
    checkpoint.save(path, {"policy": policy, "normalizer": None, "algorithm": whole.state_dict()})
    resumed = cls(torch.ones(D), 0.5, 8, seed=3)
    asked = resumed.ask()
    resumed.load_state_dict(checkpoint.read(path)["algorithm"])
    with pytest.raises(ValueError, match="the population it asked last"):
        resumed.tell(asked, np.zeros(8))  # asked before the state was loaded
    for algorithm in (whole, resumed):
        minimize(algorithm, ellipsoid, 40)
    assert torch.equal(whole.ask().thetas, resumed.ask().thetas)
    assert torch.equal(whole.mean, resumed.mean)
    assert np.array_equal(whole.es.sm.variances, resumed.es.sm.variances)
    assert np.array_equal(np.random.get_state()[1], global_state)


def test_full_covariance_is_refused_above_the_limit() -> None:
    too_many = torch.zeros(MAX_FULL_DIM + 1)
    message = r"limited to 2000 parameters, got 2001 \(a 31 MB covariance\); use --algo sepcma$"
    with pytest.raises(ValueError, match=message):
        CMA(too_many, 0.1, 10)
    assert CMA(torch.zeros(MAX_FULL_DIM), 0.1, 10).es.N == MAX_FULL_DIM  # the limit itself
    assert SepCMA(too_many, 0.1, 10).ask().thetas.shape == (10, MAX_FULL_DIM + 1)


def test_cma_is_told_the_population_it_asked_once() -> None:
    cma, message = (
        CMA(torch.ones(D), 0.5, 8),
        "^CMA-ES is told the results of the population it asked last$",
    )
    population = cma.ask()
    with pytest.raises(ValueError, match=message):
        cma.tell(type(population)(population.thetas + 1), np.zeros(8))
    scalars = cma.tell(population, -sphere(population.thetas).numpy())
    stds = cma.es.sigma * np.sqrt(np.diag(cma.es.C))
    assert scalars == pytest.approx({
        "cma/sigma": cma.es.sigma, "cma/std_min": stds.min(), "cma/std_max": stds.max(),
        "cma/param_norm": np.linalg.norm(cma.es.mean),
    })  # fmt: skip
    with pytest.raises(ValueError, match=message):
        cma.tell(population, np.zeros(8))  # told already


def test_cma_is_pycma_with_our_settings_quiet_and_on_its_own_generator(tmp_path, capsys) -> None:
    """The population size and diagonal covariance asked for; nothing printed or written, and
    numpy's global generator untouched (pycma draws from the algorithm's own)."""
    with pytest.raises(ValueError, match="^CMA-ES needs popsize >= 4, got 3$"):
        CMA(torch.ones(D), 0.5, 3)
    with pytest.raises(ValueError, match="the population it asked last"):
        CMA(torch.ones(D), 0.5, 4).tell(Population(torch.ones(4, D)), np.zeros(4))  # none asked
    global_state = np.random.get_state()[1].copy()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        full, diagonal = CMA(torch.ones(D), 0.5, 4), SepCMA(torch.ones(D), 0.5, 4)
        for cma in (full, diagonal):
            for _ in range(3):
                population = cma.ask()
                assert len(population) == 4
                cma.tell(population, -sphere(population.thetas).numpy())
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr() == ("", "")
    assert np.array_equal(np.random.get_state()[1], global_state)
    assert isinstance(full.es.sm, GaussFullSampler)
    assert not isinstance(diagonal.es.sm, GaussFullSampler)
    assert "sm.C" in full.state_dict()["pycma"] and "sm.C" not in diagonal.state_dict()["pycma"]


def test_the_benchmark_of_every_algorithm_runs_and_replots_its_tables(tmp_path, capsys) -> None:
    argv = ["--envs", "CartPole-v1", "--rows", "nes", "cma", "--budget", "1", "--seeds", "0",
            "--jobs", "1", "--figures", str(tmp_path)]  # fmt: skip
    algorithms_benchmark.main(argv)
    run = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [line.split(" | ")[0] for line in run[2:]] == ["| nes", "| cma"]
    assert (tmp_path / "algorithms_CartPole-v1.png").stat().st_size > 10_000
    algorithms_benchmark.main([*argv, "--replot"])
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")] == run
