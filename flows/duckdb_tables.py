"""How run records map onto DuckDB tables, and how a batch of writes becomes statements.

`Table` maps a record type onto its table (one column per field, JSON fields as JSON
text). `Txn` is the writer thread's view of one transaction: pending writes merged per
table, flushed as one statement per table (plain VALUES for a few rows, one `unnest`
statement of column arrays for many), step attempts updated in place when this store
wrote them before. Used by `duckdb_store.py`: `Table.row` by its callers, `Txn` on its
writer thread.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
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
# NaN and infinity are refused: they are not JSON. `JSONEncoder.encode` builds a new C
# encoder on every call (over half its cost for a small dict), so the C encoder is built
# once, without the circular-reference check: that check needs a fresh dict per call, and
# this encoder is used by the caller and the writer thread at once. A circular value makes
# it recurse to the limit instead; it is then encoded again by the checking encoder, so
# its error is the same as json.dumps's.
_CHECKED = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_FAST = (
    None
    if c_make_encoder is None  # no C accelerator (not CPython): the plain encoder
    else c_make_encoder(
        None,  # markers: no circular check
        _CHECKED.default,  # refuses what is not JSON, with json's message
        encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
)


def encode_json(value: Any) -> str:
    """Compact, ASCII-only JSON text, as `json.dumps(value, allow_nan=False,
    separators=(",", ":"))` writes it."""
    if _FAST is None:
        return _CHECKED.encode(value)
    try:
        return "".join(_FAST(value, 0))
    except RecursionError:
        return _CHECKED.encode(value)  # circular: "Circular reference detected"


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
    json_columns: tuple[tuple[int, str], ...]  # (index, name) of each JSON field

    def row(self, record: R, what: str) -> tuple[Any, ...]:
        """The record's column values, JSON fields as text. Called by the caller, so a
        value that is not JSON fails that call, not the batch it would have joined.

        A tuple: rows wait in the queue by the thousand, and a tuple of plain values is
        dropped from the garbage collector's tracking, so they don't make each full
        collection longer."""
        row = list(self.values(record))
        for i, name in self.json_columns:
            if (value := row[i]) is not None:
                row[i] = dumps(value, what, name)
        return tuple(row)

    def column_arrays(self, records: Sequence[R], what: str) -> list[Any]:
        """Bulk parameters (see `unnest`): each field's values as one JSON array (one
        encoder call per column instead of one per value: the bulk path's main cost), or
        as a list of floats."""
        if not records:
            return []
        columns = transpose(list(map(self.values, records)), len(self.fields))
        return [
            c if sql_type(f) == "DOUBLE" else dumps_column(c, what, f)
            for c, f in zip(columns, self.fields, strict=True)
        ]

    def load(self, row: Sequence[Any]) -> R:
        return self.record(
            *(
                json.loads(v) if v is not None and f in self.json_fields else v
                for f, v in zip(self.fields, row, strict=True)
            )
        )


JSON_FIELDS = frozenset({"args", "result", "error", "detail"})  # stored as JSON text


def record_table(name: str, record: type[R]) -> Table[R]:
    fields = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
    json_fields = frozenset(fields) & JSON_FIELDS
    columns = ", ".join(quote(f) for f in fields)
    json_columns = tuple((i, f) for i, f in enumerate(fields) if f in json_fields)
    values = operator.attrgetter(*fields)
    return Table(name, record, fields, json_fields, columns, values, json_columns)


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
        self.new_steps: dict[tuple[str, str, int], Sequence[Any]] = {}
        self.new_logs: list[Sequence[Any]] = []

    def insert_run(self, row: Sequence[Any]) -> None:
        if row[0] in self.new_runs or row[0] in self.run_updates:
            self.flush("runs")  # keep call order: this insert comes after those writes
        self.new_runs[row[0]] = list(row)  # a copy: later updates merge into it

    def update_run(self, run_id: str, values: dict[str, Any]) -> None:
        if (pending := self.new_runs.get(run_id)) is not None:
            for name, value in values.items():
                pending[RUNS.fields.index(name)] = value
        else:
            self.run_updates.setdefault(run_id, {}).update(values)

    def put_step(self, row: Sequence[Any], new: bool = False) -> None:
        key = (row[0], row[1], row[4])
        if key in self.new_steps:
            new = new and key in self.blind  # merged with an earlier write of this batch
        self.new_steps[key] = row  # the last write of an attempt wins
        if new:
            self.blind.add(key)
        elif self.blind:
            self.blind.discard(key)

    def _updated_step(self, key: tuple[str, str, int], row: Sequence[Any]) -> bool:
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

    def add_logs(self, rows: Sequence[Sequence[Any]]) -> None:
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
            pending = self.new_steps
            if len(pending) <= SMALL_BATCH:  # else no attempt is updated in place
                pending = {k: r for k, r in pending.items() if not self._updated_step(k, r)}
            # A first write (the caller's promise, RunStore.record_step) is a plain INSERT,
            # about half the cost of INSERT OR REPLACE; should a row exist after all, the
            # batch fails and is retried call by call, carefully.
            blind = set() if self.careful else self.blind
            if blind:
                self.bulk_rows(STEPS, [r for k, r in pending.items() if k in blind], replace=False)
                replaced = [r for k, r in pending.items() if k not in blind]
            else:  # the usual big batch: no per-row Python
                replaced = list(pending.values())
            self.bulk_rows(STEPS, replaced, replace=True)
            if len(self.known_attempts) > KNOWN_ATTEMPTS:
                self.known_attempts.clear()
            self.known_attempts.update(self.new_steps)
            self.new_steps, self.blind = {}, set()
        if (every or "logs" in tables) and self.new_logs:
            self.bulk_rows(LOGS, self.new_logs, replace=False)
            self.new_logs = []

    def bulk_rows(self, table: Table[Any], rows: Sequence[Sequence[Any]], *, replace: bool) -> None:
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
                column_param(name, c)
                for c, name in zip(transpose(rows, len(table.fields)), table.fields, strict=True)
            ]
            self.bulk(table, columns, replace=replace)

    def bulk(self, table: Table[Any], columns: list[Any], *, replace: bool) -> None:
        """Insert with one statement, each column one array parameter (see `unnest`)."""
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
            params = [encode_json([run_id for run_id, _ in updates])]
            for name in names:
                column = [values[name] for _, values in updates]
                params.append(column_param(name, column))
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
    """Columns from array parameters, one per column (`column_param` makes them).

    Without Arrow, this is the fast way in: Python encodes a column as JSON in one call,
    and DuckDB parses it faster than it converts a list parameter value by value. JSON
    nulls become SQL NULL, and numbers keep their digits, so a JSON column reads back
    exactly what was written. DOUBLE columns are the exception: Python writes a float's
    JSON (its repr) slowly, and DuckDB takes a list of floats as fast as it parses text."""
    return ", ".join(
        f"unnest(?::DOUBLE[]) AS {quote(n)}"
        if sql_type(n) == "DOUBLE"
        else f"unnest(?::JSON::{sql_type(n)}[]) AS {quote(n)}"
        for n in names
    )


def column_param(name: str, values: Iterable[Any]) -> Any:
    """One column's parameter for `unnest`, from column values as `Table.row` makes them
    (JSON fields as JSON text already)."""
    if sql_type(name) == "DOUBLE":
        return list(values)
    if name in JSON_FIELDS:
        return json_array(values)
    return encode_json(values)


def transpose(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """The columns of `rows`, one C-level pass each. Not `zip(*rows)`: that makes an
    iterator per row, tens of thousands of objects for the garbage collector to count
    and walk in a big batch (dozens of collections, each walking the whole young heap)."""
    return [list(map(operator.itemgetter(i), rows)) for i in range(width)]


def json_array(texts: Iterable[str | None]) -> str:
    return "[" + ",".join("null" if t is None else t for t in texts) + "]"


def dumps_column(values: list[Any], what: str, name: str) -> str:
    try:
        return encode_json(values)
    except (TypeError, ValueError):
        for value in values:  # name the culprit
            dumps(value, what, name)
        raise


def dumps(value: Any, what: str, name: str) -> str | None:
    """JSON text for a JSON column; None stays SQL NULL."""
    if value is None:
        return None
    try:
        return encode_json(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"{what}: {name} is not JSON ({exc}); store dicts, lists, strings, finite "
            "numbers, booleans or None"
        ) from exc
