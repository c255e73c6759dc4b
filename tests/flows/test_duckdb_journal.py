"""The run store's journal file on its own: order, sequence numbers, torn and damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.duckdb_journal import Journal
from flows.errors import StoreError


def test_entries_come_back_in_order_after_what_duckdb_applied(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs.journal")
    assert journal.open(applied=0) == []
    assert journal.append([("put_step", [["r1", "s0"], True]), ("update_run", ["r1", {}])]) == 2
    assert journal.append([("finish", ["r1"])]) == 3
    journal.close()

    again = Journal(tmp_path / "runs.journal")
    assert again.open(applied=1) == [
        (2, "update_run", ["r1", {}]),
        (3, "finish", ["r1"]),
    ]
    assert again.append([("put_step", [["r2", "s0"], False])]) == 4  # numbering goes on
    again.close()


def test_numbering_goes_on_from_duckdb_after_the_file_was_cleared(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs.journal")
    journal.open(applied=0)
    journal.append([("a", []), ("b", [])])
    journal.clear()
    journal.close()
    assert (tmp_path / "runs.journal").stat().st_size == 0

    again = Journal(tmp_path / "runs.journal")
    assert again.open(applied=2) == []
    assert again.append([("c", [])]) == 3
    again.close()


def test_a_line_cut_short_by_a_crash_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "runs.journal"
    path.write_bytes(b'[1,"a",1]\n[2,"b",2]\n[3,"c",')
    journal = Journal(path)
    assert [seq for seq, _, _ in journal.open(applied=0)] == [1, 2]
    assert journal.append([("d", [4])]) == 3
    journal.close()
    assert path.read_bytes() == b'[1,"a",1]\n[2,"b",2]\n[3,"d",4]\n'


def test_a_damaged_line_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "runs.journal"
    path.write_bytes(b'[1,"a",1]\nnot json\n[3,"c",3]\n')
    with pytest.raises(StoreError, match=r"damaged at byte 10 .*keep a copy"):
        Journal(path).open(applied=0)
    assert path.read_bytes().startswith(b'[1,"a",1]\nnot json')  # nothing was thrown away


def test_the_file_is_private(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs.journal")
    journal.open(applied=0)
    journal.close()
    assert (tmp_path / "runs.journal").stat().st_mode & 0o777 == 0o600
