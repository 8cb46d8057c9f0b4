"""What a run shows: a progress bar, TensorBoard scalars and figures, and PNG scatter plots.

Scalar tags are namespaced: ``rollout/`` (the population's episodes), ``eval/`` (the mean
policy), ``es/`` (the search distribution), ``behavior/`` (final positions, when the
environment has a descriptor), ``time/``; algorithms add their own (``ga/``, ``enas/``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from tqdm import tqdm  # noqa: E402


class Monitor:
    """Logs one run into ``run_dir``; ``start`` counts the generations already completed."""

    def __init__(
        self, run_dir: Path, config: dict, start: int, generations: int, progress: bool = True
    ) -> None:
        self.run_dir = run_dir
        # Generation g is logged at step g: a resumed run drops what followed its checkpoint.
        self.writer = SummaryWriter(str(run_dir), purge_step=start + 1 if start else None)
        if not start:
            rows = "\n".join(f"|{key}|{value}|" for key, value in config.items())
            self.writer.add_text("config", f"|parameter|value|\n|-|-|\n{rows}")
        self.bar = tqdm(
            total=generations, initial=start, disable=not progress, unit="gen", dynamic_ncols=True
        )

    def log(self, generation: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, generation)
        self.bar.update(1)
        self.bar.set_postfix_str(
            f"return {scalars['rollout/return_mean']:.1f} (max {scalars['rollout/return_max']:.1f})"
            + (f" eval {scalars['eval/return']:.1f}" if "eval/return" in scalars else "")
            + f" {scalars['time/steps_per_second'] / 1e3:.0f}k steps/s"
        )

    def scatter(self, generation: int, behaviors: np.ndarray, returns: np.ndarray) -> None:
        """A scatter plot of final positions (x against y, or x against return in 1-D)."""
        figure, axes = plt.subplots(figsize=(4.5, 4))
        if behaviors.shape[1] >= 2:
            points = axes.scatter(behaviors[:, 0], behaviors[:, 1], c=returns, s=10)
            axes.set_ylabel("final y")
        else:
            points = axes.scatter(behaviors[:, 0], returns, c=returns, s=10)
            axes.set_ylabel("return")
        figure.colorbar(points, label="return")
        axes.set_xlabel("final x")
        axes.set_title(f"final positions, generation {generation}")
        figure.tight_layout()
        figure.savefig(self.run_dir / f"behaviors_{generation:05d}.png", dpi=100)
        self.writer.add_figure("behavior/final_positions", figure, generation)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
