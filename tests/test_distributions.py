"""Search distributions: sampling, reproducibility, seed-rebuilt members and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from neuroes import Bernoulli, Categorical, MixtureNormal, NoiseTable, Normal, expectation
from neuroes.distributions import Joint, TopK


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_are_mu_plus_sigma_times_the_generators_noise_in_mirrored_pairs(dtype) -> None:
    """Member ``2k`` is ``mu + sigma eps_k`` and ``2k + 1`` is ``mu - sigma eps_k``, ``eps``
    drawn from the generator in the mean's dtype."""
    mu = torch.arange(6, dtype=dtype).reshape(3, 2).requires_grad_()
    eps = torch.randn((3, 3, 2), generator=torch.Generator().manual_seed(0), dtype=dtype)
    x = Normal(mu, 0.5, mirrored=True, generator=0).sample(6)
    assert x.shape == (6, 3, 2) and x.dtype == dtype and not x.requires_grad
    assert torch.equal(x[0::2], mu.detach() + 0.5 * eps)
    assert torch.equal(x[1::2], mu.detach() - 0.5 * eps)
    plain = Normal(mu, 0.5, generator=0).sample(3)
    assert torch.equal(plain, mu.detach() + 0.5 * eps)


def test_same_seed_same_samples_different_seed_different() -> None:
    mu = torch.zeros(5)
    a = Normal(mu, 1.0, generator=11).sample(4)
    b = Normal(mu, 1.0, generator=11).sample(4)
    c = Normal(mu, 1.0, generator=12).sample(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampling_leaves_global_random_state_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    Normal(torch.zeros(10), 1.0, generator=1).sample(100)
    assert torch.equal(torch.rand(3), expected)


def test_members_rebuilt_from_seeds_equal_the_batch() -> None:
    mu = torch.randn(50, generator=torch.Generator().manual_seed(0))
    p = Normal(mu, 0.1, mirrored=True, generator=3)
    seeds, signs = p.sample_seeds(8)
    assert torch.equal(seeds[0::2], seeds[1::2]) and torch.equal(signs[0::2], -signs[1::2])
    table = NoiseTable.for_dim(50)
    batch = p.rebuild(seeds, signs, table)
    for i in range(8):
        torch.testing.assert_close(
            p.rebuild(seeds[i : i + 1], signs[i : i + 1], table)[0], batch[i]
        )
    torch.testing.assert_close(batch[0] + batch[1], 2 * mu)
    # The table's noise is standard normal.
    noise = table.noise(torch.arange(0, 2000, 37), 50)
    assert abs(noise.mean().item()) < 0.1 and abs(noise.std().item() - 1) < 0.1


def test_noise_table_rejects_vectors_too_large() -> None:
    with pytest.raises(ValueError, match="too small for 5000 parameters"):
        NoiseTable(size=10_000).noise(torch.tensor([1]), 5000)


@pytest.mark.parametrize("sigma", [0.0, -1.0, torch.tensor([1.0, -0.1])])
def test_non_positive_sigma_is_rejected(sigma) -> None:
    with pytest.raises(ValueError, match="sigma must be positive"):
        Normal(torch.zeros(2), sigma)


def test_bad_sample_counts_and_shapes_are_rejected() -> None:
    p = Normal(torch.zeros(2), 1.0, mirrored=True)
    with pytest.raises(ValueError, match="even number of samples, got 5"):
        p.sample(5)
    with pytest.raises(ValueError, match="^the number of samples must be positive, got 0$"):
        p.sample(0)
    assert Normal(torch.zeros(2), 1.0).sample(1).shape == (1, 2)  # one draw is a sample
    for mu, kind in (([0.0, 1.0], "list"), (torch.zeros(2, dtype=torch.int64), "Tensor")):
        with pytest.raises(ValueError, match=f"^mu must be a floating-point tensor, got {kind}$"):
            Normal(mu, 1.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        Normal(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match=r"event shape \(3,\), the distribution has \(2,\)"):
        p.log_prob(torch.zeros(4, 3))


def test_a_fixed_sigma_takes_the_means_dtype() -> None:
    p = Normal(torch.zeros(2), torch.tensor(0.5, dtype=torch.float64), generator=0)
    assert p.sigma.dtype == torch.float32 and p.sample(2).dtype == torch.float32
    assert Normal(torch.zeros(2, dtype=torch.float64), 0.5).sigma.dtype == torch.float64


def test_normal_log_prob_matches_torch() -> None:
    mu, sigma = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    x = torch.randn(7, 2)
    expected = torch.distributions.Normal(mu, sigma).log_prob(x).sum(-1)
    torch.testing.assert_close(Normal(mu, sigma).log_prob(x), expected)


def test_mixture_log_prob_and_sample() -> None:
    mus = torch.tensor([[-3.0], [3.0]])
    p = MixtureNormal(mus, 0.5, generator=0)
    x = p.sample(10_000)
    assert x.shape == (10_000, 1)
    assert abs((x > 0).float().mean().item() - 0.5) < 0.03
    expected = torch.logsumexp(
        torch.stack([torch.distributions.Normal(m, 0.5).log_prob(x).sum(-1) for m in mus]), 0
    ) - torch.log(torch.tensor(2.0))
    torch.testing.assert_close(p.log_prob(x), expected)


def test_mixture_learns_its_weights_toward_better_component() -> None:
    mus = torch.tensor([[-3.0], [3.0]])
    logits = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for step in range(50):
        p = MixtureNormal(mus, 0.5, logits=logits, generator=step)
        x = p.sample(200)
        loss = -expectation(x.squeeze(-1), x, p)  # larger x is better
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert logits.softmax(0)[1] > 0.9


def test_bernoulli_and_categorical_contract() -> None:
    logits = torch.tensor([2.0, -2.0, 0.0])
    b = Bernoulli(logits, generator=0)
    x = b.sample(20_000)
    assert x.shape == (20_000, 3)
    torch.testing.assert_close(x.mean(0), torch.sigmoid(logits), atol=0.02, rtol=0)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(b.log_prob(x), expected)

    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
    c = Categorical(logits, generator=0)
    x = c.sample(20_000)
    assert x.shape == (20_000, 2) and x.dtype == torch.int64
    frequency = torch.stack([(x[:, 0] == k).float().mean() for k in range(3)])
    torch.testing.assert_close(frequency, logits[0].softmax(0), atol=0.02, rtol=0)
    expected = torch.distributions.Categorical(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(c.log_prob(x), expected)


def test_categorical_gradient_moves_toward_the_best_choice() -> None:
    logits = torch.zeros(4, requires_grad=True)
    reward = torch.tensor([0.0, 0.0, 1.0, 0.0])
    optimizer = torch.optim.SGD([logits], lr=1.0)
    for step in range(100):
        p = Categorical(logits, generator=step)
        x = p.sample(64)
        loss = -expectation(reward[x], x, p)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert logits.softmax(0).argmax().item() == 2
    assert logits.softmax(0)[2] > 0.8


def test_entropies_equal_torch_distributions() -> None:
    """The closed forms, summed over the event, against torch.distributions' per-variable ones;
    Normal with a scalar and with a per-coordinate sigma."""
    mu = torch.tensor([0.3, -1.0, 2.0])
    for sigma in (0.5, torch.tensor([0.1, 1.0, 3.0])):
        expected = torch.distributions.Normal(mu, sigma).entropy().sum()
        torch.testing.assert_close(Normal(mu, sigma).entropy(), expected)
    logits = torch.tensor([[-2.0, 0.0, 1.5], [0.5, 3.0, -1.0]])
    expected = torch.distributions.Bernoulli(logits=logits).entropy().sum()
    torch.testing.assert_close(Bernoulli(logits).entropy(), expected)
    expected = torch.distributions.Categorical(logits=logits).entropy().sum()
    torch.testing.assert_close(Categorical(logits).entropy(), expected)
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))  # (2, 3) variables
    expected = torch.distributions.Categorical(logits=logits).entropy().sum()
    torch.testing.assert_close(Categorical(logits).entropy(), expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: MixtureNormal(torch.tensor([[-3.0, 0.0], [3.0, 1.0]]), 0.5, generator=g),
        lambda g: Bernoulli(torch.tensor([0.5, -1.0, 2.0]), generator=g),
        lambda g: Categorical(torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]), generator=g),
        lambda g: TopK(torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]), 2, generator=g),
    ],
    ids=["mixture", "bernoulli", "categorical", "top-k"],
)
def test_samples_follow_the_generator_and_refuse_no_draws(make) -> None:
    torch.manual_seed(0)  # a draw from the global generator would differ between the two
    first = make(7).sample(64)
    torch.manual_seed(1)
    assert torch.equal(first, make(7).sample(64))
    assert not torch.equal(first, make(8).sample(64))
    assert make(0).sample(1).shape == first[:1].shape
    with pytest.raises(ValueError, match="the number of samples must be positive, got 0"):
        make(0).sample(0)


