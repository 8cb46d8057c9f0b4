"""Flat parameter vectors of modules, and many parameter vectors of one policy run at once.

``BatchedForward`` is batch-invariant: the outputs of member ``i`` are bitwise the same whether
it runs alone or with other members, so a batched evaluation reproduces a single-member one.
Both paths use one batched matrix product per layer and elementwise ops from
``neuroes.agents.activations``. The CPU matrix kernels pick their code path by the memory
alignment of each member's matrices, so every member's parameters and observations are laid
out at 64-byte boundaries (:func:`aligned_rows`), as a lone member's are;
``tests/test_agents.py`` checks this.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from neuroes.agents.activations import ACTIVATIONS
from neuroes.agents.policies import MLPPolicy, Policy

MODES = ("auto", "bmm", "vmap")
Forward = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor | None]]
ALIGNMENT = 64  # bytes


def _rows_aligned(x: Tensor) -> bool:
    step = ALIGNMENT // x.element_size()
    return (
        x.data_ptr() % ALIGNMENT == 0
        and (len(x) <= 1 or x.stride(0) % step == 0)
        and (len(x) == 0 or x[0].is_contiguous())
    )


def aligned_rows(x: Tensor) -> Tensor:
    """``x`` (P, ...) with each row starting at a 64-byte boundary: ``x`` itself when it already
    does, else a view of a zero-padded copy."""
    if _rows_aligned(x):
        return x
    row = x[0].numel()
    padded = aligned_empty(len(x), row, x.dtype, x.device)
    padded.copy_(x.reshape(len(x), row))
    return padded.unflatten(1, x.shape[1:])


def aligned_empty(
    rows: int, size: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """A zeroed ``(rows, size)`` tensor in the aligned layout of :func:`aligned_rows`."""
    step = ALIGNMENT // torch.empty((), dtype=dtype).element_size()
    return torch.zeros(rows, -(-size // step) * step, dtype=dtype, device=device)[:, :size]


def num_params(module: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in module.parameters())


def get_flat(module: nn.Module) -> Tensor:
    """A detached copy ``(d,)`` of all parameters, in the order of ``module.parameters()``."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def set_flat(module: nn.Module, vector: Tensor) -> None:
    """Copies ``vector (d,)`` into the parameters in place."""
    size = num_params(module)
    if vector.numel() != size:
        raise ValueError(f"vector has {vector.numel()} elements, module has {size} parameters")
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(vector[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


class BatchedForward:
    """Runs P parameter vectors of one policy on P batches of observations in one call.

    ``mode``: "bmm" slices the vectors into per-layer weights and applies ``torch.baddbmm``
    (MLPPolicy and LinearPolicy only); "vmap" maps ``torch.func.functional_call`` over the
    members (any policy); "auto" picks "bmm" where it applies. Runs on the device of ``thetas``.
    """

    def __init__(self, policy: Policy, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        is_mlp = isinstance(policy, MLPPolicy)
        if mode == "bmm" and not is_mlp:
            raise ValueError(f"mode 'bmm' needs an MLPPolicy, got {type(policy).__name__}")
        self.policy = policy
        self.mode = mode if mode != "auto" else ("bmm" if is_mlp else "vmap")
        self.size = num_params(policy)
        self._slices: dict[str, tuple[int, int, torch.Size]] = {}
        offset = 0
        for name, p in policy.named_parameters():
            self._slices[name] = (offset, offset + p.numel(), p.shape)
            offset += p.numel()
        member = self._recurrent_member if policy.recurrent else self._feedforward_member
        self._vmapped = torch.vmap(member)

    def __call__(
        self, thetas: Tensor, obs: Tensor, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``thetas (P, d)``, ``obs (P, B, obs_dim)``, ``state (P, B, H)`` or None ->
        ``(outputs (P, B, head.out_features), new state)``."""
        if thetas.ndim != 2 or thetas.shape[1] != self.size:
            raise ValueError(f"thetas must be (P, {self.size}), got {tuple(thetas.shape)}")
        thetas, obs = aligned_rows(thetas), aligned_rows(obs)
        state = None if state is None else aligned_rows(state)
        if self.mode == "bmm":
            return self._bmm(thetas, obs), None
        if not self.policy.recurrent:
            return self._vmapped(thetas, obs), None
        if state is None:
            initial = self.policy.initial_state(obs.shape[1]).to(obs)
            state = initial.expand(len(thetas), *initial.shape)
        return self._vmapped(thetas, obs, state)

    @staticmethod
    def prepare(thetas: Tensor) -> Tensor:
        """``thetas`` in the aligned layout; prepare once to avoid a copy on every call."""
        return aligned_rows(thetas)

    def _params(self, theta: Tensor) -> dict[str, Tensor]:
        return {name: theta[a:b].view(shape) for name, (a, b, shape) in self._slices.items()}

    def _feedforward_member(self, theta: Tensor, obs: Tensor) -> Tensor:
        return functional_call(self.policy, self._params(theta), (obs,))[0]

    def _recurrent_member(self, theta: Tensor, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return functional_call(self.policy, self._params(theta), (obs, state))

    def bind(self, thetas: Tensor) -> Forward:
        """``(obs, state) -> (outputs, new state)`` for fixed ``thetas``, as :meth:`__call__`
        computes it. ``thetas`` and every ``obs`` must already have the aligned layout
        (:meth:`prepare`, :func:`aligned_rows`); in "bmm" mode the weights are sliced once
        here instead of on every call."""
        if self.mode != "bmm":
            return lambda obs, state=None: self(thetas, obs, state)
        layers, act = self._layers(thetas), ACTIVATIONS[self.policy.activation]
        last = len(layers) - 1

        def forward(obs: Tensor, state: Tensor | None = None) -> tuple[Tensor, None]:
            x = obs
            for k, (weight, bias) in enumerate(layers):
                x = torch.baddbmm(bias, x, weight)
                if k < last:
                    x = act(x)
            return x, None

        return forward

    def _layers(self, thetas: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per layer of an MLPPolicy: transposed weights (P, in, out) and biases (P, 1, out),
        views of ``thetas``."""
        count, layers = len(thetas), []
        for k in range(len(self.policy.layers)):
            w0, w1, (n_out, n_in) = self._slices[f"layers.{k}.weight"]
            b0, b1, _ = self._slices[f"layers.{k}.bias"]
            weight = thetas[:, w0:w1].view(count, n_out, n_in)
            layers.append((weight.transpose(1, 2), thetas[:, b0:b1].unsqueeze(1)))
        return layers

    def _bmm(self, thetas: Tensor, obs: Tensor) -> Tensor:
        return self.bind(thetas)(obs)[0]


def check_batched(policy: Policy) -> Policy:
    """``policy`` if :class:`BatchedForward` can run it over a population, else a one-line
    ValueError."""
    forward = BatchedForward(policy)
    thetas = get_flat(policy).unsqueeze(0).expand(2, -1).clone()
    try:
        with torch.no_grad():
            forward(thetas, torch.zeros(2, 1, policy.obs_dim), None)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"policy {type(policy).__name__} cannot be batched over the population with "
            f"torch.func.vmap ({first}); use operations that vmap supports"
        ) from None
    return policy
