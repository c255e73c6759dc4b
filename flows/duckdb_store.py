"""The run store on an embedded DuckDB file: one writer thread, group commit.

DuckDB lets one process write a file, and a statement or a commit costs 1-5 ms here, so
`DuckDbStore` gives its connection to ONE background thread. Every call, read or write,
is queued to that thread and awaited. The thread takes everything queued, runs it in one
transaction, commits, and only then resolves the futures: nothing is acknowledged
before it is durable, and two thousand concurrent writes cost a handful of commits.

Within a batch, writes are merged per table into single statements: new runs, run
updates (merged per run), step attempts (the last write of an attempt wins) and log
lines each become one `INSERT ... SELECT unnest(...)`. An operation that reads a table
first flushes that table's pending writes, so every operation sees what it would have
seen had the queue run one operation at a time.

A batch that fails (a duplicate run id, a value DuckDB refuses) is rolled back and its
operations retried one transaction each: the bad one fails alone with a `StoreError`,
the others commit, and the thread keeps serving.

User SQL (`query`) passes the whole-AST guard of `flows.sql`, then DuckDB's own parser
(one SELECT), and runs after the batch's commit in a READ ONLY transaction, on a
connection with external access (files, network, extensions) off and settings locked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import decimal
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import duckdb

from flows.duckdb_schema import connect, rollback
from flows.duckdb_tables import (
    CLAIM,
    LOGS,
    RUN_FIELDS,
    RUNS,
    STEPS,
    Txn,
    dumps,
    quote,
)
from flows.errors import FlowError, StoreError
from flows.records import LogRecord, RunRecord, StepRecord

T = TypeVar("T")


class DuckDbStore:
    """`flows.store.RunStore` on one DuckDB file, written by one background thread.

    `async with DuckDbStore(path) as store:` opens (creating the directory, applying
    migrations) and closes; a store object is opened once. Open one per process and
    file (the `Services` object owns it): another process holding the file makes
    opening fail with a `StoreError` that names it. A cancelled await does not take its
    operation back.

    `commit_interval_s`: while operations keep coming (the last batch held more than
    one), the writer waits this long after the first of a batch for others to join its
    commit; a lone caller is served at once. `commits` counts committed transactions.
    """

    def __init__(self, path: Path, *, commit_interval_s: float = 0.002) -> None:
        self.path = Path(path)
        self.commit_interval_s = commit_interval_s
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()  # None: close
        self._thread: threading.Thread | None = None
        self._used = False
        self._commits = 0
        # Step attempts this store has written: their next write is a cheap UPDATE
        # (about 2.5 ms) rather than an INSERT OR REPLACE (about 7 ms) on this machine.
        self._known_attempts: set[tuple[str, str, int]] = set()

    @property
    def commits(self) -> int:
        """Transactions committed so far; a batch of many operations counts once."""
        return self._commits

    async def __aenter__(self) -> Self:
        if self._used:
            raise StoreError(f"this store object for {self.path} was opened before")
        self._used = True
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        # A daemon thread: every acknowledged write is committed already, so a process
        # that exits without close() loses nothing but a checkpoint DuckDB redoes.
        thread = threading.Thread(
            target=self._serve, args=(loop, ready), name="gristmill-store", daemon=True
        )
        thread.start()
        try:
            await ready
        except BaseException:  # it failed to open, or our caller gave up waiting
            self._queue.put(None)
            await asyncio.to_thread(thread.join)
            raise
        self._thread = thread
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish every queued operation, commit, and close the file."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(thread.join)

    # ------------------------------------------------------------------ runs

    async def create_run(self, run: RunRecord) -> None:
        """Insert a new run (normally `queued`); an existing id is a `StoreError`."""
        what = f"create_run {run.id!r}"
        row = RUNS.row(run, what)
        await self._submit(what, lambda txn: txn.insert_run(row))

    async def update_run(self, run_id: str, **fields: Any) -> None:
        """Change fields of a run (none: nothing to do; an unknown name: `StoreError`)."""
        what = f"update_run {run_id!r}"
        values = _run_values(what, fields)
        if values:
            await self._submit(what, lambda txn: txn.update_run(run_id, values))

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or None."""
        return await self._one_run(f"get_run {run_id!r}", "id = ?", run_id)

    async def list_runs(
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
    ) -> list[RunRecord]:
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

        return await self._submit("list_runs", list_)

    async def count_runs(
        self,
        *,
        status: str | None = None,
        path: str | None = None,
        trigger: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """How many runs `list_runs` would page through with these filters."""
        where, params = _run_filters(status, path, trigger, kind, since, until)

        def count(txn: Txn) -> int:
            row = txn.read("runs").execute(f"SELECT count(*) FROM runs WHERE {where}", params)
            return int(row.fetchone()[0])  # type: ignore[index]

        return await self._submit("count_runs", count)

    async def run_for_key(self, dedupe_key: str) -> RunRecord | None:
        """The run created with this dedupe key, if any."""

        return await self._one_run(f"run_for_key {dedupe_key!r}", "dedupe_key = ?", dedupe_key)

    async def _one_run(self, what: str, where: str, value: str) -> RunRecord | None:
        def one(txn: Txn) -> RunRecord | None:
            sql = f"SELECT {RUNS.columns} FROM runs WHERE {where} LIMIT 1"
            row = txn.read("runs").execute(sql, [value]).fetchone()
            return None if row is None else RUNS.load(row)

        return await self._submit(what, one)

    async def claim(self, worker: str, now: float) -> RunRecord | None:
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

        return await self._submit(f"claim for {worker!r}", claim)

    async def recover(self, now: float) -> list[str]:
        """Put every `running` run back in the queue (worker cleared); their ids, sorted.

        One process owns the file, so when it opens, any `running` run was left by a
        process that died: call this once after opening, before claiming. `now` matters
        to backends that judge by heartbeat; here every running run is orphaned.
        """

        def recover(txn: Txn) -> list[str]:
            sql = "UPDATE runs SET status = 'queued', worker = NULL WHERE status = 'running' RETURNING id"
            return sorted(row[0] for row in txn.read("runs").execute(sql).fetchall())

        return await self._submit("recover", recover)

    # ------------------------------------------------------------------ steps and logs

    async def record_step(self, step: StepRecord, *, new: bool = False) -> None:
        """Insert or replace the attempt (`run_id`, `key`, `attempt`); `new`: its first write."""
        what = f"record_step {step.run_id!r} {step.key!r} attempt {step.attempt}"
        row = STEPS.row(step, what)
        await self._submit(what, lambda txn: txn.put_step(row, new=new))

    async def finish_run(
        self,
        run_id: str,
        steps: Sequence[tuple[StepRecord, bool]],
        *,
        create: RunRecord | None = None,
        **fields: Any,
    ) -> None:
        """Commit step attempts (each with its `new` flag) and the run's fields together;
        with `create`, the run's whole record is inserted instead of updated."""
        what = f"finish_run {run_id!r}"
        rows = [(STEPS.row(step, what), new) for step, new in steps]
        values = _run_values(what, fields)
        created = None if create is None else RUNS.row(create, what)

        def write(txn: Txn) -> None:
            if created is not None:
                txn.insert_run(created)
            for row, new in rows:
                txn.put_step(row, new=new)
            if values and created is None:
                txn.update_run(run_id, values)

        await self._submit(what, write)

    async def steps(self, run_id: str) -> list[StepRecord]:
        """Every attempt of every step of the run, in the order they started."""

        def steps(txn: Txn) -> list[StepRecord]:
            sql = f"SELECT {STEPS.columns} FROM steps WHERE run_id = ? ORDER BY started_at, attempt, key"
            return [STEPS.load(row) for row in txn.read("steps").execute(sql, [run_id]).fetchall()]

        return await self._submit(f"steps {run_id!r}", steps)

    async def append_logs(self, logs: list[LogRecord]) -> None:
        """Append log pieces (their `seq` is the caller's)."""
        rows = [LOGS.row(log, "append_logs") for log in logs]
        if rows:
            await self._submit("append_logs", lambda txn: txn.add_logs(rows))

    async def logs(self, run_id: str, offset: int = 0) -> list[LogRecord]:
        """Log pieces of a run with `seq >= offset`, in order."""

        def logs(txn: Txn) -> list[LogRecord]:
            sql = f"SELECT {LOGS.columns} FROM logs WHERE run_id = ? AND seq >= ? ORDER BY seq"
            rows = txn.read("logs").execute(sql, [run_id, offset]).fetchall()
            return [LOGS.load(row) for row in rows]

        return await self._submit(f"logs {run_id!r}", logs)

    async def write_many(self, runs: list[RunRecord], steps: list[StepRecord]) -> None:
        """Insert or replace many runs and step attempts in one transaction (imports,
        benchmarks). Unlike `create_run`, an existing run id is overwritten."""
        run_columns = RUNS.column_arrays(runs, "write_many")
        step_columns = STEPS.column_arrays(steps, "write_many")

        def write(txn: Txn) -> None:
            txn.flush("runs", "steps")
            txn.bulk(RUNS, run_columns, replace=True)
            txn.bulk(STEPS, step_columns, replace=True)

        await self._submit(f"write_many ({len(runs)} runs, {len(steps)} steps)", write)

    # ------------------------------------------------------------------ tokens and cache

    async def use_token(self, token_id: str, now: float) -> bool:
        """Mark a single-use token used; False when it was used before."""

        def use(txn: Txn) -> bool:
            sql = "INSERT INTO tokens_used VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1"
            return txn.con.execute(sql, [token_id, now]).fetchone() is not None

        return await self._submit("use_token", use)

    async def cache_get(self, key: str, now: float) -> tuple[bool, Any]:
        """(True, value) for a cached result with `expires_at > now`, else (False, None)."""

        def get(txn: Txn) -> tuple[bool, Any]:
            sql = "SELECT value FROM step_cache WHERE key = ? AND expires_at > ?"
            row = txn.con.execute(sql, [key, now]).fetchone()
            return (False, None) if row is None else (True, json.loads(row[0]))

        return await self._submit(f"cache_get {key!r}", get)

    async def cache_put(self, key: str, value: Any, expires_at: float) -> None:
        """Cache a step result until `expires_at`, replacing any entry for `key`."""
        what = f"cache_put {key!r}"
        text = "null" if value is None else dumps(value, what, "value")  # None is a hit too

        def put(txn: Txn) -> None:
            sql = "INSERT OR REPLACE INTO step_cache VALUES (?, ?, ?)"
            txn.con.execute(sql, [key, text, expires_at])

        await self._submit(what, put)

    # ------------------------------------------------------------------ user SQL

    async def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
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
            raise StoreError(f"query: {exc}") from exc
        return await self._submit("query", lambda txn: _run_query(txn.con, sql), read_only=True)

    # ------------------------------------------------------------------ the writer thread

    async def _submit(self, what: str, run: Callable[[Txn], T], *, read_only: bool = False) -> T:
        if self._thread is None:
            raise StoreError(f"the run store {self.path} is not open: use `async with`")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(what, run, future, loop, read_only))
        return await future

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        """The writer thread: owns the connection from open to close."""
        try:
            con = connect(self.path)
        except BaseException as exc:
            _post(loop, [(ready, exc, None)])
            return
        with con:
            _post(loop, [(ready, None, None)])
            try:
                self._serve_batches(con)
            finally:
                self._thread = None  # refuse new calls, and fail any left in the queue
                left: list[_Op | None] = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        left.append(self._queue.get_nowait())
                ops = [op for op in left if op is not None]
                gone = StoreError(f"the run store {self.path} closed before this ran")
                _deliver(ops, [(gone, None)] * len(ops))

    def _serve_batches(self, con: duckdb.DuckDBPyConnection) -> None:
        crowded = False
        while True:
            ops = [self._queue.get()]
            if crowded and self.commit_interval_s > 0:
                time.sleep(self.commit_interval_s)  # let the crowd join this commit
            with contextlib.suppress(queue.Empty):
                while True:
                    ops.append(self._queue.get_nowait())
            batch = [op for op in ops if op is not None]
            crowded = len(batch) > 1
            writes = [op for op in batch if not op.read_only]
            if writes:
                _deliver(writes, self._together(con, writes))
            for op in batch:  # user SQL, once the batch is durable: it sees committed data
                if op.read_only:
                    _deliver([op], [self._alone(con, op)])
            if len(batch) < len(ops):  # close(): everything queued before it is done
                return

    def _together(
        self, con: duckdb.DuckDBPyConnection, ops: list[_Op]
    ) -> list[tuple[BaseException | None, Any]]:
        """Run `ops` in one transaction; if that fails, each in a transaction of its own."""
        if len(ops) == 1:
            first = self._alone(con, ops[0], careful=False)
            if first[0] is None or not isinstance(first[0].__cause__, duckdb.Error):
                return [first]
            return [self._alone(con, ops[0])]  # perhaps a blind insert met a row: carefully
        txn = Txn(con, self._known_attempts)
        try:
            con.execute("BEGIN TRANSACTION")
            results = [op.run(txn) for op in ops]
            txn.flush()
            con.execute("COMMIT")
        except Exception:
            rollback(con)
            return [self._alone(con, op) for op in ops]
        self._commits += 1
        return [(None, result) for result in results]

    def _alone(
        self, con: duckdb.DuckDBPyConnection, op: _Op, *, careful: bool = True
    ) -> tuple[BaseException | None, Any]:
        txn = Txn(con, self._known_attempts, careful=careful)
        try:
            con.execute("BEGIN TRANSACTION READ ONLY" if op.read_only else "BEGIN TRANSACTION")
            result = op.run(txn)
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
            self._commits += 1
        return None, result