def test_mixture_components_have_the_shared_spread_and_scalar_events() -> None:
    p = MixtureNormal(torch.tensor([[-3.0], [3.0]]), 0.5, generator=0)
    x = p.sample(20_000)
    for side in (x[x < 0], x[x > 0]):
        torch.testing.assert_close(side.std(), torch.tensor(0.5), atol=0.02, rtol=0)
    scalar = MixtureNormal(torch.tensor([-3.0, 3.0]), 0.5, generator=0)  # (K,): scalar events
    assert scalar.event_shape == () and scalar.sample(5).shape == (5,)
    with pytest.raises(ValueError, match="^mus must stack the component means on dimension 0$"):
        MixtureNormal(torch.tensor(1.0), 0.5)
    with pytest.raises(ValueError, match=r"logits must have shape \(2,\), got \(3,\)"):
        MixtureNormal(torch.tensor([-3.0, 3.0]), 0.5, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="^sigma must be positive everywhere, got -1.0$"):
        MixtureNormal(torch.tensor([-3.0, 3.0]), -1.0)


def test_discrete_log_probs_sum_over_events_of_any_shape() -> None:
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -2.0]])  # a (2, 3) event of 0/1 draws
    x = Bernoulli(logits, generator=0).sample(5)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2))
    torch.testing.assert_close(Bernoulli(logits).log_prob(x), expected)
    torch.testing.assert_close(Bernoulli(logits).log_prob(x.long()), expected)  # 0/1 integers
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))  # (2, 3) events
    c = Categorical(logits, generator=0)
    x = c.sample(5)
    assert x.shape == (5, 2, 3)
    expected = torch.distributions.Categorical(logits=logits).log_prob(x).sum((1, 2))
    torch.testing.assert_close(c.log_prob(x), expected)
    assert torch.equal(c.mode(), logits.argmax(-1))
    with pytest.raises(
        ValueError, match="^logits must have the categories on their last dimension$"
    ):
        Categorical(torch.tensor(1.0))


