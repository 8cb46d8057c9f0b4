"""Geometry of a square arena with axis-aligned box walls, vectorized over point robots.

A box ``(xmin, ymin, xmax, ymax)`` blocks its open interior; a point may touch its faces and
slide along them. A move is resolved one axis at a time (x, then y), each clamped at the first
face ahead, so a point never tunnels through a wall and never enters one. Only comparisons,
``min``/``max`` and single additions and subtractions are used, so a point's result does not
depend on how many others are moved with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]

# A vertical wall straight ahead of the start: moving in +x gets stuck at x = 0.5.
TRAP: tuple[Box, ...] = ((0.5, -1.0, 0.6, 1.0),)
# The hard maze: a U-shaped trap around the start, open to the left (-x), its arms overlapping
# its far wall so that no seam lets a point slip through a corner; and a goal behind that wall,
# about 3.5 units of path away (an episode can travel 5). The arena leaves a corridor of 0.8-1.0
# around the trap: in a 4 x 4 arena novelty search spends most of its budget on the far corners.
HARD_MAZE: tuple[Box, ...] = (
    (0.5, -0.7, 0.6, 0.7), (-0.5, 0.6, 0.6, 0.7), (-0.5, -0.7, 0.6, -0.6),
)  # fmt: skip
HARD_MAZE_HALF_SIZE = 1.5
GOAL = (1.3, 0.0)


class Maze:
    """An arena ``[-half_size, half_size]^2`` with box walls.

    Args:
        walls: boxes ``(xmin, ymin, xmax, ymax)``; none for an open arena.
        half_size: half the side of the square arena, centred on the origin.
        clearance: half the side of a square around the origin that must stay free of walls.
    """

    def __init__(
        self,
        walls: Sequence[Sequence[float]] = TRAP,
        half_size: float = 2.0,
        clearance: float = 0.0,
    ) -> None:
        boxes = np.asarray(walls, dtype=np.float64).reshape(-1, 4)
        if half_size <= clearance:
            raise ValueError(f"half_size must exceed {clearance}, got {half_size}")
        if not np.isfinite(boxes).all() or (boxes[:, :2] >= boxes[:, 2:]).any():
            raise ValueError(f"walls must be finite boxes (xmin, ymin, xmax, ymax), got {walls!r}")
        hits_start = (boxes[:, :2] < clearance).all(1) & (boxes[:, 2:] > -clearance).all(1)
        if hits_start.any():
            raise ValueError(f"wall {boxes[hits_start][0].tolist()} overlaps the start region")
        self.walls, self.half_size = boxes, float(half_size)

    def faces(self, along: np.ndarray, across: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
        """The nearest faces behind and ahead of each point along ``axis`` (0: x, 1: y).

        ``along`` and ``across`` (n,) are the points' coordinates on ``axis`` and on the other
        axis; returns the (n,) coordinates of the first face in the - and in the + direction.
        """
        lo, hi = self.walls[:, axis], self.walls[:, axis + 2]
        across = across[:, None]
        band = (self.walls[:, 1 - axis] < across) & (across < self.walls[:, 3 - axis])
        h = self.half_size
        behind = np.where(band & (hi <= along[:, None]), hi, -h).max(1, initial=-h)
        ahead = np.where(band & (lo >= along[:, None]), lo, h).min(1, initial=h)
        return behind, ahead

    def move(self, position: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """Positions (n, 2) after moving by ``displacement`` (n, 2), stopped by the walls."""
        x, y = position[:, 0], position[:, 1]
        west, east = self.faces(x, y, 0)
        x = np.minimum(np.maximum(x + displacement[:, 0], west), east)
        south, north = self.faces(y, x, 1)
        y = np.minimum(np.maximum(y + displacement[:, 1], south), north)
        return np.stack([x, y], axis=1)

    def sensors(self, position: np.ndarray) -> np.ndarray:
        """Distances (n, 4) to the nearest wall in +x, -x, +y and -y."""
        x, y = position[:, 0], position[:, 1]
        west, east = self.faces(x, y, 0)
        south, north = self.faces(y, x, 1)
        return np.stack([east - x, x - west, north - y, y - south], axis=1)
