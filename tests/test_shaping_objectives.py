"""Fitness shaping, objectives, and the EvoGrad demos."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroes import Normal
from neuroes.algorithms import NES
from neuroes.objectives import fitness, maxent, maxvar, mix, silverman
from neuroes.rollout import Rollouts
from neuroes.shaping import SHAPINGS, centered_ranks, weight_decay, zscore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import evograd_demos  # noqa: E402


def test_centered_ranks_range_order_and_ties() -> None:
    ranks = centered_ranks(torch.tensor([10.0, -1.0, 3.0, 3.0, 7.0]))
    torch.testing.assert_close(ranks, torch.tensor([0.5, -0.5, -0.125, -0.125, 0.25]))
    assert ranks.sum().abs() < 1e-6
    columns = centered_ranks(torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]))
    torch.testing.assert_close(columns[:, 0], torch.tensor([-0.5, 0.0, 0.5]))
    torch.testing.assert_close(columns[:, 1], torch.zeros(3))


def test_centered_ranks_of_small_and_integer_populations_are_float32() -> None:
    torch.testing.assert_close(centered_ranks(torch.tensor([4, 2])), torch.tensor([0.5, -0.5]))
    for n in (0, 1):
        ranks = centered_ranks(torch.arange(n))
        assert ranks.dtype == torch.float32 and torch.equal(ranks, torch.zeros(n))


def test_zscore_handles_constant_values() -> None:
    z = zscore(torch.tensor([[1.0, 4.0], [3.0, 4.0]]))
    torch.testing.assert_close(z, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    assert torch.equal(zscore(torch.ones(1, 2)), torch.zeros(1, 2))


def test_utilities_follow_wierstra_et_al_and_share_them_on_ties() -> None:
    raw = [max(0.0, math.log(3) - math.log(k)) for k in (1, 2, 3, 4)]  # n = 4: ln(n/2 + 1)
    by_rank = [r / sum(raw) - 0.25 for r in raw]  # the best first
    shaped = SHAPINGS["utilities"](torch.tensor([0.0, 5.0, 2.0, -1.0]))
    assert shaped.dtype == torch.float32
    torch.testing.assert_close(
        shaped, torch.tensor([by_rank[2], by_rank[0], by_rank[1], by_rank[3]])
    )
    tied = SHAPINGS["utilities"](torch.tensor([1.0, 1.0, 0.0, 2.0]))
    middle = (by_rank[1] + by_rank[2]) / 2
    torch.testing.assert_close(tied, torch.tensor([middle, middle, by_rank[3], by_rank[0]]))
    assert abs(float(tied.sum())) < 1e-6


def test_no_shaping_keeps_float_precision_and_promotes_integers() -> None:
    double = torch.tensor([3.0, -1.0], dtype=torch.float64)
    assert SHAPINGS["none"](double) is double
    integers = SHAPINGS["none"](torch.tensor([3, -1]))
    assert integers.dtype == torch.float32 and torch.equal(integers, torch.tensor([3.0, -1.0]))


def test_zscore_keeps_float_precision_and_promotes_integers() -> None:
    double = zscore(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert double.dtype == torch.float64
    torch.testing.assert_close(double, torch.tensor([-1.5, 0.0, 1.5]).double().div(1.5**0.5))
    integers = zscore(torch.tensor([1, 3]))
    assert integers.dtype == torch.float32 and torch.equal(integers, torch.tensor([-1.0, 1.0]))


def test_weight_decay_gradient_is_minus_coefficient_times_mu() -> None:
    mu = torch.tensor([1.0, -2.0], requires_grad=True)
    weight_decay(mu, 0.1).backward()
    torch.testing.assert_close(mu.grad, torch.tensor([-0.1, 0.2]))
    mu.grad = None
    weight_decay(mu, torch.tensor([0.1, 0.3])).backward()  # one coefficient per parameter
    torch.testing.assert_close(mu.grad, torch.tensor([-0.1, 0.6]))


def test_fitness_gradient_points_uphill() -> None:
    mu = torch.zeros(2, requires_grad=True)
    p = Normal(mu, 0.1, mirrored=True, generator=0)
    x = p.sample(1000)
    fitness(x @ torch.tensor([1.0, -1.0]), x, p).backward()
    assert mu.grad[0] > 0 > mu.grad[1]


def test_maxvar_gradient_moves_toward_higher_behavior_variance() -> None:
    # Behavior b = a(x) * noise with amplitude growing in x: variance grows to the right.
    mu = torch.tensor([1.0], requires_grad=True)
    p = Normal(mu, 0.5, generator=0)
    x = p.sample(5000)
    behaviors = torch.sin(50 * x) * x.abs()
    gain = maxvar(behaviors, x, p)
    assert gain.item() == pytest.approx(1.0, rel=1e-4)  # sum over one dimension of E[z^2]
    gain.backward()
    assert mu.grad.item() > 0


def test_maxvar_follows_the_total_variance_not_each_dimensions_own() -> None:
    """Behaviors (x1, 10 x2) of a diagonal Normal at sigma = 1: the total variance
    sigma1^2 + 100 sigma2^2 has the log-sigma gradient (2, 200), direction (0.01, 1.00).
    Scaling each dimension by its own deviation would point along (0.71, 0.71)."""
    expected = torch.tensor([2.0, 200.0]) / torch.tensor([2.0, 200.0]).norm()
    for seed in range(3):
        log_sigma = torch.zeros(2, requires_grad=True)
        p = Normal(torch.zeros(2), log_sigma.exp(), mirrored=True, generator=seed)
        x = p.sample(20000)
        gain = maxvar(x * torch.tensor([1.0, 10.0]), x, p)
        assert gain.item() == pytest.approx(2.0, rel=1e-4)  # k, the number of dimensions
        gain.backward()
        direction = log_sigma.grad / log_sigma.grad.norm()
        assert torch.dot(direction, expected) > 0.9999, direction  # a 0.8 degree cone


def test_maxvar_centers_each_dimension_and_is_zero_for_constant_behaviors() -> None:
    log_sigma = torch.zeros(2, requires_grad=True)
    p = Normal(torch.zeros(2), log_sigma.exp(), mirrored=True, generator=0)
    x = p.sample(1000)
    gradients = []
    for offset in ([0.0, 0.0], [5.0, -30.0]):  # the offsets change nothing
        behaviors = x * torch.tensor([1.0, 10.0]) + torch.tensor(offset)
        (gradient,) = torch.autograd.grad(maxvar(behaviors, x, p), log_sigma, retain_graph=True)
        gradients.append(gradient)
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-5)
    mu = torch.zeros(2, requires_grad=True)
    p = Normal(mu, 1.0, mirrored=True, generator=0)
    constant = maxvar(torch.full((1000, 2), 3.0), x, p)
    constant.backward()
    assert constant.item() == 0.0 and torch.equal(mu.grad, torch.zeros(2))


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("members", [20, 64, 200])
def test_maxent_gradient_is_the_entropy_gradient(dims, members) -> None:
    """Behaviors x ~ N(0, sigma^2 I) have entropy k log sigma + const: the gradient in
    log sigma, per dimension, is 1. The estimator at the default bandwidth, averaged over 300
    populations, is within 15% of it (measured: 0.92-1.12 for 20-200 members; the mean of 300
    has a standard error under 0.03); a fixed bandwidth of 1 gives 0.45-0.76."""
    total = 0.0
    for seed in range(300):
        log_sigma = torch.zeros((), requires_grad=True)
        p = Normal(torch.zeros(dims), log_sigma.exp(), mirrored=True, generator=seed)
        x = p.sample(members)
        maxent(x, x, p).backward()
        total += log_sigma.grad.item() / dims
    assert 0.85 < total / 300 < 1.15


def test_maxent_value_is_the_kernel_density_entropy_without_its_constant() -> None:
    mu = torch.zeros(2, requires_grad=True)
    p = Normal(mu, 1.0, generator=0)
    x = p.sample(2000)
    value, h = maxent(x, x, p, bandwidth=0.3), 0.3
    entropy = value.item() - math.log(2000 / 1999) + math.log(2 * math.pi * h**2)  # (k/2) = 1
    # z-scored 2-D standard normal behaviors have entropy log(2 pi e) ~ 2.84; a KDE of
    # bandwidth 0.3 slightly overestimates it.
    assert 2.8 < entropy < 3.1
    value.backward()
    assert torch.isfinite(mu.grad).all()
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        maxent(x, x, p, bandwidth=0)
    with pytest.raises(ValueError, match="needs 2 or more, got 1"):
        maxent(x[:1], x[:1], p)
    # Two members: each one's density is the kernel at the other over n = 2.
    z = zscore(x[:2].detach())
    expected = (z[0] - z[1]).pow(2).sum() / (2 * h**2) + math.log(2)
    torch.testing.assert_close(maxent(x[:2], x[:2], p, bandwidth=h), expected)


def test_maxent_gradient_reaches_a_member_far_from_all_others() -> None:
    """A member about 7 z-units from every other has kernel values of exp(-90) and less, below
    float32's range: its density, a ratio of them, still pulls it toward its nearest
    neighbours. The gradient equals the estimator computed in float64, where nothing
    underflows."""
    mu = torch.zeros(2, requires_grad=True)
    p = Normal(mu, 1.0, generator=0)
    x = p.sample(50)
    behaviors = x.detach().clone()
    behaviors[0] = torch.tensor([12.0, 12.0])
    (ours,) = torch.autograd.grad(maxent(behaviors, x, p), mu)
    z = zscore(behaviors.double())
    distances = torch.cdist(z, z).fill_diagonal_(math.inf)
    assert distances[0].min() > 6.5
    kernel = torch.exp(-distances.pow(2) / (2 * silverman(50, 2) ** 2))
    assert kernel[0].max() < torch.finfo(torch.float32).tiny
    log_prob = p.log_prob(x).double()
    weight = torch.exp(log_prob - log_prob.detach())
    density = (kernel * weight[:, None]).mean(0)
    (exact,) = torch.autograd.grad((-density.log() * weight).mean(), mu)
    torch.testing.assert_close(ours, exact, rtol=1e-4, atol=1e-6)


def test_silverman_bandwidth() -> None:
    assert silverman(100, 1) == pytest.approx(1.0592 * 100 ** (-0.2), rel=1e-4)
    assert silverman(100, 2) == pytest.approx(100 ** (-1 / 6))


def test_mix_weights_terms_and_checks_lengths() -> None:
    a, b = torch.tensor(2.0), torch.tensor(3.0)
    assert mix([a, b], [0.5, 2.0]).item() == pytest.approx(7.0)
    with pytest.raises(ValueError, match="2 terms but 1 weights"):
        mix([a, b], [1.0])


def test_objectives_reject_mismatched_rows() -> None:
    p = Normal(torch.zeros(1), 1.0)
    x = p.sample(4)
    with pytest.raises(ValueError, match="behaviors has 3 rows but there are 4 samples"):
        maxvar(torch.zeros(3, 2), x, p)
    with pytest.raises(ValueError, match="^returns has 3 rows but there are 4 samples$"):
        fitness(torch.zeros(3), x, p)


@pytest.mark.parametrize("objective", [maxvar, maxent])
def test_one_dimensional_behaviors_are_one_column(objective) -> None:
    p = Normal(torch.zeros(2, requires_grad=True), 1.0, generator=0)
    x = p.sample(6)
    behaviors = torch.arange(6.0) ** 2
    assert torch.equal(objective(behaviors, x, p), objective(behaviors[:, None], x, p))


def test_nes_objective_is_the_expected_shaped_return() -> None:
    """With no shaping the objective at the distribution's own sample is the mean return;
    with centered ranks (the default), whose mean is 0, it is 0."""
    p = Normal(torch.zeros(2, requires_grad=True), 1.0, generator=0)
    x, returns = p.sample(4), Rollouts.of([1.0, 2.0, 4.0, 9.0])
    mu = torch.zeros(2)
    plain = NES(mu, 1.0, 4, lr=0.1, shaping="none").objective(returns, x, p)
    assert plain.item() == pytest.approx(4.0)
    assert NES(mu, 1.0, 4, lr=0.1).objective(returns, x, p).item() == pytest.approx(0.0)


def test_nes_names_the_accepted_shapings_for_an_unknown_one() -> None:
    accepted = "centered_ranks, zscore, utilities, none"
    with pytest.raises(ValueError, match=f"^unknown shaping 'ranks'; accepted: {accepted}$"):
        NES(torch.zeros(2), 1.0, 4, shaping="ranks")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("weight_decay", -0.1, "weight_decay must be a finite number >= 0, got -0.1"),
        ("weight_decay", math.inf, "weight_decay must be a finite number >= 0, got inf"),
        ("weight_decay", math.nan, "weight_decay must be a finite number >= 0, got nan"),
        ("sigma_lr", 0.0, "sigma_lr must be a positive number, got 0.0"),
        ("lr", -1.0, "lr must be a positive number, got -1.0"),
        ("optimizer", "lbfgs", "unknown optimizer 'lbfgs'; accepted: adam, sgd, clipup"),
    ],
)
def test_a_gaussian_refuses_a_bad_option_naming_it(option, value, message) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        NES(torch.zeros(2), 0.1, 4, **{"lr": 0.1, option: value})


def test_sigma_lr_is_the_step_size_of_a_learned_sigma() -> None:
    """Under SGD the step of log(sigma) is sigma_lr times its gradient: twice the rate, twice
    the step, from the same population and returns."""
    steps = []
    for sigma_lr in (0.01, 0.02):
        nes = NES(torch.zeros(3), 0.5, 8, lr=0.1, learn_sigma=True, sigma_lr=sigma_lr,
                  optimizer="sgd", seed=1)  # fmt: skip
        nes.tell(nes.ask(), Rollouts.of(torch.arange(8.0).tolist()))
        steps.append(math.log(nes.sigma / 0.5))
    assert steps[0] != 0.0
    assert steps[1] == pytest.approx(2 * steps[0], rel=1e-4)  # float32 steps: about 1e-6 here


def test_evograd_demos_reach_their_goals() -> None:
    assert evograd_demos.main([]) == 0
    assert math.isclose(evograd_demos.PEAK, 7.853981, rel_tol=1e-5)


def test_nes_weight_decay_is_openai_es_l2coeff_and_tell_reports_that_step() -> None:
    """One SGD step of lr 1: mu moves by ``(mean(ranks * eps) - c * mu) / sigma``, the direction
    of Salimans et al.'s update ``g - l2coeff * theta`` (g without 1/sigma) over sigma; ``tell``
    reports the objective (the centered ranks' part is 0 at the own sample, the L2 term is
    ``-c/(2 sigma) |mu|^2``), the gradient's norm (the step's, at lr 1) and the new mean's norm."""
    sigma, c = 0.02, 0.005
    mu = torch.linspace(-1.0, 1.0, 5)
    nes = NES(mu, sigma, 8, lr=1.0, weight_decay=c, optimizer="sgd", seed=3)
    population = nes.ask()
    returns = torch.arange(8.0).flip(0) ** 2
    n = len(returns)
    rollouts = Rollouts(returns.numpy(), np.ones(n), np.zeros((n, 0)), np.ones(n, dtype=np.int64),
                        np.zeros((n, 1)), np.zeros((n, 1)))  # fmt: skip
    scalars = nes.tell(population, rollouts)
    eps = (population.thetas - mu) / sigma
    g = (centered_ranks(returns).unsqueeze(1) * eps).mean(0)
    torch.testing.assert_close(nes.mean - mu, (g - c * mu) / sigma, rtol=1e-5, atol=1e-5)
    expected = {
        "es/objective": -0.5 * c / sigma * float(mu.pow(2).sum()),
        "es/grad_norm": float((nes.mean - mu).norm()),
        "es/sigma": sigma,
        "es/param_norm": float(nes.mean.norm()),
    }
    assert scalars == pytest.approx(expected, rel=1e-5)
