"""Mutation testing of the core with mutmut: does a plausible bug fail a test?

    python tests/mutation.py                           # every mutant (hours on 2 cores)
    python tests/mutation.py "neuroes.shaping.*"       # the mutants of one module (mutmut globs)
    python tests/mutation.py --score                   # the last results, per module
    python tests/mutation.py --survivors               # the surviving mutants, with their diffs
    python tests/mutation.py --recheck                 # the survivors again, after new tests

mutmut names a mutant after the module it imports (``neuroes.agents.normalizer.x_...``), so it
runs in ``.mutation/``, a copy of the repository laid out as the installed package (``agents/``
and ``envs/`` inside ``neuroes/``); mutmut keeps its results there, and a rerun only checks the
mutants of functions that changed. Every result is also kept in the repository, in
``tests/mutation_results.json`` (with the hash of each mutated function's code), written after
each run and each report: a fresh checkout starts from the recorded results instead of hours of
mutants already checked. The modules mutated and the tests left out (the README, the
packaging and the Ray cluster) are in ``[tool.mutmut]`` of ``pyproject.toml``. Local workers
run the mutant too (they inherit the import path), but the command lines that some tests start
as subprocesses import the installed package: a mutant only they could catch survives. How to
read the output: ``tests/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutation"
RECORD = ROOT / "tests" / "mutation_results.json"
META_KEYS = (
    "exit_code_by_key",
    "hash_by_function_name",
    "type_check_error_by_key",
    "durations_by_key",
    "estimated_durations_by_key",
)
LAYOUT = {
    "neuroes": "neuroes",
    "agents": "neuroes/agents",
    "envs": "neuroes/envs",
    "tests": "tests",
    "benchmarks": "benchmarks",
    "pyproject.toml": "pyproject.toml",
    "setup.cfg": "setup.cfg",
}
# Functions that run only in worker processes, with the function that starts those processes:
# mutmut maps a function to the tests that call it in their own process, so these get no tests
# of their own; they are given their starter's.
IN_WORKERS = {"neuroes.workers.x__serve": "neuroes.workers.xǁLocalWorkersǁ_start"}
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
INTERRUPTED = 2  # pytest's exit code when a check was stopped: no result
UNCHECKED = {"not checked", "skipped"}


def stage() -> None:
    """Copy the sources into ``STAGE`` in the installed layout, keeping file times (mutmut
    regenerates the mutants of a file only when its time changes) and mutmut's results."""
    ignore = shutil.ignore_patterns("__pycache__", "results", "*.egg-info")
    for source, target in LAYOUT.items():
        target = STAGE / target
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=ignore)
        else:
            shutil.copy2(ROOT / source, target)


def forget_stale_test_map() -> None:
    """Drop mutmut's map of tests to functions when a test changed after it was made: mutmut
    maps only tests with new names, so an edited test would keep its old map and miss the
    mutants it now kills."""
    stats = STAGE / "mutants" / "mutmut-stats.json"
    tests = [*ROOT.glob("tests/test_*.py"), ROOT / "tests/conftest.py", *ROOT.glob("tests/data/*")]
    if stats.exists() and max(p.stat().st_mtime for p in tests) > stats.stat().st_mtime:
        stats.unlink()


def mutmut(*args: str) -> int:
    """Run ``mutmut args`` in the stage (through :func:`mutmut_fastest_first`), torch on one
    thread: mutmut forks a process per mutant, and a process forked after OpenMP started its
    threads hangs at its first parallel loop."""
    entry = f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import mutation; "
    command = [sys.executable, "-c", entry + "mutation.mutmut_fastest_first()", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, cwd=STAGE, env=env).returncode


def mutmut_fastest_first() -> None:
    """mutmut's command line, with each mutant's tests run fastest first (by their times in
    mutmut's map). pytest stops at the first failure, and mutmut hands a mutant's tests over in
    set order: a fast test that kills the mutant often ran after minutes of tests that start
    worker processes or Ray."""
    from mutmut.__main__ import cli
    from mutmut.state import state
    from mutmut.workers.isolation import MutantRunner

    def sorted_tests(submit: Callable) -> Callable:
        def submit_sorted(runner: MutantRunner, mutant: str, tests: list[str], *rest) -> None:
            duration = state().duration_by_test
            tests = sorted(tests, key=lambda test: (duration.get(test, 0.0), test))
            submit(runner, mutant, tests, *rest)

        return submit_sorted

    for runner in MutantRunner.__subclasses__():
        runner.submit = sorted_tests(runner.submit)
    cli()


def map_worker_functions() -> list[str]:
    """Give the functions of ``IN_WORKERS`` their starters' tests in mutmut's map; return
    their mutants that ran without tests."""
    path = STAGE / "mutants" / "mutmut-stats.json"
    if not path.exists():  # mutmut stopped before mapping the tests
        return []
    stats = json.loads(path.read_text())
    tests = stats["tests_by_mangled_function_name"]
    for function, starter in IN_WORKERS.items():
        tests[function] = tests.get(starter, [])
    path.write_text(json.dumps(stats))
    return [
        mutant
        for by_mutant in statuses().values()
        for mutant, status in by_mutant.items()
        if status == "no tests" and mutant.split("__mutmut_")[0] in IN_WORKERS
    ]


