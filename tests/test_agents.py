"""Tests for neuroes.agents: heads, policies, flat parameter views and the normalizer."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from gymnasium import spaces

from neuroes.agents import (
    POLICIES,
    BatchedForward,
    GRUPolicy,
    LinearPolicy,
    MLPPolicy,
    ObservationNormalizer,
    flatten_observations,
    get_flat,
    make_head,
    make_policy,
    num_params,
    observation_dim,
    set_flat,
)
from neuroes.agents.activations import ACTIVATIONS, sigmoid
from neuroes.agents.policies import gru_cell


def obs_box(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)


DISCRETE_2 = spaces.Discrete(2)
BOX_6 = spaces.Box(-1.0, 1.0, (6,), dtype=np.float32)


# ---------------------------------------------------------------- heads


def test_discrete_head_argmax_plus_start():
    head = make_head(spaces.Discrete(3, start=-1))
    assert head.out_features == 3
    out = torch.tensor([[0.1, 0.9, 0.0], [2.0, -1.0, 1.0], [0.0, 0.0, 5.0]])
    actions = head(out)
    assert actions.dtype == torch.long
    assert actions.tolist() == [0, -1, 1]
    array = head.to_numpy(actions)
    assert array.dtype == np.int64 and array.tolist() == [0, -1, 1]


def test_box_head_tanh_respects_bounds_and_passes_unbounded_dims():
    low = np.array([-1.0, 0.0, -np.inf, 2.0], dtype=np.float32)
    high = np.array([1.0, 10.0, np.inf, np.inf], dtype=np.float32)
    head = make_head(spaces.Box(low, high, dtype=np.float32))
    assert head.out_features == 4
    out = torch.randn(256, 4) * 10
    actions = head(out)
    assert actions.dtype == torch.float32 and actions.shape == (256, 4)
    torch.testing.assert_close(actions[:, 0], torch.tanh(out[:, 0]))
    torch.testing.assert_close(actions[:, 1], 5 + 5 * torch.tanh(out[:, 1]))
    assert torch.equal(actions[:, 2], out[:, 2])
    assert torch.equal(actions[:, 3], out[:, 3].clamp(min=2.0))
    assert (actions >= torch.from_numpy(low)).all() and (actions <= torch.from_numpy(high)).all()
    zero = head(torch.zeros(1, 4))
    torch.testing.assert_close(zero, torch.tensor([[0.0, 5.0, 0.0, 2.0]]))


def test_box_head_reshapes_and_casts():
    space = spaces.Box(-2.0, 3.0, (2, 3), dtype=np.float64)
    head = make_head(space)
    assert head.out_features == 6
    actions = head(torch.randn(5, 6) * 100)
    assert actions.shape == (5, 2, 3)
    array = head.to_numpy(actions)
    assert array.dtype == np.float64 and array.shape == (5, 2, 3)
    assert all(space.contains(a) for a in array)


def test_box_head_huge_finite_bounds_stay_finite():
    big = np.finfo(np.float32).max
    head = make_head(spaces.Box(-big, big, (3,), dtype=np.float32))
    actions = head(torch.tensor([[-1e3, 0.0, 0.5]]))
    assert torch.isfinite(actions).all()
    assert actions[0, 1] == 0.0 and actions[0, 2] > 0


def test_box_head_clip_is_clipped_identity():
    head = make_head(spaces.Box(-1.0, 2.0, (3,), dtype=np.float32), box="clip")
    out = torch.tensor([[-5.0, 0.5, 7.0], [-0.25, 1.5, 2.0]])
    assert torch.equal(head(out), torch.tensor([[-1.0, 0.5, 2.0], [-0.25, 1.5, 2.0]]))


def test_multibinary_head():
    head = make_head(spaces.MultiBinary([2, 2]))
    assert head.out_features == 4
    actions = head(torch.tensor([[1.0, -1.0, 0.0, 3.0]]))
    assert actions.dtype == torch.long
    assert actions.tolist() == [[[1, 0], [0, 1]]]
    assert head.to_numpy(actions).dtype == np.int8


def test_multidiscrete_head_argmax_per_block_plus_start():
    space = spaces.MultiDiscrete([3, 2, 4], start=[1, 0, -2])
    head = make_head(space)
    assert head.out_features == 9
    out = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0, 0.0, 0.0]])
    actions = head(out)
    assert actions.dtype == torch.long
    assert actions.tolist() == [[3, 0, -1]]
    array = head.to_numpy(actions)
    assert array.dtype == space.dtype and space.contains(array[0])


def test_unsupported_spaces_and_box_modes():
    tuple_space = spaces.Tuple([DISCRETE_2, DISCRETE_2])
    message = (
        f"unsupported action space {tuple_space!r}; "
        "supported: Box, Discrete, MultiBinary, MultiDiscrete"
    )
    with pytest.raises(ValueError) as error:
        make_head(tuple_space)
    assert str(error.value) == message
    with pytest.raises(ValueError, match="MultiDiscrete needs a flat nvec"):
        make_head(spaces.MultiDiscrete([[2, 3], [4, 5]]))
    with pytest.raises(ValueError, match="accepted: tanh, clip"):
        make_head(BOX_6, box="sigmoid")


# ---------------------------------------------------------------- observations and policies


def test_observation_dim_and_flatten():
    box = spaces.Box(-1.0, 1.0, (3, 2), dtype=np.float64)
    assert observation_dim(box) == 6
    obs = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    flat = flatten_observations(box, obs)
    assert flat.dtype == np.float32 and flat.shape == (2, 6)
    assert np.array_equal(flat, obs.reshape(2, 6))

    discrete = spaces.Discrete(4, start=1)
    assert observation_dim(discrete) == 4
    one_hot = flatten_observations(discrete, np.array([1, 4, 2]))
    assert one_hot.dtype == np.float32
    assert np.array_equal(one_hot, np.eye(4, dtype=np.float32)[[0, 3, 1]])

    with pytest.raises(ValueError, match="supported: Box, Discrete"):
        observation_dim(spaces.MultiBinary(3))


def test_mlp_structure_and_init():
    policy = MLPPolicy(obs_box(5), BOX_6, hidden=(8, 7), activation="relu")
    assert [(layer.in_features, layer.out_features) for layer in policy.layers] == [
        (5, 8),
        (8, 7),
        (7, 6),
    ]
    assert all(isinstance(layer, torch.nn.Linear) for layer in policy.layers)
    norms = policy.layers[-1].weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.full((6,), 0.01))
    torch.testing.assert_close(policy.layers[0].weight.norm(dim=1), torch.ones(8))
    assert all((layer.bias == 0).all() for layer in policy.layers)
    assert num_params(policy.head) == 0

    out, state = policy(torch.randn(3, 5))
    assert state is None and out.shape == (3, 6)
    assert policy.initial_state(3) is None

    with pytest.raises(ValueError, match="accepted: tanh, relu, elu, gelu, silu"):
        MLPPolicy(obs_box(5), BOX_6, activation="sigmoid")


def test_mlp_forward_applies_activation_between_layers_only():
    policy = MLPPolicy(obs_box(4), BOX_6, hidden=(16,), activation="elu")
    with torch.no_grad():
        policy.layers[-1].bias.fill_(-3.0)
    obs = torch.randn(10, 4)
    hidden = torch.nn.functional.elu(policy.layers[0](obs))
    out, _ = policy(obs)
    torch.testing.assert_close(out, policy.layers[1](hidden))
    assert (out < 0).all()  # no activation after the last layer


def test_linear_policy_and_make_policy():
    policy = make_policy("linear", obs_box(4), DISCRETE_2)
    assert isinstance(policy, LinearPolicy) and len(policy.layers) == 1
    obs = torch.randn(7, 4)
    torch.testing.assert_close(policy(obs)[0], policy.layers[0](obs))
    actions, state = policy.act(obs)
    assert state is None and actions.dtype == torch.long and actions.shape == (7,)
    assert isinstance(make_policy("mlp", obs_box(4), BOX_6, hidden=(3,)), MLPPolicy)
    assert set(POLICIES) == {"linear", "mlp", "gru"}
    with pytest.raises(ValueError, match="accepted: linear, mlp, gru"):
        make_policy("transformer", obs_box(4), DISCRETE_2)


def test_policy_act_uses_head():
    policy = make_policy("mlp", obs_box(3), spaces.Box(0.0, 2.0, (2,), dtype=np.float32))
    set_flat(policy, torch.randn(num_params(policy)) * 3)
    obs = torch.randn(50, 3)
    actions, _ = policy.act(obs)
    torch.testing.assert_close(actions, 1 + torch.tanh(policy(obs)[0]))
    assert (actions >= 0).all() and (actions <= 2).all()


def test_gru_state_semantics():
    torch.manual_seed(0)
    policy = GRUPolicy(obs_box(4), DISCRETE_2, hidden_size=5)
    assert policy.recurrent and not MLPPolicy.recurrent
    state = policy.initial_state(3)
    assert state.shape == (3, 5) and torch.equal(state, torch.zeros(3, 5))
    first, second = torch.randn(3, 4), torch.randn(3, 4)
    out0, h1 = policy(first, state)
    torch.testing.assert_close(h1, policy.cell(first, state))
    torch.testing.assert_close(out0, policy.out(h1))
    assert torch.equal(policy(first)[1], h1)  # None state means the initial state
    out_carried, h2 = policy(second, h1)
    out_reset, _ = policy(second, policy.initial_state(3))
    assert not torch.allclose(out_carried, out_reset)
    torch.testing.assert_close(h2, policy.cell(second, h1))
    x, h = torch.randn(6, 4), torch.randn(6, 5)
    torch.testing.assert_close(gru_cell(policy.cell, x, h), policy.cell(x, h))


# ---------------------------------------------------------------- flat views


def test_flat_round_trip_and_errors():
    policy = MLPPolicy(obs_box(4), DISCRETE_2, hidden=(3,))
    assert num_params(policy) == 4 * 3 + 3 + 3 * 2 + 2
    flat = get_flat(policy)
    expected = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])
    assert torch.equal(flat, expected) and not flat.requires_grad
    flat += 1.0  # a copy: the parameters do not move
    assert torch.equal(get_flat(policy), expected)
    vector = torch.randn(num_params(policy))
    set_flat(policy, vector)
    assert torch.equal(get_flat(policy), vector)
    assert torch.equal(policy.layers[0].weight, vector[:12].view(3, 4))
    with pytest.raises(ValueError, match="vector has 5 elements, module has 23 parameters"):
        set_flat(policy, torch.zeros(5))


def build(kind: str, obs_dim: int, action_space: spaces.Space, seed: int = 0):
    torch.manual_seed(seed)
    kwargs = {"hidden_size": 8} if kind == "gru" else {}
    return make_policy(kind, obs_box(obs_dim), action_space, **kwargs)


CASES = [
    ("mlp", "bmm"),
    ("mlp", "vmap"),
    ("linear", "bmm"),
    ("linear", "vmap"),
    ("gru", "vmap"),
]


@pytest.mark.parametrize(("kind", "mode"), CASES)
@pytest.mark.parametrize(("obs_dim", "action_space"), [(4, DISCRETE_2), (17, BOX_6)])
def test_batched_forward_matches_policy(kind, mode, obs_dim, action_space):
    policy = build(kind, obs_dim, action_space)
    batched = BatchedForward(policy, mode)
    count, batch = 6, 3
    thetas = torch.randn(count, num_params(policy)) * 0.5
    obs = torch.randn(count, batch, obs_dim)
    state = torch.randn(count, batch, 8) if policy.recurrent else None
    out, new_state = batched(thetas, obs, state)
    assert out.shape == (count, batch, policy.head.out_features)
    assert (new_state is None) == (not policy.recurrent)
    for i in range(count):
        set_flat(policy, thetas[i])
        expected, expected_state = policy(obs[i], None if state is None else state[i])
        torch.testing.assert_close(out[i], expected)
        if policy.recurrent:
            torch.testing.assert_close(new_state[i], expected_state)


def test_batched_forward_modes():
    mlp, gru = build("mlp", 4, DISCRETE_2), build("gru", 4, DISCRETE_2)
    assert BatchedForward(mlp).mode == "bmm"
    assert BatchedForward(build("linear", 4, DISCRETE_2)).mode == "bmm"
    assert BatchedForward(gru).mode == "vmap"
    with pytest.raises(ValueError, match="needs an MLPPolicy"):
        BatchedForward(gru, "bmm")
    with pytest.raises(ValueError, match="accepted: auto, bmm, vmap"):
        BatchedForward(mlp, "loop")
    with pytest.raises(ValueError, match=r"thetas must be \(P, "):
        BatchedForward(mlp)(torch.zeros(2, 3), torch.zeros(2, 1, 4))


def test_batched_gru_initial_state_and_carry():
    policy = build("gru", 4, BOX_6)
    batched = BatchedForward(policy)
    thetas = torch.randn(5, num_params(policy)) * 0.5
    first, second = torch.randn(5, 2, 4), torch.randn(5, 2, 4)
    out, h1 = batched(thetas, first)
    assert torch.equal(out, batched(thetas, first, torch.zeros(5, 2, 8))[0])
    out2, _ = batched(thetas, second, h1)
    for i in range(5):
        set_flat(policy, thetas[i])
        _, state = policy(first[i], policy.initial_state(2))
        torch.testing.assert_close(out2[i], policy(second[i], state)[0])


SIZES = [1, 2, 3, 5, 8, 17, 32, 63, 100]


@pytest.mark.parametrize(("kind", "mode"), [("mlp", "bmm"), ("mlp", "vmap"), ("gru", "vmap")])
@pytest.mark.parametrize(("obs_dim", "action_space"), [(4, DISCRETE_2), (17, BOX_6)])
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_forward_is_bitwise_batch_invariant(kind, mode, obs_dim, action_space, batch):
    policy = build(kind, obs_dim, action_space)
    batched = BatchedForward(policy, mode)
    generator = torch.Generator().manual_seed(obs_dim + batch)
    for count in SIZES:
        thetas = torch.randn(count, num_params(policy), generator=generator) * 0.5
        obs = torch.randn(count, batch, obs_dim, generator=generator)
        state = torch.randn(count, batch, 8, generator=generator) if policy.recurrent else None
        out, new_state = batched(thetas, obs, state)
        for i in range(count):
            one_state = None if state is None else state[i : i + 1]
            one, one_new_state = batched(thetas[i : i + 1], obs[i : i + 1], one_state)
            assert torch.equal(one[0], out[i]), (count, i)
            if policy.recurrent:
                assert torch.equal(one_new_state[0], new_state[i]), (count, i)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_bmm_is_batch_invariant_for_every_activation(activation):
    torch.manual_seed(1)
    policy = MLPPolicy(obs_box(5), BOX_6, hidden=(30, 13), activation=activation)
    batched = BatchedForward(policy, "bmm")
    thetas = torch.randn(37, num_params(policy)) * 0.3
    obs = torch.randn(37, 2, 5)
    out, _ = batched(thetas, obs)
    for i in range(37):
        assert torch.equal(batched(thetas[i : i + 1], obs[i : i + 1])[0][0], out[i]), i


def test_activations_match_torch_and_ignore_their_neighbours():
    references = {
        "tanh": torch.tanh,
        "relu": torch.relu,
        "elu": torch.nn.functional.elu,
        "gelu": torch.nn.functional.gelu,
        "silu": torch.nn.functional.silu,
    }
    x = torch.randn(4099) * 4
    torch.testing.assert_close(sigmoid(x), torch.sigmoid(x))
    for name, function in [*ACTIVATIONS.items(), ("sigmoid", sigmoid)]:
        if name in references:
            torch.testing.assert_close(function(x), references[name](x))
        full = function(x)
        for start, length in [(0, 1), (3, 5), (17, 30), (1000, 3001)]:
            part = function(x[start : start + length].clone())
            assert torch.equal(part, full[start : start + length]), (name, start, length)


def test_box_head_is_batch_invariant():
    head = make_head(spaces.Box(-2.0, 3.0, (6,), dtype=np.float32))
    out = torch.randn(41, 3, 6) * 2
    actions = head(out)
    for i in range(41):
        assert torch.equal(head(out[i : i + 1])[0], actions[i])


# ---------------------------------------------------------------- normalizer


def test_normalizer_is_identity_until_updated_and_frozen_between_updates():
    norm = ObservationNormalizer(3, clip=5.0)
    assert norm.count.dtype == torch.float64 and norm.count.shape == ()
    assert norm.total.dtype == norm.total_sq.dtype == torch.float64
    assert norm.mean.dtype == norm.std.dtype == torch.float32
    obs = torch.tensor([[0.5, -2.0, 9.0]])
    assert torch.equal(norm(obs), torch.tensor([[0.5, -2.0, 5.0]]))
    rng = np.random.default_rng(0)
    batches = [rng.normal([1.0, -3.0, 10.0], [0.5, 2.0, 4.0], size=(n, 3)) for n in (7, 50, 13)]
    for batch in batches:
        norm(torch.as_tensor(batch, dtype=torch.float32))
        ObservationNormalizer.statistics(batch)
    assert norm.count == 0 and torch.equal(norm.mean, torch.zeros(3))
    assert torch.equal(norm.std, torch.ones(3))

    stats = [ObservationNormalizer.statistics(batch) for batch in batches[:2]]
    for stat in stats:
        norm.update(*stat)
    seen = np.concatenate(batches[:2])
    mean, std = norm.mean.clone(), norm.std.clone()
    torch.testing.assert_close(mean, torch.as_tensor(seen.mean(0), dtype=torch.float32))
    torch.testing.assert_close(std, torch.as_tensor(seen.std(0), dtype=torch.float32))
    assert float(norm.count) == 57.0
    np.testing.assert_allclose(norm.total.numpy(), seen.sum(0), rtol=1e-12)
    np.testing.assert_allclose(norm.total_sq.numpy(), np.square(seen).sum(0), rtol=1e-12)

    frozen = norm(torch.as_tensor(batches[2], dtype=torch.float32))
    expected = (torch.as_tensor(batches[2], dtype=torch.float32) - mean) / std
    torch.testing.assert_close(frozen, expected.clamp(-5, 5))
    assert torch.equal(norm.mean, mean) and torch.equal(norm.std, std)

    norm.update(*ObservationNormalizer.statistics(torch.as_tensor(batches[2])))
    everything = np.concatenate(batches)
    torch.testing.assert_close(norm.mean, torch.as_tensor(everything.mean(0), dtype=torch.float32))
    torch.testing.assert_close(norm.std, torch.as_tensor(everything.std(0), dtype=torch.float32))


def test_normalizer_floors_the_variance_as_openai_es_does():
    """An almost constant input (std 1e-4) 3e-4 from its mean stays near zero (OpenAI-ES:
    variance >= 1e-2), instead of becoming 3 as with a floor on the std alone."""
    rng = np.random.default_rng(1)
    quiet = 5.0 + 1e-4 * rng.standard_normal((10_000, 1))
    norm = ObservationNormalizer(1)
    norm.update(*ObservationNormalizer.statistics(quiet))
    value = float(norm(torch.tensor([[float(quiet.mean()) + 3e-4]])))
    assert value == pytest.approx(3e-3, rel=1e-2)


def test_normalizer_statistics_clip_floor_and_state():
    count, total, total_sq = ObservationNormalizer.statistics(np.array([[1.0, 2.0], [3.0, 2.0]]))
    assert count == 2.0 and total.dtype == np.float64
    assert total.tolist() == [4.0, 4.0] and total_sq.tolist() == [10.0, 8.0]
    norm = ObservationNormalizer(2, clip=1.5)
    norm.update(count, total, total_sq)
    assert norm.std.tolist() == [1.0, pytest.approx(0.1)]  # constant dim: variance floored at 1e-2
    assert norm(torch.tensor([[10.0, 2.0]])).tolist() == [[1.5, 0.0]]

    keys = set(norm.state_dict())
    assert keys == {"count", "total", "total_sq", "mean", "std"}
    restored = ObservationNormalizer(2, clip=1.5)
    restored.load_state_dict(norm.state_dict())
    copied = pickle.loads(pickle.dumps(norm))
    obs = torch.randn(4, 2)
    assert torch.equal(restored(obs), norm(obs)) and torch.equal(copied(obs), norm(obs))


def test_normalizer_statistics_are_float64_sums_of_float32_observations() -> None:
    """Sums of squares of float32 observations near 3000 lose the variance in float32."""
    obs = (3000 + np.arange(4096) % 3).astype(np.float32).reshape(-1, 1)
    count, total, total_sq = ObservationNormalizer.statistics(obs)
    assert count == 4096 and total.dtype == total_sq.dtype == np.float64
    assert total_sq[0] == np.square(obs.astype(np.float64)).sum()
    norm = ObservationNormalizer(1, min_variance=1e-6)
    norm.update(count, total, total_sq)
    assert abs(float(norm.std[0]) - obs.astype(np.float64).std()) < 1e-4


def test_normalizer_statistics_take_any_leading_shape() -> None:
    obs = np.arange(24, dtype=np.float64).reshape(2, 3, 4)  # (steps, envs, dim)
    count, total, total_sq = ObservationNormalizer.statistics(obs)
    assert count == 6
    assert np.array_equal(total, obs.reshape(6, 4).sum(0))
    assert np.array_equal(total_sq, np.square(obs.reshape(6, 4)).sum(0))