def test_top_k_log_prob_is_plackett_luce_for_every_batch_row() -> None:
    logits = torch.tensor([[0.0, 1.0, -1.0, 2.0], [3.0, 0.5, 0.0, -2.0]])
    p = TopK(logits, 2, generator=0)
    x = p.sample(6)
    assert x.shape == (6, 2, 2) and torch.equal(p.mode(), torch.tensor([[3, 1], [0, 1]]))
    expected = []
    for draw in x.tolist():
        total = 0.0
        for row, (first, second) in zip(logits.tolist(), draw, strict=True):
            rest = sum(math.exp(v) for i, v in enumerate(row) if i != first)
            total += row[first] - math.log(sum(map(math.exp, row)))
            total += row[second] - math.log(rest)
        expected.append(total)
    torch.testing.assert_close(p.log_prob(x), torch.tensor(expected))


def test_joint_draws_are_floats_of_the_widest_part_and_split_back() -> None:
    with pytest.raises(ValueError, match="^a joint distribution needs at least one component$"):
        Joint()
    indices, values = torch.tensor([[2], [0]]), torch.tensor([[0.5, -1.0], [1.5, 2.0]])
    assert Joint.join(indices, indices).dtype == torch.float32
    joined = Joint.join(indices, values.double())
    assert joined.dtype == torch.float64
    assert torch.equal(joined, torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.5, 2.0]]).double())
    joint = Joint(Categorical(torch.zeros(1, 3)), Normal(torch.zeros(2), 1.0))
    first, second = joint.split(joined)
    assert torch.equal(first, indices.double()) and torch.equal(second, values.double())


def test_top_k_takes_one_to_all_categories() -> None:
    logits = torch.tensor([0.0, 1.0, 2.0])
    assert TopK(logits, 1).mode().tolist() == [2] and TopK(logits, 3).mode().tolist() == [2, 1, 0]
    for k in (0, 4):
        message = f"k must be between 1 and the number of categories, got k={k} for logits of "
        with pytest.raises(ValueError, match=message + r"shape \(3,\)"):
            TopK(logits, k)
    with pytest.raises(ValueError, match=r"shape \(\)"):
        TopK(torch.tensor(1.0), 1)
