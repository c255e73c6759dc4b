"""The run store's journal: a write is durable once it is here, before it is in DuckDB.

A DuckDB commit costs 1-3 ms on this machine (its statements, its own WAL and sync);
appending a line to a file and syncing it costs about 0.2 ms. So the store's writer
thread appends each batch of plain writes (step attempts, run updates, run ends) here,
syncs, and only then acknowledges them; they go to DuckDB later, many batches in one
transaction, and always before anything reads (`duckdb_writer.py`). The file has two
segments, so that one can be put in DuckDB while appends go on in the other.

Each append is one frame: its length, a CRC-32 of its body, and the body, which is
`marshal` data (the C serialiser of plain values: strings, numbers, None, tuples,
lists, dicts; loading it runs no code), `(first_seq, [(op, args), ...])`. The
transaction that applies entries to DuckDB also records the last applied `seq` (table
`journal_applied`), so when the store opens after a crash it applies exactly the entries
DuckDB does not have yet; a segment is emptied once DuckDB holds everything in it. A
frame cut short by a crash was never acknowledged (the sync comes after the whole frame
is written), and is dropped.

Used by the writer thread, and by the thread it hands a rotated segment to
(`clear_segment` of that segment only).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.errors import StoreError

Entry = tuple[int, str, Sequence[Any]]  # seq, op, args
_HEADER = struct.Struct("<II")  # body length, CRC-32 of the body


class Journal:
    """An append-only file of encoded writes next to the store's DuckDB file, in two
    segments: `path` and `path-2`. Appends go to the current one; `rotate` makes the
    other current, so the writes of the old one can be put in DuckDB (by another
    thread) while new ones are appended, and the old segment emptied once they are in.
    Reopened, both are read, in sequence order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.paths = (path, Path(f"{path}-2"))
        self._fds: list[int | None] = [None, None]
        self._holds = [False, False]  # whether a segment holds entries since it was emptied
        self._current = 0
        self.next_seq = 1

    def open(self, applied: int) -> list[Entry]:
        """Open for appending; return the entries after `applied` (DuckDB's last), in order."""
        entries: list[Entry] = []
        for i, path in enumerate(self.paths):
            if i and not path.exists():
                continue  # made at the first rotation
            created = not path.exists()
            found, good_size = _read(path)
            fd = self._fds[i] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if created:
                _sync_directory(path.parent)  # the file itself survives a crash
            if good_size < os.fstat(fd).st_size:
                os.ftruncate(fd, good_size)  # a torn last frame: never acknowledged
                os.fsync(fd)
            entries.extend(found)
            self._holds[i] = bool(found)
        entries.sort(key=lambda entry: entry[0])
        last = max((seq for seq, _, _ in entries), default=0)
        self.next_seq = max(last, applied) + 1
        return [entry for entry in entries if entry[0] > applied]

    def append(self, ops: list[tuple[str, Sequence[Any]]]) -> int:
        """Write `ops` and sync; they are durable when this returns. Returns the last seq.
        Raises ValueError for a value `marshal` cannot write (nothing is written then)."""
        fd = self._fds[self._current]
        if fd is None:
            raise StoreError(f"the run store's journal {self.path} is not open")
        body = marshal.dumps((self.next_seq, ops))
        data = _HEADER.pack(len(body), zlib.crc32(body)) + body
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
        self._holds[self._current] = True
        self.next_seq += len(ops)
        return self.next_seq - 1

    def can_rotate(self) -> bool:
        """Whether the other segment is empty, so appends can move to it."""
        return not self._holds[1 - self._current]

    def rotate(self) -> int:
        """Append to the other (empty) segment from now on; returns the old one's index,
        for `clear_segment` once its writes are in DuckDB."""
        other = 1 - self._current
        if self._holds[other]:
            raise StoreError(f"the run store's journal {self.paths[other]} still holds writes")
        if self._fds[other] is None:
            path = self.paths[other]
            self._fds[other] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _sync_directory(path.parent)
        old, self._current = self._current, other
        return old

    def clear_segment(self, index: int) -> None:
        """Empty one segment: DuckDB has committed every entry in it. Safe from another
        thread while appends go to the current segment (never this one)."""
        fd = self._fds[index]
        if fd is not None:
            os.ftruncate(fd, 0)
            os.fdatasync(fd)
        self._holds[index] = False

    def clear(self) -> None:
        """Empty both segments: DuckDB has committed every entry in them."""
        for index in (0, 1):
            if self._holds[index] or index == self._current:
                self.clear_segment(index)

    def close(self) -> None:
        fds, self._fds = self._fds, [None, None]
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _read(path: Path) -> tuple[list[Entry], int]:
    """The entries of the complete frames in one segment, and the size those take."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[Entry] = []
    at = 0
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        body = data[at + _HEADER.size : at + _HEADER.size + length]
        if len(body) < length:
            break  # cut short by a crash: never acknowledged
        try:
            if zlib.crc32(body) != crc:
                raise ValueError("its checksum does not match")
            first, ops = marshal.loads(body)
            entries.extend((first + i, str(op), args) for i, (op, args) in enumerate(ops))
        except (ValueError, TypeError, EOFError) as exc:
            if at + _HEADER.size + length == len(data):
                break  # the last frame, half written when the machine stopped
            raise StoreError(
                f"the run store's journal {path} is damaged at byte {at} ({exc}); "
                "it holds acknowledged writes DuckDB may lack: keep a copy before removing it"
            ) from exc
        at += _HEADER.size + length
    return entries, at


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
