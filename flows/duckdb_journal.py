"""The run store's journal: a write is durable once it is here, before it is in DuckDB.

A DuckDB commit costs 1-3 ms on this machine (its statements, its own WAL and sync);
appending a line to a file and syncing it costs about 0.2 ms. So the store's writer
thread appends each batch of plain writes (step attempts, run updates, run ends) here,
syncs, and only then acknowledges them; it applies them to DuckDB later, many batches
in one transaction, and always before anything reads (`duckdb_store.py`).

Each append is one frame: its length, a CRC-32 of its body, and the body, which is
`marshal` data (the C serialiser of plain values: strings, numbers, None, tuples,
lists, dicts; loading it runs no code), `(first_seq, [(op, args), ...])`. The
transaction that applies entries to DuckDB also records the last applied `seq` (table
`journal_applied`), so when the store opens after a crash it applies exactly the entries
DuckDB does not have yet; the file is emptied once DuckDB holds everything in it. A
frame cut short by a crash was never acknowledged (the sync comes after the whole frame
is written), and is dropped.

Used only by the writer thread: nothing here is thread-safe.
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
    """An append-only file of encoded writes next to the store's DuckDB file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.next_seq = 1

    def open(self, applied: int) -> list[Entry]:
        """Open for appending; return the entries after `applied` (DuckDB's last), in order."""
        created = not self.path.exists()
        entries, good_size = self._read()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if created:
            _sync_directory(self.path.parent)  # the file itself survives a crash
        if good_size < os.fstat(self._fd).st_size:
            os.ftruncate(self._fd, good_size)  # a torn last line: never acknowledged
            os.fsync(self._fd)
        last = max((seq for seq, _, _ in entries), default=0)
        self.next_seq = max(last, applied) + 1
        return [entry for entry in entries if entry[0] > applied]

    def append(self, ops: list[tuple[str, Sequence[Any]]]) -> int:
        """Write `ops` and sync; they are durable when this returns. Returns the last seq.
        Raises ValueError for a value `marshal` cannot write (nothing is written then)."""
        if self._fd is None:
            raise StoreError(f"the run store's journal {self.path} is not open")
        body = marshal.dumps((self.next_seq, ops))
        data = _HEADER.pack(len(body), zlib.crc32(body)) + body
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fdatasync(self._fd)
        self.next_seq += len(ops)
        return self.next_seq - 1

    def clear(self) -> None:
        """Empty the file: DuckDB has committed every entry in it."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.fdatasync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _read(self) -> tuple[list[Entry], int]:
        """The entries of the complete frames in the file, and the size those take."""
        try:
            data = self.path.read_bytes()
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
                    f"the run store's journal {self.path} is damaged at byte {at} ({exc}); "
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