@dataclass(slots=True)
class _Op:
    """One queued call: `run` does its work inside the writer's transaction."""

    what: str  # names the call in error messages: "create_run 'r1'"
    run: Callable[[Txn], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    read_only: bool  # user SQL: alone, READ ONLY, after the batch commits


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


def _deliver(ops: list[_Op], outcomes: list[tuple[BaseException | None, Any]]) -> None:
    """Resolve futures on their loops: one wake-up per loop per batch, not per call."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for op, (exc, result) in zip(ops, outcomes, strict=True):
        by_loop.setdefault(op.loop, []).append((op.future, exc, result))
    for loop, settled in by_loop.items():
        _post(loop, settled)


def _post(
    loop: asyncio.AbstractEventLoop,
    settled: Sequence[tuple[asyncio.Future[Any], BaseException | None, Any]],
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
        loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: Sequence[tuple[asyncio.Future[Any], BaseException | None, Any]]) -> None:
    for future, exc, result in settled:
        if future.done():  # the caller stopped waiting
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    # DuckDB's own parser has the last word on what kind of statement this is; the
    # READ ONLY transaction around it refuses a write that slips through anyway.
    statements = con.extract_statements(sql)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise StoreError("query: only one read-only statement (SELECT, WITH, VALUES)")
    relation = con.sql(sql)
    types = [str(t) for t in relation.types]
    if any("WITH TIME ZONE" in t for t in types):
        # Fetching zoned times would import pytz: send them as ISO text (UTC) or JSON.
        parts = []
        for i, (name, sql_type) in enumerate(zip(relation.columns, types, strict=True)):
            column = f"#{i + 1}"
            if sql_type == "TIMESTAMP WITH TIME ZONE":
                column = f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S.%fZ')"
            elif "WITH TIME ZONE" in sql_type:
                column, types[i] = f"to_json({column})", "JSON"
            parts.append(f"{column} AS {quote(name)}")
        relation = relation.project(", ".join(parts))
    is_json = [t == "JSON" for t in types]
    rows = [
        tuple(
            (None if v is None else json.loads(v)) if j else _plain(v)
            for v, j in zip(row, is_json, strict=True)
        )
        for row in relation.fetchall()
    ]
    return list(relation.columns), rows


def _plain(value: Any) -> Any:
    """A DuckDB value as JSON-ready data."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)  # UUID, and anything DuckDB adds later
