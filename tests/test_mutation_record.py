"""The mutation command's record: results survive a lost stage, and go stale with their code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutation  # noqa: E402

MODULE = "neuroes.toy"
META = Path("mutants/neuroes/toy.py.meta")


def write_meta(stage: Path, codes: dict[str, int | None], hashes: dict[str, str]) -> None:
    meta = {key: {} for key in mutation.META_KEYS}
    meta["exit_code_by_key"] = {f"{MODULE}.{name}": code for name, code in codes.items()}
    meta["hash_by_function_name"] = hashes
    (stage / META).parent.mkdir(parents=True, exist_ok=True)
    (stage / META).write_text(json.dumps(meta))


def stage_codes(stage: Path) -> dict[str, int | None]:
    codes = json.loads((stage / META).read_text())["exit_code_by_key"]
    return {key.removeprefix(f"{MODULE}."): code for key, code in codes.items()}


@pytest.fixture
def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(mutation, "STAGE", tmp_path / "stage")
    monkeypatch.setattr(mutation, "RECORD", tmp_path / "results.json")
    return tmp_path / "stage"


def test_a_lost_stage_gets_every_recorded_result_back(stage: Path) -> None:
    codes = {"x_f__mutmut_1": 1, "x_f__mutmut_2": 0, "x_f__mutmut_3": None, "x_g__mutmut_1": 36}
    write_meta(stage, {**codes, "x_f__mutmut_4": mutation.INTERRUPTED}, {"x_f": "a", "x_g": "b"})
    mutation.record()
    recorded = json.loads(mutation.RECORD.read_text())["neuroes/toy.py"]
    assert recorded == {
        f"{MODULE}.x_f": {"hash": "a", "exit_codes": [1, 0, None, None]},  # interrupted: no result
        f"{MODULE}.x_g": {"hash": "b", "exit_codes": [36]},
    }

    (stage / META).unlink()
    mutation.restore()
    assert stage_codes(stage) == {**codes, "x_f__mutmut_4": None}


def test_statuses_are_read_from_the_record(stage: Path) -> None:
    pytest.importorskip("mutmut", reason="the mutation extra names mutmut's statuses")
    codes = {"x_f__mutmut_1": 1, "x_f__mutmut_2": 0, "x_f__mutmut_4": 2, "x_g__mutmut_1": 36}
    write_meta(stage, codes, {"x_f": "a", "x_g": "b"})
    mutation.record()
    assert mutation.statuses()[MODULE] == {
        f"{MODULE}.x_f__mutmut_1": "killed",
        f"{MODULE}.x_f__mutmut_2": "survived",
        f"{MODULE}.x_f__mutmut_3": "not checked",
        f"{MODULE}.x_f__mutmut_4": "not checked",
        f"{MODULE}.x_g__mutmut_1": "timeout",
    }


def test_results_merge_only_for_functions_whose_code_is_unchanged(stage: Path) -> None:
    write_meta(stage, {"x_f__mutmut_1": 1, "x_g__mutmut_1": 0}, {"x_f": "a", "x_g": "b"})
    mutation.record()
    # The stage regenerated: x_f's code changed, x_g's did not, and x_g has a new result.
    write_meta(stage, {"x_f__mutmut_1": None, "x_g__mutmut_1": None, "x_g__mutmut_2": 1},
               {"x_f": "changed", "x_g": "b"})  # fmt: skip
    mutation.sync()
    expected = {"x_f__mutmut_1": None, "x_g__mutmut_1": 0, "x_g__mutmut_2": 1}
    assert stage_codes(stage) == expected
    recorded = json.loads(mutation.RECORD.read_text())["neuroes/toy.py"]
    assert recorded[f"{MODULE}.x_f"] == {"hash": "changed", "exit_codes": [None]}
    assert recorded[f"{MODULE}.x_g"] == {"hash": "b", "exit_codes": [0, 1]}
