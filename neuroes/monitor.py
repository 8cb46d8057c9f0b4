"""What a run shows: a progress bar, TensorBoard scalars and figures, PNG scatter plots, and
``metrics.jsonl``: one JSON object per generation (``generation`` and every scalar by its tag),
for pandas (``pd.read_json(path, lines=True)``); a resumed run drops what followed its
checkpoint, so every generation appears once.

Scalar tags are namespaced: ``rollout/`` (the population's episodes), ``eval/`` (the mean
policy), ``es/`` (the search distribution), ``behavior/`` (final positions, when the
environment has a descriptor), ``time/``; algorithms add their own (``ga/``, ``enas/``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from tqdm import tqdm  # noqa: E402

METRICS = "metrics.jsonl"


def _wandb_run(project: str, run_dir: Path, config: dict):
    """The W&B run of ``run_dir`` (its id is derived from the folder, so a resume continues it)."""
    try:
        import wandb
    except ImportError:
        raise ValueError('--wandb needs Weights & Biases: pip install "neuroes[wandb]"') from None
    folder = run_dir.resolve()
    run_id = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    return wandb.init(
        project=project, id=run_id, name=folder.name, config=config, dir=str(folder),
        resume="allow",
    )  # fmt: skip


def _wandb_flush() -> None:
    """Wait for W&B to write what was logged: ``finish`` alone returns before an offline run's
    file is complete. The service is stopped only when no other run of this process is live."""
    import wandb

    if wandb.run is None:
        wandb.teardown()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.is_file() else []


class Monitor:
    """Logs one run into ``run_dir``; ``start`` counts the generations already completed.

    With ``wandb`` (a project name) the same scalars and the config also go to Weights & Biases,
    into one W&B run per run folder that a resumed run continues.
    """

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        start: int,
        generations: int,
        progress: bool = True,
        wandb: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.wandb = _wandb_run(wandb, run_dir, config) if wandb else None
        # Generation g is logged at step g: a resumed run drops what followed its checkpoint.
        self.writer = SummaryWriter(str(run_dir), purge_step=start + 1 if start else None)
        self.metrics = run_dir / METRICS
        kept = [line for line in _lines(self.metrics) if json.loads(line)["generation"] <= start]
        self.metrics.write_text("".join(kept))
        if not start:
            rows = "\n".join(f"|{key}|{value}|" for key, value in config.items())
            self.writer.add_text("config", f"|parameter|value|\n|-|-|\n{rows}")
        self.bar = tqdm(
            total=generations, initial=start, disable=not progress, unit="gen", dynamic_ncols=True
        )

    def log(self, generation: int, scalars: dict[str, float]) -> None:
        """One generation's scalars: to TensorBoard, ``metrics.jsonl`` and the progress bar."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, generation)
        row = {"generation": generation} | {tag: float(value) for tag, value in scalars.items()}
        with self.metrics.open("a") as file:
            file.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log(row, step=generation)
        self.bar.update(1)
        self.bar.set_postfix_str(
            f"return {scalars['rollout/return_mean']:.1f} (max {scalars['rollout/return_max']:.1f})"
            + (f" eval {scalars['eval/return']:.1f}" if "eval/return" in scalars else "")
            + f" {scalars['time/steps_per_second'] / 1e3:.0f}k steps/s"
        )

    def scatter(
        self,
        generation: int,
        behaviors: np.ndarray,
        returns: np.ndarray,
        archive: np.ndarray | None = None,
    ) -> None:
        """A scatter plot of final positions (x against y, or x against return in 1-D), with an
        algorithm's ``archive`` of behaviors (a, k) in grey behind them in 2-D."""
        figure, axes = plt.subplots(figsize=(4.5, 4))
        if archive is not None and len(archive) and behaviors.shape[1] >= 2:
            axes.scatter(archive[:, 0], archive[:, 1], c="0.7", s=6, label="archive")
            axes.legend(loc="best", fontsize="small")
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
        if self.wandb is not None:
            self.wandb.finish()
            _wandb_flush()
