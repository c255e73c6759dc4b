"""The run store on an embedded DuckDB file: one writer thread, group commit, a journal.

DuckDB lets one process write a file, and a statement or a commit costs 1-5 ms here, so
`DuckDbStore` gives its connection to ONE background thread (`duckdb_writer.py`). Every
call, read or write, is queued to that thread and awaited. The thread takes everything
queued and makes it durable at once: plain writes (the engine's step attempts, run
updates and ends, logs) by appending them to a journal file and syncing it, the rest in
one DuckDB transaction. Nothing is acknowledged before it is durable, two thousand
concurrent writes cost a handful of syncs, and journaled writes reach DuckDB in big
transactions, always before anything reads.

Within a transaction, writes are merged per table into single statements: new runs, run
updates (merged per run), step attempts (the last write of an attempt wins) and log
lines each become one `INSERT ... SELECT unnest(...)`. An operation that reads a table
first flushes that table's pending writes, so every operation sees what it would have
seen had the queue run one operation at a time.

User SQL (`query`) passes the whole-AST guard of `flows.sql`, then DuckDB's own parser
(one SELECT), and runs after the batch's commit in a READ ONLY transaction, on a
connection with external access (files, network, extensions) off and settings locked.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar, TypeVarTuple

from flows.duckdb_query import run_query
from flows.duckdb_tables import (
    CLAIM,
    LOGS,
    RUN_FIELDS,
    RUNS,
    STEPS,
    Txn,
    dumps,
)
from flows.duckdb_writer import Op, Writer, finish, insert_new_run, start
from flows.errors import FlowError, StoreError
from flows.records import LogRecord, RunRecord, StepRecord
from kernels.closing import AsyncClosing

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class DuckDbStore(AsyncClosing):
    """`flows.store.RunStore` on one DuckDB file, written by one background thread.

    `async with DuckDbStore(path) as store:` opens (creating the directory, applying
    migrations) and closes; a store object is opened once. Open one per process and
    file (the `Services` object owns it): another process holding the file makes
    opening fail with a `StoreError` that names it. A cancelled await does not take its
    operation back.

    Its operations (all but `finish_run` and `close`) are plain methods: they check and
    encode their arguments, queue the operation and return the future that the writer
    thread resolves (called off the event loop, a coroutine that queues it when
    awaited). Awaiting it is like awaiting a coroutine, but operations queue in
    call order even when gathered, and `gather` over futures makes no Task per call,
    which at thousands of writes a second is most of the caller's cost. A call that is
    refused (a value that is not JSON, a closed store) returns a future holding its
    `StoreError`, so the error still comes at the await.

    `commit_interval_s`: while operations keep coming (the last batch held more than
    one), the writer waits this long after the first of a batch for others to join its
    commit; a lone caller is served at once. `commits` counts committed transactions.
    """

    def __init__(
        self, path: Path, *, commit_interval_s: float = 0.002, journal: bool = True
    ) -> None:
        self.path = Path(path)
        self._writer = Writer(self.path, commit_interval_s=commit_interval_s, journal=journal)
        self._thread: threading.Thread | None = None
        self._used = False

    @property
    def commits(self) -> int:
        """Durable group commits so far (journal syncs and DuckDB transactions); a batch
        of many operations counts once."""
        return self._writer.commits

    @property
    def journaled(self) -> int:
        """Acknowledged writes that are in the journal and not yet in DuckDB (any other
        operation puts them in first)."""
        return self._writer.journaled

    async def __aenter__(self) -> Self:
        if self._used:
            raise StoreError(f"this store object for {self.path} was opened before")
        self._used = True
        thread, ready = start(self._writer, asyncio.get_running_loop())
        try:
            await ready
        except BaseException:  # it failed to open, or our caller gave up waiting
            self._writer.queue.put(None)
            await asyncio.to_thread(thread.join)
            raise
        self._thread = thread
        return self

    async def close(self) -> None:
        """Finish every queued operation, commit, and close the file."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._writer.queue.put(None)
            await asyncio.to_thread(thread.join)

    # ------------------------------------------------------------------ runs

    def create_run(self, run: RunRecord, *, new_id: bool = False) -> Awaitable[None]:
        """Insert a new run (normally `queued`); an existing id is a `StoreError`.

        `new_id`: the caller made `run.id` just now from a random uuid, so no run has it
        and the store need not look (a lookup costs about what the write does)."""
        what = f"create_run {run.id!r}"
        try:
            row = RUNS.row(run, what)
        except StoreError as exc:
            return _settled(exc)
        return self._submit(what, insert_new_run if new_id else Txn.insert_run, row)

    def update_run(self, run_id: str, **fields: Any) -> Awaitable[None]:
        """Change fields of a run (none: nothing to do; an unknown name: `StoreError`)."""
        what = f"update_run {run_id!r}"
        try:
            values = _run_values(what, fields)
        except StoreError as exc:
            return _settled(exc)
        if not values:
            return _settled()
        return self._submit(what, Txn.update_run, run_id, values)

    def get_run(self, run_id: str) -> Awaitable[RunRecord | None]:
        """The run, or None."""
        return self._one_run(f"get_run {run_id!r}", "id = ?", run_id)

    def list_runs(
        self,
        *,
        status: str | None = None,
        path: str | None = None,
        trigger: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Awaitable[list[RunRecord]]:
        """Runs, newest first (ties by id, so pages are stable), filtered by the given
        fields (`path` and `trigger` match a prefix; `since`/`until` bound `created_at`)."""
        where, params = _run_filters(status, path, trigger, kind, since, until)

        def list_(txn: Txn) -> list[RunRecord]:
            sql = (
                f"SELECT {RUNS.columns} FROM runs WHERE {where} "
                "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
            )
            rows = txn.read("runs").execute(sql, [*params, limit, offset]).fetchall()
            return [RUNS.load(row) for row in rows]

        return self._submit("list_runs", list_)

    def count_runs(
        self,
        *,
        status: str | None = None,
        path: str | None = None,
        trigger: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Awaitable[int]:
        """How many runs `list_runs` would page through with these filters."""
        where, params = _run_filters(status, path, trigger, kind, since, until)

        def count(txn: Txn) -> int:
            row = txn.read("runs").execute(f"SELECT count(*) FROM runs WHERE {where}", params)
            return int(row.fetchone()[0])  # type: ignore[index]

        return self._submit("count_runs", count)

    def run_for_key(self, dedupe_key: str) -> Awaitable[RunRecord | None]:
        """The run created with this dedupe key, if any."""

        return self._one_run(f"run_for_key {dedupe_key!r}", "dedupe_key = ?", dedupe_key)

    def _one_run(self, what: str, where: str, value: str) -> Awaitable[RunRecord | None]:
        def one(txn: Txn) -> RunRecord | None:
            sql = f"SELECT {RUNS.columns} FROM runs WHERE {where} LIMIT 1"
            row = txn.read("runs").execute(sql, [value]).fetchone()
            return None if row is None else RUNS.load(row)

        return self._submit(what, one)

    def claim(self, worker: str, now: float) -> Awaitable[RunRecord | None]:
        """Mark and return the next runnable run for `worker`, or None.

        Runnable: `queued`, or `suspended` with `wake_at <= now`. Highest priority first,
        then oldest; a run whose concurrency key already has `concurrency_limit` runs
        `running` is skipped. The claimed run becomes `running` with `worker` set,
        `heartbeat_at = now`, and `started_at = now` unless it started before. Atomic:
        one statement, and the writer thread runs one operation at a time.
        """

        def claim(txn: Txn) -> RunRecord | None:
            row = txn.read("runs").execute(CLAIM, [worker, now, now, now]).fetchone()
            return None if row is None else RUNS.load(row)

        return self._submit(f"claim for {worker!r}", claim)

    def recover(self, now: float) -> Awaitable[list[str]]:
        """Put every `running` run back in the queue (worker cleared); their ids, sorted.

        One process owns the file, so when it opens, any `running` run was left by a
        process that died: call this once after opening, before claiming. `now` matters
        to backends that judge by heartbeat; here every running run is orphaned.
        """

        def recover(txn: Txn) -> list[str]:
            sql = "UPDATE runs SET status = 'queued', worker = NULL WHERE status = 'running' RETURNING id"
            return sorted(row[0] for row in txn.read("runs").execute(sql).fetchall())

        return self._submit("recover", recover)

    # ------------------------------------------------------------------ steps and logs

    def record_step(self, step: StepRecord, *, new: bool = False) -> Awaitable[None]:
        """Insert or replace the attempt (`run_id`, `key`, `attempt`); `new`: its first write."""
        what = f"record_step {step.run_id!r} {step.key!r} attempt {step.attempt}"
        try:
            row = STEPS.row(step, what)
        except StoreError as exc:
            return _settled(exc)
        return self._submit(what, Txn.put_step, row, new)

    async def finish_run(
        self,
        run_id: str,
        steps: Sequence[tuple[StepRecord, bool]],
        *,
        create: RunRecord | None = None,
        **fields: Any,
    ) -> None:
        """Commit step attempts (each with its `new` flag) and the run's fields together;
        with `create`, the run's whole record is inserted instead of updated.

        A coroutine on purpose, queued when it first runs rather than at the call:
        `FlowEngine._finish` gathers it after `execution.settle()`, which queues the run's
        last logs, and pages that follow a run stop reading logs once it has finished.
        Queued at the call, the run's end could commit before those logs."""
        what = f"finish_run {run_id!r}"
        rows = [(STEPS.row(step, what), new) for step, new in steps]
        values = _run_values(what, fields)
        created = None if create is None else RUNS.row(create, what)

        await self._submit(what, finish, run_id, created, rows, values)

    def steps(self, run_id: str) -> Awaitable[list[StepRecord]]:
        """Every attempt of every step of the run, in the order they started."""

        def steps(txn: Txn) -> list[StepRecord]:
            sql = f"SELECT {STEPS.columns} FROM steps WHERE run_id = ? ORDER BY started_at, attempt, key"
            return [STEPS.load(row) for row in txn.read("steps").execute(sql, [run_id]).fetchall()]

        return self._submit(f"steps {run_id!r}", steps)

    def append_logs(self, logs: list[LogRecord]) -> Awaitable[None]:
        """Append log pieces (their `seq` is the caller's)."""
        try:
            rows = [LOGS.row(log, "append_logs") for log in logs]
        except StoreError as exc:
            return _settled(exc)
        if not rows:
            return _settled()
        return self._submit("append_logs", Txn.add_logs, rows)

    def logs(self, run_id: str, offset: int = 0) -> Awaitable[list[LogRecord]]:
        """Log pieces of a run with `seq >= offset`, in order."""

        def logs(txn: Txn) -> list[LogRecord]:
            sql = f"SELECT {LOGS.columns} FROM logs WHERE run_id = ? AND seq >= ? ORDER BY seq"
            rows = txn.read("logs").execute(sql, [run_id, offset]).fetchall()
            return [LOGS.load(row) for row in rows]

        return self._submit(f"logs {run_id!r}", logs)

    def write_many(self, runs: list[RunRecord], steps: list[StepRecord]) -> Awaitable[None]:
        """Insert or replace many runs and step attempts in one transaction (imports,
        benchmarks). Unlike `create_run`, an existing run id is overwritten."""
        try:
            run_columns = RUNS.column_arrays(runs, "write_many")
            step_columns = STEPS.column_arrays(steps, "write_many")
        except StoreError as exc:
            return _settled(exc)

        def write(txn: Txn) -> None:
            txn.flush("runs", "steps")
            txn.bulk(RUNS, run_columns, replace=True)
            txn.bulk(STEPS, step_columns, replace=True)

        return self._submit(f"write_many ({len(runs)} runs, {len(steps)} steps)", write)

    # ------------------------------------------------------------------ tokens and cache

    def use_token(self, token_id: str, now: float) -> Awaitable[bool]:
        """Mark a single-use token used; False when it was used before."""

        def use(txn: Txn) -> bool:
            sql = "INSERT INTO tokens_used VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1"
            return txn.con.execute(sql, [token_id, now]).fetchone() is not None

        return self._submit("use_token", use)

    def cache_get(self, key: str, now: float) -> Awaitable[tuple[bool, Any]]:
        """(True, value) for a cached result with `expires_at > now`, else (False, None)."""

        def get(txn: Txn) -> tuple[bool, Any]:
            sql = "SELECT value FROM step_cache WHERE key = ? AND expires_at > ?"
            row = txn.con.execute(sql, [key, now]).fetchone()
            return (False, None) if row is None else (True, json.loads(row[0]))

        return self._submit(f"cache_get {key!r}", get)

    def cache_put(self, key: str, value: Any, expires_at: float) -> Awaitable[None]:
        """Cache a step result until `expires_at`, replacing any entry for `key`."""
        what = f"cache_put {key!r}"
        try:
            text = "null" if value is None else dumps(value, what, "value")  # None: a hit too
        except StoreError as exc:
            return _settled(exc)

        def put(txn: Txn) -> None:
            sql = "INSERT OR REPLACE INTO step_cache VALUES (?, ?, ?)"
            txn.con.execute(sql, [key, text, expires_at])

        return self._submit(what, put)

    # ------------------------------------------------------------------ user SQL

    def query(self, sql: str) -> Awaitable[tuple[list[str], list[tuple[Any, ...]]]]:
        """Run one read-only user query (SELECT, WITH ... SELECT, VALUES) over the tables.

        Refused SQL and DuckDB's errors raise `StoreError` with the reason. Values are
        JSON-friendly: JSON columns parsed, times as ISO text, NaN as None. Besides the
        record fields there are UTC TIMESTAMP columns (`runs.created`, `started`,
        `finished`; `steps.started`, `finished`; `logs.logged`) and `duration_ms`.
        """
        from flows.sql import check_sql  # sqlglot is loaded only when someone asks

        try:
            check_sql(sql, mode="read")
        except FlowError as exc:  # its SqlError: the store's callers catch StoreError
            error = StoreError(f"query: {exc}")
            error.__cause__ = exc
            return _settled(error)
        return self._submit("query", lambda txn: run_query(txn.con, sql), read_only=True)

    # ------------------------------------------------------------------ the writer thread

    def _submit(
        self,
        what: str,
        run: Callable[[Txn, *Ts], T],
        *args: *Ts,
        read_only: bool = False,
    ) -> Awaitable[T]:
        """Queue `run(txn, *args)` for the writer thread; the future resolves once its
        batch commits. A function and its arguments rather than a closure: an operation
        waits in the queue with thousands of others, and every object it keeps alive
        there is one more for each full garbage collection to walk.

        Called off the event loop (a thread that hands the awaitable to a loop), there
        is no loop for a future yet: the operation is queued when it is awaited."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._submit_when_awaited(what, run, *args, read_only=read_only)
        op = Op(loop=loop)
        op.what = what
        op.run = run
        op.args = args
        op.read_only = read_only
        if self._thread is None or not self._writer.open:
            op.set_exception(StoreError(f"the run store {self.path} is not open: use `async with`"))
        else:
            self._writer.queue.put(op)
        return op

    async def _submit_when_awaited(
        self, what: str, run: Callable[[Txn, *Ts], T], *args: *Ts, read_only: bool
    ) -> T:
        return await self._submit(what, run, *args, read_only=read_only)


# ---------------------------------------------------------------------- opening


def _run_values(what: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Changed run fields as column values (JSON fields as text); an unknown name is a
    `StoreError` naming the fields a run has."""
    if unknown := sorted(set(fields) - RUN_FIELDS):
        raise StoreError(
            f"{what}: a run has no field {', '.join(unknown)}; "
            f"its fields are {', '.join(RUNS.fields[1:])}"
        )
    return {f: dumps(v, what, f) if f in RUNS.json_fields else v for f, v in fields.items()}


def _run_filters(
    status: str | None,
    path: str | None,
    trigger: str | None,
    kind: str | None,
    since: float | None,
    until: float | None,
) -> tuple[str, list[Any]]:
    """A WHERE clause and its parameters; values are always bound, never formatted in."""
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    for column, value in (("status", status), ("kind", kind)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    for column, value in (("path", path), ('"trigger"', trigger)):
        if value:
            clauses.append(f"starts_with({column}, ?)")
            params.append(value)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("created_at < ?")
        params.append(until)
    return " AND ".join(clauses), params


def _settled(exc: BaseException | None = None) -> Awaitable[Any]:
    """The outcome of a call that queues nothing: it raises `exc` when awaited (a call
    refused before it was queued), or gives None (a write with nothing to write)."""
    try:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    except RuntimeError:  # off the loop, as in `_submit`
        return _raise(exc)
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
    return future


async def _raise(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc
