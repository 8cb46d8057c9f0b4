"""PointMaze: a point robot in a walled square arena, rewarded for progress in +x.

The robot starts at the origin (plus uniform noise of at most ``START_NOISE`` per axis) and
each step moves by its action times ``MAX_SPEED``: the action is a velocity command in
``[-1, 1]^2``, clipped. Walls stop it (see :mod:`neuroes.envs.maze`). The reward is the step's
progress in x, so the return is the final x minus the start x; the default wall sits straight
ahead of the start, making "always go right" a deceptive local optimum. Episodes never
terminate; they are truncated after ``EPISODE_STEPS`` steps (by ``TimeLimit`` for the single
environment, internally for the vector one). The final (x, y) is the behavior descriptor.

Observation (float32, 6): x, y and the distances to the nearest wall in +x, -x, +y and -y.

``neuroes/DeceptiveMaze-v0`` is the hard maze of novelty search: the same robot in a 3 x 3 arena
inside a U-shaped trap open to the left (:data:`neuroes.envs.maze.HARD_MAZE`), rewarded for
getting closer to a goal behind the trap's far wall (:data:`neuroes.envs.maze.GOAL`): each step's
reward is the decrease of the distance to the goal, so the return is the start's distance minus
the final one (the negative final distance plus a constant). Following the reward leads into the
trap's far wall.

:class:`PointMazeVectorEnv` runs many robots in one numpy call. Sub-environment j reset with
seed s starts exactly where ``PointMazeEnv().reset(seed=s)`` does and then matches it bitwise
under the same actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from neuroes.envs.maze import TRAP, Maze

EPISODE_STEPS = 100
MAX_SPEED = 0.05
START_NOISE = 0.01


def _spaces(maze: Maze) -> tuple[spaces.Box, spaces.Box]:
    h = maze.half_size
    low = np.array([-h, -h, 0, 0, 0, 0], dtype=np.float32)
    high = np.array([h, h, 2 * h, 2 * h, 2 * h, 2 * h], dtype=np.float32)
    observation_space = spaces.Box(low, high, dtype=np.float32)
    return observation_space, spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)


def _goal(goal: Sequence[float] | None) -> np.ndarray | None:
    if goal is None:
        return None
    goal = np.asarray(goal, dtype=np.float64)
    if goal.shape != (2,) or not np.isfinite(goal).all():
        raise ValueError(f"goal must be a finite (x, y), got {goal.tolist()}")
    return goal


def _start(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-START_NOISE, START_NOISE, size=2)


def _observe(maze: Maze, position: np.ndarray) -> np.ndarray:
    return np.concatenate([position, maze.sensors(position)], axis=1).astype(np.float32)


def _step(
    maze: Maze, position: np.ndarray, action: np.ndarray, goal: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """New positions (n, 2) and rewards (n,) for actions (n, 2): progress in +x, or toward
    ``goal`` (the decrease of the distance to it)."""
    command = np.clip(np.asarray(action, dtype=np.float64).reshape(-1, 2), -1.0, 1.0)
    moved = maze.move(position, command * MAX_SPEED)
    if goal is None:
        return moved, moved[:, 0] - position[:, 0]
    return moved, _distance(position, goal) - _distance(moved, goal)


def _distance(position: np.ndarray, goal: np.ndarray) -> np.ndarray:
    offset = position - goal
    return np.sqrt(offset[:, 0] * offset[:, 0] + offset[:, 1] * offset[:, 1])


class PointMazeEnv(gym.Env):
    """A single PointMaze robot; ``walls`` and ``half_size`` as for :class:`Maze`; ``goal``
    (x, y) rewards progress toward it instead of progress in +x."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        walls: Sequence[Sequence[float]] = TRAP,
        half_size: float = 2.0,
        render_mode: str | None = None,
        goal: Sequence[float] | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.maze = Maze(walls, half_size, clearance=START_NOISE)
        self.goal = _goal(goal)
        self.observation_space, self.action_space = _spaces(self.maze)
        self.render_mode = render_mode
        self.position = np.zeros(2)
        self.trail: list[np.ndarray] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.position = _start(self.np_random)
        self.trail = [self.position]
        return _observe(self.maze, self.position[None])[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        moved, reward = _step(self.maze, self.position[None], action, self.goal)
        self.position = moved[0]
        self.trail.append(self.position)
        return _observe(self.maze, moved)[0], float(reward[0]), False, False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return draw(self.maze, np.array(self.trail))


class PointMazeVectorEnv(VectorEnv):
    """``num_envs`` PointMaze robots stepped together, with next-step autoreset.

    ``reset(seed=s)`` seeds sub-environment j with ``s + j``; ``reset(seed=[s0, s1, ...])``
    gives each its own seed (a ``None`` seed is drawn at random). Each sub-environment keeps its
    own generator, so its autoresets and unseeded resets continue exactly as a single
    environment's unseeded resets would. ``position`` holds the (num_envs, 2) positions.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = EPISODE_STEPS,
        walls: Sequence[Sequence[float]] = TRAP,
        half_size: float = 2.0,
        goal: Sequence[float] | None = None,
    ) -> None:
        self.num_envs, self.max_episode_steps = num_envs, max_episode_steps
        self.maze = Maze(walls, half_size, clearance=START_NOISE)
        self.goal = _goal(goal)
        self.single_observation_space, self.single_action_space = _spaces(self.maze)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.position = np.zeros((num_envs, 2))
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.prev_done = np.zeros(num_envs, dtype=bool)
        self.seeds: list[int] = []
        self.generators: list[np.random.Generator | None] = []

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict]:
        if isinstance(seed, (int, np.integer)):
            seed = [int(seed) + j for j in range(self.num_envs)]
        if seed is None and self.seeds:
            starts = [_start(self._generator(j)) for j in range(self.num_envs)]
        else:
            seed = [None] * self.num_envs if seed is None else list(seed)
            if len(seed) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seed)}")
            # Generators are built lazily (see _generator): a population shares a few seeds,
            # and building one per sub-environment would cost more than the episode.
            self.seeds = [np.random.SeedSequence().entropy if s is None else s for s in seed]
            self.generators = [None] * self.num_envs
            start_of = {s: _start(seeding.np_random(s)[0]) for s in set(self.seeds)}
            starts = [start_of[s] for s in self.seeds]
        self.position = np.stack(starts)
        self.steps[:] = 0
        self.prev_done[:] = False
        return _observe(self.maze, self.position), {}

    def _generator(self, j: int) -> np.random.Generator:
        """Sub-environment j's generator, built from its seed and past its first start."""
        if self.generators[j] is None:
            rng = seeding.np_random(self.seeds[j])[0]
            _start(rng)
            self.generators[j] = rng
        return self.generators[j]

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        self.position, rewards = _step(self.maze, self.position, actions, self.goal)
        self.steps += 1
        for j in np.flatnonzero(self.prev_done):
            self.position[j] = _start(self._generator(j))
            self.steps[j] = 0
        rewards[self.prev_done] = 0.0
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = self.steps >= self.max_episode_steps
        self.prev_done = truncated
        return _observe(self.maze, self.position), rewards, terminated, truncated, {}


def draw(maze: Maze, trail: np.ndarray, size: int = 256) -> np.ndarray:
    """An RGB image (size, size, 3) of the arena, its walls, a path (t, 2) and its last point."""
    h = maze.half_size
    pixel = (np.arange(size) + 0.5) / size * 2 * h - h
    x, y = pixel[None, :], -pixel[:, None]
    image = np.full((size, size, 3), 245, dtype=np.uint8)
    for xmin, ymin, xmax, ymax in maze.walls:
        image[(xmin <= x) & (x <= xmax) & (ymin <= y) & (y <= ymax)] = (60, 60, 60)
    cols, rows = ((trail + h) / (2 * h) * size).astype(int).clip(0, size - 1).T
    image[size - 1 - rows, cols] = (70, 130, 220)
    radius = 3.5 * (2 * h / size)
    image[(x - trail[-1, 0]) ** 2 + (y - trail[-1, 1]) ** 2 <= radius**2] = (220, 50, 50)
    return image
