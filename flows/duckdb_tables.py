"""How run records map onto DuckDB tables, and how a batch of writes becomes statements.

`Table` maps a record type onto its table (one column per field, JSON fields as JSON
text). `Txn` is the writer thread's view of one transaction: pending writes merged per
table, flushed as one statement per table (plain VALUES for a few rows, one JSON
`unnest` statement for many), step attempts updated in place when this store wrote them
before. Used only by `duckdb_store.py`, on its writer thread.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import duckdb

from flows.errors import StoreError
from flows.records import LogRecord, RunRecord, StepRecord

R = TypeVar("R")


# Up to this many rows a plain parameterised statement is cheaper than one bulk statement.
SMALL_BATCH = 8
# Up to this many rows, one multi-row VALUES statement beats the JSON-unnest statement.
VALUES_BATCH = 64
# Attempt keys remembered for the UPDATE path; past this the memory is simply reset.
KNOWN_ATTEMPTS = 100_000
# Built once: json.dumps with options builds an encoder per call. Encoders keep no
# state between calls. NaN and infinity are refused: they are not JSON.
ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def quote(name: str) -> str:
    """An identifier for SQL (`at` is a reserved word in DuckDB)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Table(Generic[R]):
    """How a record type maps onto its table: one column per field, same names."""

    name: str
    record: Callable[..., R]
    fields: tuple[str, ...]
    json_fields: frozenset[str]
    columns: str  # the quoted field names, for SELECT and INSERT lists
    values: Callable[[Any], tuple[Any, ...]]  # record -> field values (attrgetter, in C)

    def row(self, record: R, what: str) -> list[Any]:
        """The record's column values, JSON fields as text. Called by the caller, so a
        value that is not JSON fails that call, not the batch it would have joined."""
        row = list(self.values(record))
        for i, name in enumerate(self.fields):
            if name in self.json_fields:
                row[i] = dumps(row[i], what, name)
        return row

    def column_arrays(self, records: Sequence[R], what: str) -> list[str]:
        """Bulk parameters: each field's values as one JSON array (one encoder call per
        column instead of one per value: the bulk path's main cost)."""
        if not records:
            return []
        columns = zip(*map(self.values, records), strict=True)
        return [dumps_column(list(c), what, f) for c, f in zip(columns, self.fields, strict=True)]

    def load(self, row: Sequence[Any]) -> R:
        return self.record(
            *(
                json.loads(v) if v is not None and f in self.json_fields else v
                for f, v in zip(self.fields, row, strict=True)
            )
        )


def record_table(name: str, record: type[R]) -> Table[R]:
    fields = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
    json_fields = frozenset(fields) & {"args", "result", "error", "detail"}
    columns = ", ".join(quote(f) for f in fields)
    return Table(name, record, fields, json_fields, columns, operator.attrgetter(*fields))


RUNS = record_table("runs", RunRecord)
STEPS = record_table("steps", StepRecord)
LOGS = record_table("logs", LogRecord)
RUN_FIELDS = frozenset(RUNS.fields) - {"id"}