def record() -> None:
    """Write the stage's results into ``RECORD``: for every mutated function of every file, the
    hash of its code and the exit code of each of its mutants (``None``: not checked)."""
    found: dict[str, dict[str, dict]] = {}
    for meta_path in sorted((STAGE / "mutants").rglob("*.py.meta")):
        meta = json.loads(meta_path.read_text())
        codes: defaultdict[str, dict[int, int | None]] = defaultdict(dict)
        for mutant, code in meta["exit_code_by_key"].items():
            function, _, number = mutant.partition("__mutmut_")
            codes[function][int(number)] = None if code == INTERRUPTED else code
        hashes = meta["hash_by_function_name"]
        found[str(meta_path.relative_to(STAGE / "mutants")).removesuffix(".meta")] = {
            function: {
                "hash": hashes.get(function.rpartition(".")[2]),
                "exit_codes": [by_number.get(n) for n in range(1, max(by_number) + 1)],
            }
            for function, by_number in sorted(codes.items())
        }
    RECORD.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")


def restore() -> None:
    """Give the stage the recorded result of each mutant it has not checked whose function's
    code is the same as when it was recorded (mutmut regenerates the mutants and keeps the
    results of functions whose hash did not change)."""
    if not RECORD.exists():
        return
    for path, functions in json.loads(RECORD.read_text()).items():
        meta_path = STAGE / "mutants" / (path + ".meta")
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
        else:
            meta = {key: {} for key in META_KEYS}
        for function, result in functions.items():
            name = function.rpartition(".")[2]
            if meta["hash_by_function_name"].setdefault(name, result["hash"]) != result["hash"]:
                continue
            for number, code in enumerate(result["exit_codes"], start=1):
                mutant = f"{function}__mutmut_{number}"
                if meta["exit_code_by_key"].get(mutant) is None:
                    meta["exit_code_by_key"][mutant] = code
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta))


def sync() -> None:
    """Merge the stage's results with the recorded ones, into both."""
    restore()
    record()


def statuses() -> dict[str, dict[str, str]]:
    """``{module: {mutant: status}}`` as recorded, statuses as ``mutmut results`` prints."""
    from mutmut.stats import status_by_exit_code

    if not RECORD.exists():
        return {}
    found: dict[str, dict[str, str]] = {}
    for path, functions in json.loads(RECORD.read_text()).items():
        found[path.removesuffix(".py").replace("/", ".")] = {
            f"{function}__mutmut_{number}": status_by_exit_code[code]
            for function, result in functions.items()
            for number, code in enumerate(result["exit_codes"], start=1)
        }
    return found


def score() -> None:
    """Print the killed fraction of every module's checked mutants, and of all of them."""
    total: Counter[str] = Counter()
    print(f"{'module':<40} {'mutants':>8} {'killed':>7} {'score':>7}  others")
    for module, by_mutant in statuses().items():
        counts = Counter(by_mutant.values())
        total.update(counts)
        _row(module, counts)
    _row("all", total)


def _row(name: str, counts: Counter[str]) -> None:
    checked = sum(n for status, n in counts.items() if status not in UNCHECKED)
    killed = sum(counts[status] for status in KILLED)
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in KILLED)
    fraction = f"{killed / checked:.1%}" if checked else "-"
    print(f"{name:<40} {checked:>8} {killed:>7} {fraction:>7}  {others}")


def surviving() -> list[str]:
    """The checked mutants that no test killed."""
    return [
        mutant
        for by_mutant in statuses().values()
        for mutant, status in by_mutant.items()
        if status not in KILLED | UNCHECKED
    ]


def survivors() -> None:
    """Print every surviving mutant with its diff."""
    for mutant in surviving():
        print(f"## {mutant}", flush=True)
        mutmut("show", mutant)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("mutants", nargs="*", help="mutmut name globs; all when none")
    report = cli.add_mutually_exclusive_group()
    report.add_argument("--score", action="store_true", help="print the last results")
    report.add_argument("--survivors", action="store_true", help="print the survivors' diffs")
    report.add_argument(
        "--recheck",
        action="store_true",
        help="run the surviving mutants again (mutmut keeps a result until its function changes)",
    )
    cli.add_argument("--jobs", type=int, default=os.cpu_count(), help="mutants at a time")
    args = cli.parse_args(argv)
    if (STAGE / "mutants").is_dir():
        sync()
    if args.score or args.survivors:
        (score if args.score else survivors)()
        return 0
    mutants = args.mutants
    if args.recheck:
        mutants = surviving()
        if not mutants:
            print("no surviving mutants to check again")
            return 0
    stage()
    sync()
    forget_stale_test_map()
    try:
        code = mutmut("run", "--max-children", str(args.jobs), *mutants)
        unmapped = map_worker_functions()
        if unmapped:
            code = mutmut("run", "--max-children", str(args.jobs), *unmapped) or code
    finally:
        sync()
    score()
    return code


if __name__ == "__main__":
    sys.exit(main())
