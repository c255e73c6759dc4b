"""The run store's writer thread: the one owner of the DuckDB connection.

Every store call, read or write, is queued here as an `Op` (the future its caller
awaits). The thread takes everything queued and serves it as one batch:

- A batch of plain writes only (step attempts, run updates, run ends, log lines: the
  engine's traffic) is appended to the journal (`duckdb_journal.py`) and synced, and
  then acknowledged. Those writes reach DuckDB later, many batches in one transaction:
  when enough have gathered (on a thread of their own, while new writes go on being
  acknowledged), when none came for a moment, and always before any other operation
  runs, so every read sees every acknowledged write.
- Any other batch runs in one DuckDB transaction, committed before it is acknowledged.
  A batch that fails (a duplicate run id, a value DuckDB refuses) is rolled back and its
  operations retried one transaction each: the bad one fails alone with a `StoreError`,
  the others commit, and the thread keeps serving.

Either way nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from flows.duckdb_journal import Journal
from flows.duckdb_schema import connect, rollback
from flows.duckdb_tables import Txn
from flows.errors import StoreError

Outcome = tuple[BaseException | None, Any]  # (error, result) of one operation
DONE: Outcome = (None, None)  # a write's outcome: shared, not one tuple per write
# Futures resolved per event-loop callback (see _settle).
SETTLE_SLICE = 256
# Journaled writes go to DuckDB once this many wait (on a thread of their own, see
# Writer._apply_behind), or when no call has come for this long (here: nobody waits).
# Not on a timer under steady traffic: 200 writes cost about 40 ms to apply (230 us
# each) against about 17 us each for 4,096, and a timer fired every quarter second
# while flows ran, holding every acknowledgement for those 40 ms each time.
APPLY_AT = 4096
APPLY_WHEN_QUIET_S = 0.25


def finish(
    txn: Txn,
    run_id: str,
    created: Sequence[Any] | None,
    steps: Sequence[tuple[Sequence[Any], bool]],
    values: dict[str, Any],
) -> None:
    """A run's end: its last step attempts and its fields (or, `created`, its whole record)."""
    if created is not None:
        txn.insert_run(created)
    for row, new in steps:
        txn.put_step(row, new)
    if values and created is None:
        txn.update_run(run_id, values)


def insert_new_run(txn: Txn, row: Sequence[Any]) -> None:
    """A run whose id its caller has just made (a random uuid): no run can have it yet."""
    txn.insert_run(row)


# The writes that may be acknowledged from the journal: none of them can fail in DuckDB
# once their values are encoded (a blind insert that meets a row is retried carefully),
# and a new run's id is checked first (`_new_runs_unique`) unless its caller just made it.
JOURNALED: dict[Callable[..., Any], str] = {
    Txn.insert_run: "insert_run",
    insert_new_run: "insert_new_run",
    Txn.put_step: "put_step",
    Txn.update_run: "update_run",
    Txn.add_logs: "add_logs",
    finish: "finish",
}
_REPLAYED = {name: run for run, name in JOURNALED.items()}


class Op(asyncio.Future[Any]):
    """One queued call, and the future its caller awaits: `run(txn, *args)` does its
    work inside the writer's transaction. One object rather than two, as thousands
    wait at once and each is walked by every full garbage collection meanwhile."""

    __slots__ = ("args", "read_only", "run", "what")
    # Set by `DuckDbStore._submit`, its only maker (no __init__: half the cost of one).
    what: str  # names the call in error messages: "create_run 'r1'"
    run: Callable[..., Any]
    args: tuple[Any, ...]
    read_only: bool  # user SQL: alone, READ ONLY, after the batch commits


