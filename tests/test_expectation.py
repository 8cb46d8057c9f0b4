"""The expectation core against analytic gradients, and its contract."""

from __future__ import annotations

import pytest
import torch

from neuroes import Normal, expectation


def _quadratic(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(x - target).pow(2).reshape(len(x), -1).sum(-1)


def _check_within(estimate: torch.Tensor, truth: torch.Tensor, per_sample: torch.Tensor) -> None:
    """The estimate is within 5 standard errors of the truth, the errors measured on the sample."""
    standard_error = per_sample.std(0) / len(per_sample) ** 0.5
    assert torch.all((estimate - truth).abs() < 5 * standard_error), (estimate, truth)
    assert torch.all(standard_error < 0.1 * truth.abs().clamp(min=1)), "sample too small to test"


def test_gradient_matches_analytic_in_one_dimension() -> None:
    # E[-(x-5)^2] = -(mu-5)^2 - sigma^2: d/dmu = -2(mu-5) = 8 at mu=1, d/dsigma = -2 sigma = -1.
    n = 400_000
    mu = torch.tensor([1.0], requires_grad=True)
    sigma = torch.tensor(0.5, requires_grad=True)
    p = Normal(mu, sigma, generator=0)
    x = p.sample(n)
    f = _quadratic(x, torch.tensor(5.0))
    value = expectation(f, x, p)
    value.backward()
    assert value.item() == pytest.approx(f.mean().item())
    eps = ((x - 1.0) / 0.5).squeeze(-1)
    _check_within(mu.grad, torch.tensor([8.0]), (f * eps / 0.5).unsqueeze(-1))
    _check_within(sigma.grad, torch.tensor(-1.0), f * (eps.pow(2) - 1) / 0.5)


def test_gradient_matches_analytic_with_diagonal_sigma() -> None:
    n = 400_000
    target = torch.tensor([2.0, -1.0, 0.5])
    mu = torch.tensor([0.0, 0.0, 1.0], requires_grad=True)
    sigma = torch.tensor([0.3, 0.6, 0.9], requires_grad=True)
    p = Normal(mu, sigma, mirrored=True, generator=1)
    x = p.sample(n)
    f = _quadratic(x, target)
    expectation(f, x, p).backward()
    eps = (x - mu.detach()) / sigma.detach()
    _check_within(mu.grad, -2 * (mu.detach() - target), f.unsqueeze(-1) * eps / sigma.detach())
    _check_within(
        sigma.grad, -2 * sigma.detach(), f.unsqueeze(-1) * (eps.pow(2) - 1) / sigma.detach()
    )


def test_gradient_reaches_log_sigma_through_its_exponential() -> None:
    mu = torch.zeros(2, requires_grad=True)
    log_sigma = torch.tensor(-1.0, requires_grad=True)
    p = Normal(mu, log_sigma.exp(), generator=2)
    x = p.sample(100_000)
    expectation(_quadratic(x, torch.zeros(2)), x, p).backward()
    # d/dlog_sigma of -2 sigma^2 is -4 sigma^2.
    assert log_sigma.grad.item() == pytest.approx(
        -4 * torch.exp(torch.tensor(-2.0)).item(), rel=0.1
    )


def test_dim_one_averages_each_row_of_a_pairwise_matrix() -> None:
    n = 100_000
    mu = torch.tensor([2.0], requires_grad=True)
    p = Normal(mu, 1.0, generator=3)
    x = p.sample(n)
    rows = torch.linspace(-1, 1, 5)
    matrix = rows.unsqueeze(1) * x.squeeze(-1).unsqueeze(0)  # (5, n): row i is c_i * x_j
    per_row = expectation(matrix, x, p, dim=1)
    torch.testing.assert_close(per_row, matrix.mean(1))
    # d/dmu E_j[c_i x_j] = c_i; weight the rows to get one scalar with gradient sum(c_i * w_i).
    weights = torch.arange(1.0, 6.0)
    (per_row * weights).sum().backward()
    truth = (rows * weights).sum()
    eps = (x - 2.0).squeeze(-1)
    _check_within(mu.grad, truth.reshape(1), ((weights @ matrix) * eps).unsqueeze(-1))


def test_negative_dim_and_extra_dimensions_broadcast() -> None:
    mu = torch.zeros(3, requires_grad=True)
    p = Normal(mu, 1.0, generator=4)
    x = p.sample(8)
    values = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(expectation(values, x, p, dim=-1), values.mean(-1))


def test_mirrored_sampling_reduces_gradient_variance_on_linear_fitness() -> None:
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])

    def gradient_estimates(mirrored: bool) -> torch.Tensor:
        estimates = []
        for seed in range(200):
            mu = torch.zeros(4, requires_grad=True)
            p = Normal(mu, 0.1, mirrored=mirrored, generator=seed)
            x = p.sample(20)
            expectation(x @ w + 10.0, x, p).backward()
            estimates.append(mu.grad.clone())
        return torch.stack(estimates)

    plain, mirrored = gradient_estimates(False), gradient_estimates(True)
    torch.testing.assert_close(mirrored.mean(0), w, atol=0.5, rtol=0)
    assert mirrored.var(0).sum() < 0.05 * plain.var(0).sum()


def test_mismatched_lengths_are_rejected() -> None:
    mu = torch.zeros(2, requires_grad=True)
    p = Normal(mu, 1.0)
    x = p.sample(10)
    with pytest.raises(
        ValueError, match=r"^values.shape\[0\] is 9 but there are 10 samples; they must be equal$"
    ):
        expectation(torch.ones(9), x, p)
    with pytest.raises(
        ValueError, match="^values must have a dimension indexing the samples, got a scalar$"
    ):
        expectation(torch.tensor(1.0), x, p)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_expectation_on_cuda() -> None:
    mu = torch.tensor([1.0], device="cuda", requires_grad=True)
    p = Normal(mu, 0.5, generator=0)
    x = p.sample(100_000)
    expectation(_quadratic(x, torch.tensor(5.0, device="cuda")), x, p).backward()
    assert mu.grad.item() == pytest.approx(8.0, abs=0.5)
