"""Every Python example of the README runs as written, in order, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert namespace["summary"].solved and namespace["agent"].env_id == "CartPole-v1"
    assert (namespace["nes"].mean - 3.0).abs().max() < 0.5
    assert len(namespace["runs"]) == 3 and namespace["custom"].generations == 5