class Writer:
    """The thread serving a store's queue; see the module's docstring.

    `commit_interval_s`: while operations keep coming (the last batch held more than
    one), the writer waits this long after the first of a batch for others to join its
    DuckDB commit; a lone caller is served at once, and journaled batches never wait.
    """

    def __init__(self, path: Path, *, commit_interval_s: float, journal: bool) -> None:
        self.path = path
        self.commit_interval_s = commit_interval_s
        self.queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()  # None: close
        self.journal = Journal(Path(f"{path}.journal")) if journal else None
        self.commits = 0  # durable group commits: journal syncs and DuckDB commits
        self.open = False  # serving: calls may be queued
        # Step attempts this store has written: their next write is a cheap UPDATE
        # (about 2.5 ms) rather than an INSERT OR REPLACE (about 7 ms) on this machine.
        self._known_attempts: set[tuple[str, str, int]] = set()
        self._unapplied: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._unapplied_runs: set[str] = set()  # ids of journaled new runs
        self._last_seq = 0
        self._apply_error: StoreError | None = None
        # Journaled writes being put in DuckDB by a thread of their own (`_apply_behind`),
        # on a second connection, while this thread goes on acknowledging new ones.
        self._behind: threading.Thread | None = None
        self._behind_entries: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._behind_runs: set[str] = set()
        self._behind_error: StoreError | None = None
        self._cursor: duckdb.DuckDBPyConnection | None = None

    @property
    def journaled(self) -> int:
        """Writes acknowledged from the journal and not yet committed in DuckDB."""
        return len(self._unapplied) + len(self._behind_entries)

    def serve(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        """The thread's body: owns the connection (and journal) from open to close."""
        try:
            con = connect(self.path)
        except BaseException as exc:
            _post(loop, [ready], [(exc, None)])
            return
        with con:
            try:
                self._open_journal(con)
            except BaseException as exc:
                _post(loop, [ready], [(exc, None)])
                return
            self.open = True
            _post(loop, [ready], [DONE])
            try:
                self._serve_batches(con)
            finally:
                self._join_behind()
                if self._cursor is not None:
                    self._cursor.close()
                self.open = False  # refuse new calls, and fail any left in the queue
                left: list[Op | None] = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        left.append(self.queue.get_nowait())
                ops = [op for op in left if op is not None]
                gone = StoreError(f"the run store {self.path} closed before this ran")
                _deliver(ops, [(gone, None)] * len(ops))
                if self.journal is not None:
                    self.journal.close()

    # ------------------------------------------------------------ the journal

    def _open_journal(self, con: duckdb.DuckDBPyConnection) -> None:
        """Apply what a crash left in the journal and not in DuckDB, then empty it."""
        if self.journal is None:
            return
        row = con.execute("SELECT seq FROM journal_applied").fetchone()
        entries = self.journal.open(applied=int(row[0]) if row else 0)
        for seq, name, args in entries:
            if name not in _REPLAYED:
                raise StoreError(
                    f"the run store's journal {self.journal.path} holds an unknown write "
                    f"{name!r} (entry {seq}); was it written by a newer Gristmill?"
                )
            self._unapplied.append((_REPLAYED[name], tuple(args)))
            self._last_seq = seq
        self._apply(con)
        if self._apply_error is not None:
            raise self._apply_error
        self.journal.clear()

    def _journaled(self, con: duckdb.DuckDBPyConnection, batch: list[Op]) -> bool:
        """Acknowledge `batch` from the journal if it is all plain writes; False when it
        must go through DuckDB (then it has not been touched)."""
        if self.journal is None or not all(op.run in JOURNALED for op in batch):
            return False
        new_runs = [op.args[0][0] for op in batch if op.run is Txn.insert_run]
        if new_runs and not self._new_runs_unique(con, new_runs):
            return False  # DuckDB refuses the duplicate, and tells its caller
        try:
            self._last_seq = self.journal.append([(JOURNALED[op.run], op.args) for op in batch])
        except ValueError:  # a value marshal cannot carry: DuckDB will say
            return False
        self._unapplied.extend((op.run, op.args) for op in batch)
        self._unapplied_runs.update(new_runs)
        self.commits += 1
        _deliver(batch, [DONE] * len(batch))
        if len(self._unapplied) >= APPLY_AT:
            self._apply_behind(con)
        return True

    def _new_runs_unique(self, con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> bool:
        """Whether no run has one of these ids yet (create_run refuses an existing id)."""
        if (
            len(set(run_ids)) < len(run_ids)
            or not self._unapplied_runs.isdisjoint(run_ids)
            or not self._behind_runs.isdisjoint(run_ids)
        ):
            return False
        sql = "SELECT count(*) FROM runs WHERE id IN (SELECT unnest(?::VARCHAR[]))"
        row = con.execute(sql, [run_ids]).fetchone()
        return row is not None and row[0] == 0

    def _apply(self, con: duckdb.DuckDBPyConnection) -> None:
        """Put the journaled writes in DuckDB now, in one transaction with their last
        seq (after those handed to the other thread)."""
        self._join_behind()
        if not self._unapplied:
            return
        error = self._commit(con, self._unapplied, self._last_seq)
        if error is not None:
            self._apply_error = error
            print(f"gristmill: {error}", file=sys.stderr)
            return
        self.commits += 1
        self._unapplied.clear()
        self._unapplied_runs.clear()
        self._apply_error = None
        if self.journal is not None:
            self.journal.clear()

    def _apply_behind(self, con: duckdb.DuckDBPyConnection) -> None:
        """Hand the journaled writes to a thread that puts them in DuckDB, while this one
        goes on acknowledging: the journal rotates, so new writes go to its other segment
        and the old one is emptied once its writes are committed. Applying 4,096 writes
        takes tens of ms, and callers waiting for their acknowledgement meanwhile left
        half of the store's capacity unused. One such thread at a time; after a failure,
        the writes are applied here, as `_apply` does."""
        if self._behind is not None:
            if self._behind.is_alive():
                return  # the next batch tries again
            self._join_behind()
        assert self.journal is not None
        if self._apply_error is not None or not self.journal.can_rotate():
            self._apply(con)
            return
        entries, self._unapplied = self._unapplied, []
        self._behind_entries = entries
        self._behind_runs, self._unapplied_runs = self._unapplied_runs, set()
        segment = self.journal.rotate()
        if self._cursor is None:
            self._cursor = con.cursor()  # a connection of its own, to the same database
        self._behind = threading.Thread(
            target=self._commit_behind,
            args=(self._cursor, entries, self._last_seq, segment),
            name="gristmill-store-apply",
            daemon=True,
        )
        self._behind.start()

    def _commit_behind(
        self,
        con: duckdb.DuckDBPyConnection,
        entries: list[tuple[Callable[..., Any], tuple[Any, ...]]],
        seq: int,
        segment: int,
    ) -> None:
        """The handed-over writes' thread: commit them, then empty their segment."""
        try:
            error = self._commit(con, entries, seq)
            if error is None and self.journal is not None:
                self.journal.clear_segment(segment)
        except BaseException as exc:  # the writer thread reports it (`_join_behind`)
            error = StoreError(f"the run store {self.path} could not apply its journal: {exc}")
        self._behind_error = error

    def _join_behind(self) -> None:
        """Wait for the handed-over writes; if they failed, they are this thread's again
        (first, as they came first), and their segment stays as it is until they are in."""
        thread, self._behind = self._behind, None
        if thread is None:
            return
        thread.join()
        if self._behind_error is None:
            self.commits += 1
        else:
            self._unapplied[:0] = self._behind_entries
            self._unapplied_runs |= self._behind_runs
            self._apply_error = self._behind_error
        self._behind_entries, self._behind_runs, self._behind_error = [], set(), None

    def _commit(
        self,
        con: duckdb.DuckDBPyConnection,
        entries: list[tuple[Callable[..., Any], tuple[Any, ...]]],
        seq: int,
    ) -> StoreError | None:
        """Put `entries` in DuckDB with `seq` as the last applied, in one transaction;
        the error if that failed even carefully (nothing of it is in then)."""
        error: Exception | None = None
        for careful in (False, True):  # a blind insert that met a row: again, carefully
            txn = Txn(con, self._known_attempts, careful=careful)
            try:
                con.execute("BEGIN TRANSACTION")
                for run, args in entries:
                    run(txn, *args)
                txn.flush()
                con.execute("UPDATE journal_applied SET seq = ?", [seq])
                con.execute("COMMIT")
            except Exception as exc:
                rollback(con)
                error = exc
                continue
            return None
        assert self.journal is not None
        return StoreError(
            f"the run store {self.path} could not take the writes kept in its journal "
            f"{self.journal.path} ({error}); they are safe there and are tried again"
        )

    # ------------------------------------------------------------ batches

    def _next_batch(self) -> list[Op | None]:
        """Wait for the next operations; [] when journaled writes are due for DuckDB."""
        if self._unapplied:
            try:
                return [self.queue.get(timeout=APPLY_WHEN_QUIET_S)]
            except queue.Empty:
                return []
        return [self.queue.get()]

    def _serve_batches(self, con: duckdb.DuckDBPyConnection) -> None:
        crowded = False
        while True:
            ops = self._next_batch()
            if not ops:
                self._apply(con)
                continue
            if crowded and self.commit_interval_s > 0:
                time.sleep(self.commit_interval_s)  # let the crowd join this commit
            with contextlib.suppress(queue.Empty):
                while True:
                    ops.append(self.queue.get_nowait())
            batch = [op for op in ops if op is not None]
            closing = len(batch) < len(ops)  # close(): everything queued before it is done
            crowded = False
            if batch and not self._journaled(con, batch):
                crowded = len(batch) > 1
                self._in_duckdb(con, batch)
            if closing:
                self._apply(con)
                return

    def _in_duckdb(self, con: duckdb.DuckDBPyConnection, batch: list[Op]) -> None:
        self._apply(con)  # what the journal acknowledged comes first
        if self._apply_error is not None:
            _deliver(batch, [(self._apply_error, None)] * len(batch))
            return
        writes = [op for op in batch if not op.read_only]
        if writes:
            _deliver(writes, self._together(con, writes))
        for op in batch:  # user SQL, once the batch is durable: it sees committed data
            if op.read_only:
                _deliver([op], [self._alone(con, op)])

    def _together(self, con: duckdb.DuckDBPyConnection, ops: list[Op]) -> list[Outcome]:
        """Run `ops` in one transaction; if that fails, each in a transaction of its own."""
        if len(ops) == 1:
            first = self._alone(con, ops[0], careful=False)
            if first[0] is None or not isinstance(first[0].__cause__, duckdb.Error):
                return [first]
            return [self._alone(con, ops[0])]  # perhaps a blind insert met a row: carefully
        txn = Txn(con, self._known_attempts)
        try:
            con.execute("BEGIN TRANSACTION")
            results = [op.run(txn, *op.args) for op in ops]
            txn.flush()
            con.execute("COMMIT")
        except Exception:
            rollback(con)
            return [self._alone(con, op) for op in ops]
        self.commits += 1
        return [DONE if result is None else (None, result) for result in results]

    def _alone(self, con: duckdb.DuckDBPyConnection, op: Op, *, careful: bool = True) -> Outcome:
        txn = Txn(con, self._known_attempts, careful=careful)
        try:
            con.execute("BEGIN TRANSACTION READ ONLY" if op.read_only else "BEGIN TRANSACTION")
            result = op.run(txn, *op.args)
            txn.flush()
            con.execute("ROLLBACK" if op.read_only else "COMMIT")
        except Exception as exc:
            rollback(con)
            if not isinstance(exc, duckdb.Error):
                return exc, None
            error = StoreError(f"{op.what}: {exc}")
            error.__cause__ = exc
            return error, None
        if not op.read_only:
            self.commits += 1
        return None, result


def start(
    writer: Writer, loop: asyncio.AbstractEventLoop
) -> tuple[threading.Thread, asyncio.Future[None]]:
    """Start `writer`'s thread; the future is done once the store is open (or failed)."""
    ready: asyncio.Future[None] = loop.create_future()
    # A daemon thread: every acknowledged write is durable already, so a process that
    # exits without close() loses nothing but work DuckDB and the journal redo.
    thread = threading.Thread(
        target=writer.serve, args=(loop, ready), name="gristmill-store", daemon=True
    )
    thread.start()
    return thread, ready


def _deliver(ops: list[Op], outcomes: list[Outcome]) -> None:
    """Resolve futures on their loops: one wake-up per loop per batch, not per call."""
    if not ops:
        return
    loop = ops[0].get_loop()
    if all(op.get_loop() is loop for op in ops):  # the usual case: one event loop calls
        _post(loop, ops, outcomes)
        return
    by_loop: dict[asyncio.AbstractEventLoop, tuple[list[asyncio.Future[Any]], list[Outcome]]]
    by_loop = {}
    for op, outcome in zip(ops, outcomes, strict=True):
        futures, settled = by_loop.setdefault(op.get_loop(), ([], []))
        futures.append(op)
        settled.append(outcome)
    for each_loop, (futures, settled) in by_loop.items():
        _post(each_loop, futures, settled)


def _post(
    loop: asyncio.AbstractEventLoop,
    futures: Sequence[asyncio.Future[Any]],
    outcomes: Sequence[Outcome],
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
        loop.call_soon_threadsafe(_settle, futures, outcomes)


def _settle(
    futures: Sequence[asyncio.Future[Any]], outcomes: Sequence[Outcome], start: int = 0
) -> None:
    """Resolve the futures from `start` on, `SETTLE_SLICE` per loop turn: each one
    resolved queues its waiter's wake-up, and those run before the next slice. So a
    batch of thousands doesn't hold the loop for its whole length, nor keep thousands of
    wake-ups alive at once (long enough for the garbage collector to move them all to
    its oldest generation, whose collections then walk them and everything else)."""
    end = min(start + SETTLE_SLICE, len(futures))
    for i in range(start, end):
        future = futures[i]
        if future.done():  # the caller stopped waiting
            continue
        exc, result = outcomes[i]
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    if end < len(futures):
        futures[end].get_loop().call_soon(_settle, futures, outcomes, end)
