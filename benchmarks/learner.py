"""The learner's own cost for large policies: NES ``ask`` + ``tell`` against the memory floor.

    python benchmarks/learner.py                    # d in 10k..4M, P in 64, 256, 1024: ~10 min
    python benchmarks/learner.py --dims 100000 --popsizes 64      # one row

No environment: ``tell`` gets random returns. Each (d, P) runs in a fresh process (so that its
peak memory is its own) with torch on 2 threads: one warm-up generation (it fills the noise
table), then the median of at least ``--generations`` timed ones (more, up to 100, until a
second has passed). The floor, timed in the same process afterwards, is what any learner of a
P x d population must do at least: one P x d float32 copy plus one (P,) x (P, d) product,
timed over blocks of at most 256 MB (the same work, without a 16 GB matrix at d = 4M,
P = 1024). Memory: the process's peak resident set while the learner ran, above its resident
set just before the learner was built (after one generation of a 10-parameter NES, which pays
the process's fixed costs); the target is at most 2 x the P x d float32 matrix plus the noise
table.

A second table times the per-step policy forward at d ~ 1M (HalfCheetah's 17 observations,
hidden 1024-1024, 6 actions), one observation per member: the evaluator's bound forward
against bare ``torch.baddbmm`` calls over contiguous weights of the same shapes.

A third table runs one generation of NES and of the GA at d = 4M, P = 1000 (ask, every
member built a chunk at a time as the evaluator builds them, tell; the GA's first generation
draws 1000 initializations): the time and the peak memory, against the 16 GB that the
population would take as a matrix.

Writes ``learner.md`` and ``learner.png`` to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

BLOCK = 2**26  # floats per block of the floor: 256 MB


def _resident(field: str) -> int:
    """This process's ``VmRSS`` or ``VmHWM`` (peak) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _timed(action, least: int = 3) -> float:
    """Median seconds of ``action()``: at least ``least`` calls, more (up to 100) until a
    second has passed, so that small sizes are not one noisy sample."""
    times: list[float] = []
    while len(times) < least or (sum(times) < 1 and len(times) < 100):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor(dim: int, popsize: int) -> float:
    """Seconds of one P x d copy plus one (P,) x (P, d) product, over blocks of columns."""
    columns = max(1, BLOCK // popsize)
    source = torch.randn(popsize, min(dim, columns))
    target, weights = torch.empty_like(source), torch.randn(popsize)
    blocks, last = divmod(dim, columns)

    def run() -> None:
        for width in [columns] * blocks + ([last] if last else []):
            target[:, :width].copy_(source[:, :width])
            weights @ target[:, :width]

    return _timed(run)


def one(dim: int, popsize: int, generations: int) -> dict:
    """The figures of one (d, P), measured in this process."""
    from neuroes.algorithms import NES

    torch.set_num_threads(2)
    tiny = NES(torch.zeros(10), 0.02, 2, lr=0.01)  # the process's fixed costs: lazy imports,
    tiny.tell(tiny.ask(), [0.0, 1.0])  # the optimizer's and autograd's first-call set-up
    before = _resident("VmRSS")
    nes = NES(torch.zeros(dim), 0.02, popsize, lr=0.01, seed=0)
    generator = torch.Generator().manual_seed(0)
    nes.tell(nes.ask(), torch.randn(popsize, generator=generator).numpy())  # fills the table
    asks, tells = [], []

    def generation() -> None:
        start = time.perf_counter()
        population = nes.ask()
        middle = time.perf_counter()
        nes.tell(population, torch.randn(popsize, generator=generator).numpy())
        asks.append(middle - start)
        tells.append(time.perf_counter() - middle)

    _timed(generation, generations)
    peak = _resident("VmHWM") - before
    return {
        "dim": dim,
        "popsize": popsize,
        "ask": statistics.median(asks),
        "tell": statistics.median(tells),
        "floor": floor(dim, popsize),
        "peak_bytes": peak,
        "matrix_bytes": 4 * dim * popsize,
        "table_bytes": 4 * nes.table.size,
    }


def scale_row(algo: str, dim: int, popsize: int) -> dict:
    """One generation of ``algo`` ("nes" or "ga") at (d, P): ask, every member built a chunk
    at a time as the evaluator builds them (and checked finite, as the trainer does), tell."""
    from neuroes.algorithms import NES, GeneticAlgorithm
    from neuroes.rollout import CHUNK_BYTES

    torch.set_num_threads(2)
    before = _resident("VmRSS")
    start = time.perf_counter()
    if algo == "nes":
        algorithm = NES(torch.zeros(dim), 0.02, popsize, lr=0.01, seed=0)
    else:

        def initialize(seed: int) -> torch.Tensor:
            return torch.randn(dim, generator=torch.Generator().manual_seed(seed)) * 0.05

        algorithm = GeneticAlgorithm(initialize, 0.002, popsize, elite_episodes=0)
    population = algorithm.ask()
    rows = CHUNK_BYTES // (4 * dim)
    for first in range(0, popsize, rows):
        assert torch.isfinite(population.rows(first, first + rows)).all()
    algorithm.tell(population, torch.randn(popsize).numpy())
    return {
        "algo": algo,
        "dim": dim,
        "popsize": popsize,
        "seconds": time.perf_counter() - start,
        "peak_bytes": _resident("VmHWM") - before,
        "matrix_bytes": 4 * dim * popsize,
    }


def forward_row(dim_hidden: int, popsize: int) -> dict:
    """The bound forward of the evaluator against bare baddbmm at the same shapes."""
    import gymnasium as gym

    from neuroes.agents import BatchedForward, MLPPolicy, num_params
    from neuroes.agents.flat import aligned_rows

    torch.set_num_threads(2)
    env = gym.make("HalfCheetah-v5")
    policy = MLPPolicy(env.observation_space, env.action_space, hidden=(dim_hidden, dim_hidden))
    forward = BatchedForward(policy)
    thetas = aligned_rows(torch.randn(popsize, num_params(policy)) * 0.01)
    obs = aligned_rows(torch.randn(popsize, 1, policy.obs_dim))
    bound = forward.bind(thetas)
    sizes = [policy.obs_dim, dim_hidden, dim_hidden, 6]
    weights = [torch.randn(popsize, a, b) * 0.01 for a, b in zip(sizes, sizes[1:], strict=False)]
    biases = [torch.randn(popsize, 1, b) for b in sizes[1:]]

    def bare() -> None:
        x = obs
        for k, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if k < len(weights) - 1:
                x = torch.tanh(x)

    with torch.no_grad():
        ours, reference = _timed(lambda: bound(obs), 20), _timed(bare, 20)
    return {"dim": num_params(policy), "popsize": popsize, "ours": ours, "bmm": reference}


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f} ms"


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f} GB"


def table(rows: list[dict], forwards: list[dict], scales: list[dict]) -> str:
    lines = [
        "| d | P | ask | tell | ask + tell | floor | ratio | learner memory | target memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        total = row["ask"] + row["tell"]
        target = 2 * row["matrix_bytes"] + row["table_bytes"]
        lines.append(
            f"| {row['dim']:,} | {row['popsize']} | {_ms(row['ask'])} | {_ms(row['tell'])} | "
            f"{_ms(total)} | {_ms(row['floor'])} | {total / row['floor']:.2f}x | "
            f"{_gb(row['peak_bytes'])} | {_gb(target)} |"
        )
    lines += [
        "",
        "| policy d | P | bound forward | bare baddbmm | ratio |",
        "|---|---|---|---|---|",
    ]
    for row in forwards:
        lines.append(
            f"| {row['dim']:,} | {row['popsize']} | {_ms(row['ours'])} | {_ms(row['bmm'])} | "
            f"{row['ours'] / row['bmm']:.2f}x |"
        )
    lines += ["", "| one generation | d | P | seconds | peak memory | P x d float32 |"]
    lines.append("|---|---|---|---|---|---|")
    for row in scales:
        lines.append(
            f"| {row['algo']} | {row['dim']:,} | {row['popsize']} | {row['seconds']:.1f} s | "
            f"{_gb(row['peak_bytes'])} | {_gb(row['matrix_bytes'])} |"
        )
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(6, 4))
    for popsize in sorted({row["popsize"] for row in rows}):
        mine = [row for row in rows if row["popsize"] == popsize]
        ratios = [(row["ask"] + row["tell"]) / row["floor"] for row in mine]
        axes.plot([row["dim"] for row in mine], ratios, marker="o", label=f"P = {popsize}")
    axes.axhline(3, color="grey", linestyle="--", label="target (3x)")
    axes.set_xscale("log")
    axes.set_xlabel("parameters d")
    axes.set_ylabel("(ask + tell) / floor")
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--dims", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 4_000_000])
    cli.add_argument("--popsizes", type=int, nargs="+", default=[64, 256, 1024])
    cli.add_argument("--generations", type=int, default=2)
    cli.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    cli.add_argument("--one", type=int, nargs=2, metavar=("D", "P"), help=argparse.SUPPRESS)
    cli.add_argument("--forward", type=int, nargs=2, metavar=("H", "P"), help=argparse.SUPPRESS)
    cli.add_argument("--scale", nargs=3, metavar=("ALGO", "D", "P"), help=argparse.SUPPRESS)
    args = cli.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.generations)))
        return
    if args.forward:
        print(json.dumps(forward_row(*args.forward)))
        return
    if args.scale:
        print(json.dumps(scale_row(args.scale[0], int(args.scale[1]), int(args.scale[2]))))
        return

    def measure(*flags: str) -> dict:
        command = [sys.executable, __file__, *flags, "--generations", str(args.generations)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
        print(result, flush=True)
        return result

    rows = [measure("--one", str(d), str(p)) for d in args.dims for p in args.popsizes]
    forwards = [measure("--forward", "1024", str(p)) for p in (16, 64)]
    scales = [measure("--scale", algo, "4000000", "1000") for algo in ("nes", "ga")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learner.md").write_text(table(rows, forwards, scales))
    figure(rows, args.out / "learner.png")
    print(table(rows, forwards, scales))


if __name__ == "__main__":
    main()
