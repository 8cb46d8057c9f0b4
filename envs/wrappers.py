"""Optional reward adjustments for MuJoCo locomotion, one term per wrapper."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym


class RemoveAliveBonus(gym.Wrapper):
    """Subtract the healthy (alive) bonus that Hopper, Walker2d, Ant and Humanoid pay per step.

    The bonus removed is the one actually paid on the step: the environment's
    ``healthy_reward`` in its new state, which v5 also reports as ``info["reward_survive"]``
    (zero on the step that ends an episode by falling).
    """

    def __init__(self, env: gym.Env) -> None:
        if not hasattr(type(env.unwrapped), "healthy_reward"):
            raise ValueError(f"{env.unwrapped.__class__.__name__} pays no alive bonus to remove")
        super().__init__(env)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        bonus = float(self.env.unwrapped.healthy_reward)
        return obs, float(reward) - bonus, terminated, truncated, info


class RemoveControlCost(gym.Wrapper):
    """Add back the control cost of MuJoCo environments that report ``info["reward_ctrl"]``."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "reward_ctrl" not in info:
            raise ValueError(
                f"{self.env.unwrapped.__class__.__name__} reports no info['reward_ctrl'] to remove"
            )
        return obs, float(reward) - float(info["reward_ctrl"]), terminated, truncated, info
