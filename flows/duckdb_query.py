"""User SQL over the run history: run one checked query, return JSON-ready rows.

Used by the store's writer thread (`DuckDbStore.query`), on a connection with external
access off and settings locked, inside a READ ONLY transaction.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from typing import Any

import duckdb

from flows.duckdb_tables import quote
from flows.errors import StoreError


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
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
