"""Policies: small torch networks from flattened observations to action-head inputs.

Initialization follows OpenAI-ES (Salimans et al., 2017): every ``nn.Linear`` gets "normc"
weights, i.e. each output unit's weight row is Gaussian rescaled to a fixed norm (1 for hidden
layers, 0.01 for the output layer), and zero biases. The small output layer makes the initial
policy nearly indifferent between actions, so early perturbations decide its behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import Space
from gymnasium.spaces import Box, Discrete
from torch import Tensor, nn

from neuroes.agents.activations import ACTIVATIONS, sigmoid
from neuroes.agents.heads import ActionHead, make_head

OUTPUT_SCALE = 0.01


def observation_dim(space: Space) -> int:
    """Width of a flattened observation: ``prod(shape)`` for Box, ``n`` (one-hot) for Discrete."""
    if isinstance(space, Box):
        return int(np.prod(space.shape, dtype=np.int64))
    if isinstance(space, Discrete):
        return int(space.n)
    raise ValueError(f"unsupported observation space {space!r}; supported: Box, Discrete")


def flatten_observations(space: Space, obs: np.ndarray) -> np.ndarray:
    """A batch ``(N, ...)`` of observations as float32 ``(N, observation_dim)``."""
    dim = observation_dim(space)
    obs = np.asarray(obs)
    if isinstance(space, Discrete):
        flat = np.zeros((len(obs), dim), dtype=np.float32)
        flat[np.arange(len(obs)), obs.reshape(len(obs)) - int(space.start)] = 1.0
        return flat
    return obs.reshape(len(obs), dim).astype(np.float32, copy=False)


def normc_(linear: nn.Linear, scale: float) -> None:
    """Gaussian weight rows rescaled to norm ``scale``; zero bias."""
    with torch.no_grad():
        weight = torch.randn_like(linear.weight)
        linear.weight.copy_(weight * (scale / weight.norm(dim=1, keepdim=True)))
        if linear.bias is not None:
            linear.bias.zero_()


def gru_cell(cell: nn.GRUCell, x: Tensor, h: Tensor) -> Tensor:
    """``cell(x, h)``: the equations of ``nn.GRUCell`` from batch-invariant ops."""
    x_r, x_z, x_n = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, cell.weight_hh, cell.bias_hh).chunk(3, dim=-1)
    reset = sigmoid(x_r + h_r)
    update = sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + reset * h_n)
    return (1 - update) * candidate + update * h


class Policy(nn.Module):
    """Base policy: ``forward`` gives head inputs and the new recurrent state, ``act`` actions.

    A policy listed in ``POLICIES`` under its ``kind`` is rebuilt from
    ``POLICIES[kind](observation_space, action_space, **policy.options())``: its checkpoints
    store that description and the parameters as data.
    """

    kind: str = ""
    recurrent: bool = False
    head: ActionHead

    def __init__(self, observation_space: Space, action_space: Space, box: str = "tanh") -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_dim = observation_dim(observation_space)
        self.box = box
        self.head = make_head(action_space, box)

    def options(self) -> dict:
        """The keyword arguments that, with the two spaces, rebuild this architecture."""
        return {"box": self.box}

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``obs (B, obs_dim)`` -> ``(head input (B, head.out_features), new state)``."""
        raise NotImplementedError

    def initial_state(self, batch: int) -> Tensor | None:
        """State at the start of an episode; ``None`` for feed-forward policies."""
        return None

    def act(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Actions for ``obs`` and the new state."""
        out, state = self(obs, state)
        return self.head(out), state


class MLPPolicy(Policy):
    """Fully connected network; ``activation`` between layers, none after the last."""

    kind = "mlp"

    def __init__(
        self,
        observation_space: Space,
        action_space: Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        box: str = "tanh",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; accepted: {', '.join(ACTIVATIONS)}"
            )
        if not all(isinstance(size, int | np.integer) and size > 0 for size in hidden):
            raise ValueError(f"hidden layer sizes must be positive integers, got {list(hidden)}")
        super().__init__(observation_space, action_space, box)
        self.activation = activation
        self.hidden = [int(size) for size in hidden]
        sizes = [self.obs_dim, *hidden, self.head.out_features]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in pairs)
        for layer in self.layers[:-1]:
            normc_(layer, 1.0)
        normc_(self.layers[-1], OUTPUT_SCALE)

    def options(self) -> dict:
        return super().options() | {"hidden": self.hidden, "activation": self.activation}

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, None]:
        act = ACTIVATIONS[self.activation]
        x = obs
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x), None


class LinearPolicy(MLPPolicy):
    """A single linear layer from observations to head inputs."""

    kind = "linear"

    def __init__(self, observation_space: Space, action_space: Space, box: str = "tanh") -> None:
        super().__init__(observation_space, action_space, hidden=(), box=box)

    def options(self) -> dict:
        return {"box": self.box}


class GRUPolicy(Policy):
    """A ``GRUCell`` (PyTorch default init) followed by a normc output layer.

    The cell's equations are written out (``gru_cell``) on its parameters: ``aten::gru_cell`` has
    no ``torch.vmap`` batching rule, its fallback loops over the vmapped members, and its
    ``sigmoid`` is not batch-invariant (see ``neuroes.agents.activations``).
    """

    kind = "gru"
    recurrent = True

    def __init__(
        self,
        observation_space: Space,
        action_space: Space,
        hidden_size: int = 32,
        box: str = "tanh",
    ) -> None:
        if not (isinstance(hidden_size, int) and hidden_size > 0):
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size}")
        super().__init__(observation_space, action_space, box)
        self.hidden_size = hidden_size
        self.cell = nn.GRUCell(self.obs_dim, hidden_size)
        self.out = nn.Linear(hidden_size, self.head.out_features)
        normc_(self.out, OUTPUT_SCALE)

    def options(self) -> dict:
        return super().options() | {"hidden_size": self.hidden_size}

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            state = obs.new_zeros(*obs.shape[:-1], self.hidden_size)
        state = gru_cell(self.cell, obs, state)
        return self.out(state), state

    def initial_state(self, batch: int) -> Tensor:
        """Zeros ``(batch, hidden_size)`` on the parameters' device."""
        return self.cell.weight_hh.new_zeros(batch, self.hidden_size)


class ModulePolicy(Policy):
    """Any ``nn.Module`` from a batch of flat observations ``(B, obs_dim)`` to actions.

    The module's outputs go through the action head with Box actions clipped to their bounds:
    one value per action dimension for Box spaces, one score per action for Discrete (the
    highest is taken), as :func:`neuroes.agents.heads.make_head` with ``box="clip"``.
    """

    def __init__(self, observation_space: Space, action_space: Space, module: nn.Module) -> None:
        super().__init__(observation_space, action_space, box="clip")
        self.module = module
        with torch.no_grad():
            out = module(torch.zeros(2, self.obs_dim))
        expected = (2, self.head.out_features)
        if not isinstance(out, Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"policy module {type(module).__name__} maps observations (B, {self.obs_dim}) "
                f"to {got}; this action space needs (B, {self.head.out_features})"
            )

    def forward(self, obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, None]:
        return self.module(obs), None


def as_policy(module: nn.Module, observation_space: Space, action_space: Space) -> Policy:
    """``module`` itself if it is a :class:`Policy`, else wrapped in a :class:`ModulePolicy`."""
    if isinstance(module, Policy):
        return module
    if not isinstance(module, nn.Module):
        raise ValueError(f"a policy must be an nn.Module, got {type(module).__name__}")
    return ModulePolicy(observation_space, action_space, module)


POLICIES: dict[str, type[Policy]] = {cls.kind: cls for cls in (LinearPolicy, MLPPolicy, GRUPolicy)}


def make_policy(kind: str, observation_space: Space, action_space: Space, **kwargs) -> Policy:
    """Builds ``POLICIES[kind]`` with the given spaces and keyword arguments."""
    if kind not in POLICIES:
        raise ValueError(f"unknown policy kind {kind!r}; accepted: {', '.join(POLICIES)}")
    return POLICIES[kind](observation_space, action_space, **kwargs)
