from pathlib import Path

import pytest

from mlship.errors import InputError
from mlship.files import read_json, write_json, write_with


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    write_json(target, {"version": 1})

    def half_then_crash(temp: Path) -> None:
        temp.write_text("{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_with(target, half_then_crash)
    assert read_json(target) == {"version": 1}
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_read_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.json: not found"):
        read_json(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match=r"bad\.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_outputs_are_readable_by_other_users(tmp_path: Path) -> None:
    target = tmp_path / "model_card.json"
    write_json(target, {})
    assert target.stat().st_mode & 0o777 == 0o644
