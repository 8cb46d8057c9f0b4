"""A real (non-editable) install places agents/ and envs/ inside the neuroes package only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_copy_has_subpackages_and_no_top_level_agents_or_envs(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    installed = {path.name for path in target.iterdir()}
    assert "neuroes" in installed
    assert not installed & {"agents", "envs", "benchmarks", "tests"}, installed
    assert (target / "neuroes" / "agents" / "__init__.py").is_file()
    assert (target / "neuroes" / "envs" / "__init__.py").is_file()
    assert (target / "neuroes" / "envs" / "vector" / "__init__.py").is_file()
    probe = (
        "import neuroes, neuroes.agents, neuroes.envs, importlib.util as u;"
        "print(neuroes.__file__, neuroes.agents.__file__, neuroes.envs.__file__);"
        "print(u.find_spec('agents'), u.find_spec('envs'))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    files, specs = result.stdout.splitlines()
    assert all(path.startswith(str(target)) for path in files.split()), files
    assert specs == "None None"
