"""Records on disk: replaced in one step, and read as None when they are not records."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_alchemy import files


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")
    files.write_atomically(path, '{"new": true}\n')
    assert path.read_text() == '{"new": true}\n'
    assert list(tmp_path.iterdir()) == [path]
    assert files.read_json(path) == {"new": True}


def test_a_failed_write_keeps_the_old_file_and_raises(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError):  # noqa: PT011 - any OSError: the caller words it
        files.write_atomically(target, "text")
    assert target.is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-directory"]


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]"])
def test_what_is_not_a_json_object_reads_as_none(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "record.json"
    if content is not None:
        path.write_text(content)
    assert files.read_json(path) is None