class Txn:
    """The writer's view of one transaction: pending writes merged per table.

    They reach DuckDB as one statement per table when the transaction ends or when an
    operation reads that table (`read`): a DuckDB statement costs about what a commit
    does, so merging is what makes batches cheap.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        known_attempts: set[tuple[str, str, int]],
        *,
        careful: bool = False,
    ) -> None:
        self.con = con
        self.known_attempts = known_attempts
        self.careful = careful  # no blind inserts: this is the retry of a failed batch
        self.blind: set[tuple[str, str, int]] = set()  # first writes, see put_step
        self.new_runs: dict[str, list[Any]] = {}
        self.run_updates: dict[str, dict[str, Any]] = {}
        self.new_steps: dict[tuple[str, str, int], list[Any]] = {}
        self.new_logs: list[list[Any]] = []

    def insert_run(self, row: list[Any]) -> None:
        if row[0] in self.new_runs or row[0] in self.run_updates:
            self.flush("runs")  # keep call order: this insert comes after those writes
        self.new_runs[row[0]] = list(row)  # a copy: later updates merge into it

    def update_run(self, run_id: str, values: dict[str, Any]) -> None:
        if (pending := self.new_runs.get(run_id)) is not None:
            for name, value in values.items():
                pending[RUNS.fields.index(name)] = value
        else:
            self.run_updates.setdefault(run_id, {}).update(values)

    def put_step(self, row: list[Any], *, new: bool = False) -> None:
        key = (row[0], row[1], row[4])
        if key in self.new_steps:
            new = new and key in self.blind  # merged with an earlier write of this batch
        self.new_steps[key] = row  # the last write of an attempt wins
        if new:
            self.blind.add(key)
        else:
            self.blind.discard(key)

    def _updated_step(self, key: tuple[str, str, int], row: list[Any]) -> bool:
        """UPDATE an attempt written before; False when the row is not there after all
        (its batch was rolled back), so it gets inserted."""
        if key not in self.known_attempts or len(self.new_steps) > SMALL_BATCH:
            return False
        # The key columns stay out of SET: DuckDB turns an update of an indexed column
        # into a delete and an insert.
        columns = [i for i, f in enumerate(STEPS.fields) if f not in ("run_id", "key", "attempt")]
        sets = ", ".join(f"{quote(STEPS.fields[i])} = ?" for i in columns)
        where = "run_id = ? AND key = ? AND attempt = ?"
        values = [row[i] for i in columns]
        result = self.con.execute(
            f"UPDATE steps SET {sets} WHERE {where}", [*values, *key]
        ).fetchone()
        return bool(result and result[0])

    def add_logs(self, rows: list[list[Any]]) -> None:
        self.new_logs.extend(rows)

    def read(self, table: str) -> duckdb.DuckDBPyConnection:
        """The connection, once the pending writes to `table` are in."""
        self.flush(table)
        return self.con

    def flush(self, *tables: str) -> None:
        """Write what is pending for `tables` (all of them when none are named)."""
        every = not tables
        if (every or "runs" in tables) and (self.new_runs or self.run_updates):
            self.bulk_rows(RUNS, list(self.new_runs.values()), replace=False)
            self._update_runs()
            self.new_runs, self.run_updates = {}, {}
        if (every or "steps" in tables) and self.new_steps:
            pending = [(k, r) for k, r in self.new_steps.items() if not self._updated_step(k, r)]
            # A first write (the caller's promise, RunStore.record_step) is a plain INSERT,
            # about half the cost of INSERT OR REPLACE; should a row exist after all, the
            # batch fails and is retried call by call, carefully.
            blind = set() if self.careful else self.blind
            self.bulk_rows(STEPS, [r for k, r in pending if k in blind], replace=False)
            self.bulk_rows(STEPS, [r for k, r in pending if k not in blind], replace=True)
            if len(self.known_attempts) > KNOWN_ATTEMPTS:
                self.known_attempts.clear()
            self.known_attempts.update(self.new_steps)
            self.new_steps, self.blind = {}, set()
        if (every or "logs" in tables) and self.new_logs:
            self.bulk_rows(LOGS, self.new_logs, replace=False)
            self.new_logs = []

    def bulk_rows(self, table: Table[Any], rows: list[list[Any]], *, replace: bool) -> None:
        if 0 < len(rows) <= VALUES_BATCH:
            # Up to a few dozen rows: one statement with a VALUES row per record. DuckDB
            # costs ~1 ms per statement executed (executemany runs one per row), while
            # planning the JSON-unnest statement costs several, paid back only by big batches.
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            marks = "(" + ", ".join("?" for _ in table.fields) + ")"
            self.con.execute(
                f"{verb} INTO {table.name} ({table.columns}) VALUES "
                + ", ".join(marks for _ in rows),
                [value for row in rows for value in row],
            )
            return
        if rows:
            columns = [
                json_array(list(c)) if name in table.json_fields else ENCODE(list(c))
                for c, name in zip(zip(*rows, strict=True), table.fields, strict=True)
            ]
            self.bulk(table, columns, replace=replace)

    def bulk(self, table: Table[Any], columns: list[str], *, replace: bool) -> None:
        """Insert with one statement, each column one JSON array parameter. Without
        Arrow, this is the fast way in: Python encodes a column in one call and DuckDB
        parses it faster than it converts list parameters value by value."""
        if columns:
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            sql = f"{verb} INTO {table.name} ({table.columns}) SELECT {unnest(table.fields)}"
            self.con.execute(sql, columns)

    def _update_runs(self) -> None:
        # One UPDATE ... FROM per set of changed fields; a run appears once per set.
        groups: dict[tuple[str, ...], list[tuple[str, dict[str, Any]]]] = {}
        for run_id, values in self.run_updates.items():
            groups.setdefault(tuple(sorted(values)), []).append((run_id, values))
        for names, updates in groups.items():
            sets = ", ".join(f"{quote(n)} = u.{quote(n)}" for n in names)
            if len(updates) <= VALUES_BATCH:  # values are already JSON text where needed
                casts = ", ".join(f"?::{sql_type(n)}" for n in names)
                rows = ", ".join(f"(?::VARCHAR, {casts})" for _ in updates)
                aliases = ", ".join(quote(n) for n in ("id", *names))
                self.con.execute(
                    f"UPDATE runs SET {sets} FROM (VALUES {rows}) AS u({aliases}) "
                    "WHERE runs.id = u.id",
                    [
                        v
                        for run_id, values in updates
                        for v in (run_id, *(values[n] for n in names))
                    ],
                )
                continue
            params = [ENCODE([run_id for run_id, _ in updates])]
            for name in names:
                column = [values[name] for _, values in updates]
                params.append(json_array(column) if name in RUNS.json_fields else ENCODE(column))
            self.con.execute(
                f"UPDATE runs SET {sets} FROM (SELECT {unnest(('id', *names))}) AS u "
                "WHERE runs.id = u.id",
                params,
            )


# The next runnable run, marked running by the same statement. The running runs of each
# concurrency key are counted once (`busy`), not once per candidate.
CLAIM = f"""
UPDATE runs SET status = 'running', worker = ?, heartbeat_at = ?, started_at = coalesce(started_at, ?)
WHERE id = (
    WITH busy AS (
        SELECT concurrency_key, count(*) AS n FROM runs
        WHERE status = 'running' AND concurrency_key IS NOT NULL GROUP BY concurrency_key
    )
    SELECT r.id FROM runs AS r LEFT JOIN busy AS b ON b.concurrency_key = r.concurrency_key
    WHERE (r.status = 'queued' OR (r.status = 'suspended' AND r.wake_at <= ?))
      AND (r.concurrency_key IS NULL OR r.concurrency_limit IS NULL
           OR coalesce(b.n, 0) < r.concurrency_limit)
    ORDER BY r.priority DESC, r.created_at ASC, r.id ASC
    LIMIT 1
)
RETURNING {RUNS.columns}
"""

# Column types the bulk statements cast to; `_check_columns` holds the tables to them.
SQL_TYPES = {
    "attempt": "INTEGER",
    "priority": "INTEGER",
    "concurrency_limit": "INTEGER",
    "progress": "INTEGER",
    "seq": "BIGINT",
    "recovered": "BOOLEAN",
    **dict.fromkeys(("args", "result", "error", "detail"), "JSON"),
}


def sql_type(name: str) -> str:
    default = "DOUBLE" if name == "at" or name.endswith("_at") else "VARCHAR"
    return SQL_TYPES.get(name, default)


def unnest(names: Iterable[str]) -> str:
    """Columns from JSON array parameters. JSON nulls become SQL NULL, and numbers keep
    their digits, so a JSON column reads back exactly what was written."""
    return ", ".join(f"unnest(?::JSON::{sql_type(n)}[]) AS {quote(n)}" for n in names)


def json_array(texts: list[str | None]) -> str:
    return "[" + ",".join("null" if t is None else t for t in texts) + "]"


def dumps_column(values: list[Any], what: str, name: str) -> str:
    try:
        return ENCODE(values)
    except (TypeError, ValueError):
        for value in values:  # name the culprit
            dumps(value, what, name)
        raise


def dumps(value: Any, what: str, name: str) -> str | None:
    """JSON text for a JSON column; None stays SQL NULL."""
    if value is None:
        return None
    try:
        return ENCODE(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"{what}: {name} is not JSON ({exc}); store dicts, lists, strings, finite "
            "numbers, booleans or None"
        ) from exc
