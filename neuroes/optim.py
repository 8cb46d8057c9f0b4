"""ClipUp (Toklu et al., 2020, "ClipUp: A Simple and Powerful Optimizer for Distribution-based
Policy Evolution"): heavy-ball momentum on the normalized gradient, with a clipped velocity."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class ClipUp(torch.optim.Optimizer):
    """``v <- clip(momentum * v - lr * g / ||g||, max_speed)``, then ``x <- x + v``.

    The step is the gradient normalized to length ``lr``, so only its direction matters; the
    velocity's length never exceeds ``max_speed`` (Toklu et al. recommend ``2 * lr``, the
    default). Norms are taken over each parameter group, read as one vector, as the paper reads
    the policy's parameters. Minimizes, like every ``torch.optim`` optimizer.

    Args:
        params: parameters or parameter groups (a group may set its own ``lr``, ``momentum``
            and ``max_speed``).
        lr: step size, the length of each normalized gradient step.
        momentum: weight of the previous velocity, in [0, 1).
        max_speed: the velocity's largest length (default: ``2 * lr``).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        momentum: float = 0.9,
        max_speed: float | None = None,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if max_speed is not None and not max_speed > 0:
            raise ValueError(f"max_speed must be positive, got {max_speed}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "max_speed": max_speed})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
            scale = group["lr"] / norm if norm > 0 else 0.0
            limit = group["max_speed"] if group["max_speed"] is not None else 2 * group["lr"]
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                state["velocity"].mul_(group["momentum"]).sub_(p.grad, alpha=scale)
                velocities.append(state["velocity"])
            speed = float(torch.linalg.vector_norm(torch.stack([v.norm() for v in velocities])))
            if speed > limit:
                for v in velocities:
                    v.mul_(limit / speed)
            for p, v in zip(params, velocities, strict=True):
                p.add_(v)
        return loss
