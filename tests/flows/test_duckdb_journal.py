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


def test_a_frame_cut_short_by_a_crash_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "runs.journal"
    journal = Journal(path)
    journal.open(applied=0)
    journal.append([("a", [1])])
    journal.append([("b", [2])])
    journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2 - 3])  # a third frame, half written

    again = Journal(path)
    assert again.open(applied=0) == [(1, "a", [1]), (2, "b", [2])]
    assert again.append([("c", [3])]) == 3
    again.close()
    assert Journal(path).open(applied=0) == [(1, "a", [1]), (2, "b", [2]), (3, "c", [3])]


def test_a_last_frame_that_fails_its_checksum_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "runs.journal"
    journal = Journal(path)
    journal.open(applied=0)
    journal.append([("a", [1])])
    size = path.stat().st_size
    journal.append([("b", [2])])
    journal.close()
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 0xFF  # the machine stopped while the last frame's pages were written
    path.write_bytes(bytes(damaged))
    assert Journal(path).open(applied=0) == [(1, "a", [1])]
    assert path.stat().st_size == size


def test_a_damaged_frame_before_others_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "runs.journal"
    journal = Journal(path)
    journal.open(applied=0)
    journal.append([("a", [1])])
    journal.append([("b", [2])])
    journal.close()
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(StoreError, match=r"damaged at byte 0 .*keep a copy"):
        Journal(path).open(applied=0)
    assert path.read_bytes() == bytes(damaged)  # nothing was thrown away


def test_the_file_is_private(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs.journal")
    journal.open(applied=0)
    journal.close()
    assert (tmp_path / "runs.journal").stat().st_mode & 0o777 == 0o600


def test_a_rotated_journal_reads_back_both_segments_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "runs.journal")
    journal.open(applied=0)
    journal.append([("a", [1]), ("b", [2])])
    assert journal.can_rotate()
    old = journal.rotate()  # `a` and `b` go to DuckDB from the old segment meanwhile
    assert journal.append([("c", [3])]) == 3
    assert not journal.can_rotate()  # the old segment still holds a and b
    with pytest.raises(StoreError, match="still holds writes"):
        journal.rotate()
    journal.close()  # a crash before the old segment was emptied

    again = Journal(tmp_path / "runs.journal")
    assert again.open(applied=1) == [(2, "b", [2]), (3, "c", [3])]
    again.close()

    journal = Journal(tmp_path / "runs.journal")
    journal.open(applied=3)
    journal.clear_segment(old)
    assert (tmp_path / "runs.journal").stat().st_size == 0
    assert (tmp_path / "runs.journal-2").stat().st_size > 0
    journal.clear()
    assert (tmp_path / "runs.journal-2").stat().st_size == 0
    assert (tmp_path / "runs.journal-2").stat().st_mode & 0o777 == 0o600
    journal.close()
