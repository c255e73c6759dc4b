"""Opening the run store's DuckDB file: connection settings, schema migrations, checks.

Migrations are plain SQL files in `flows/migrations/NNN_name.sql`, applied in order, each
in one transaction with its record in `schema_migrations`. Used by `duckdb_store.py`.
"""

from __future__ import annotations

import contextlib
import re
import time
from importlib import resources
from pathlib import Path

import duckdb

from flows.duckdb_tables import LOGS, RUNS, STEPS, sql_type
from flows.errors import StoreError

_MIGRATION_FILE = re.compile(r"^(\d+)_(\w+)\.sql$")
_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")
# Fixed at connect: no extension is fetched or loaded, and no table name can resolve to
# a Python object of this process. External access is turned off right after.
_CONNECT_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open, lock down and migrate the file, with errors a person can act on."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), config=dict(_CONNECT_CONFIG))
    except duckdb.IOException as exc:
        if "Could not set lock" not in str(exc):
            raise StoreError(f"cannot open the run store {path}: {exc}") from exc
        holder = _LOCK_HOLDER.search(str(exc))
        pid = f" (pid {holder.group(1)})" if holder else ""
        raise StoreError(
            f"the run store {path} is in use by another Gristmill process{pid}; "
            "stop it or use another --data directory"
        ) from exc
    except (duckdb.Error, OSError) as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}") from exc
    try:
        # Nothing run on this connection, user SQL included, reaches files, the network
        # or extensions, and no SET can turn that back on.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        _migrate(con, path)
        _check_columns(con, path)
    except BaseException as exc:
        con.close()
        if isinstance(exc, duckdb.Error):
            raise StoreError(f"cannot prepare the run store {path}: {exc}") from exc
        raise
    return con


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of the migrations in `flows/migrations/`, in order."""
    found = []
    for entry in resources.files("flows.migrations").iterdir():
        if match := _MIGRATION_FILE.match(entry.name):
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two schema migrations share a version number: {versions}")
    return found


def _migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Apply each migration not recorded in `schema_migrations`, in one transaction with
    its record: a failed one leaves no trace, and applying twice changes nothing."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at DOUBLE NOT NULL)"
    )
    applied = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    known = migrations()
    if newer := applied - {version for version, _, _ in known}:
        raise StoreError(
            f"the run store {path} has schema version {max(newer)}, newer than this "
            "Gristmill knows; upgrade Gristmill or use another --data directory"
        )
    for version, name, sql in known:
        if version in applied:
            continue
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, time.time()]
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            rollback(con)
            raise StoreError(f"schema migration {version}_{name}.sql failed: {exc}") from exc
    if applied != {version for version, _, _ in known}:
        # Schema changes go to the main file now: replaying an ALTER of a table with
        # generated columns from the WAL needs functions that are not loaded at replay
        # (autoloading is off), so a crash right after a migration would lock us out.
        con.execute("CHECKPOINT")


def _check_columns(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Every record field needs a column of the type bulk statements cast to: a field
    added to a record without a migration is caught at open, not at the first write."""
    for table in (RUNS, STEPS, LOGS):
        sql = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?"
        found = dict(con.execute(sql, [table.name]).fetchall())
        if wrong := [f"{f} {sql_type(f)}" for f in table.fields if found.get(f) != sql_type(f)]:
            raise StoreError(
                f"the run store {path}: table {table.name} lacks {', '.join(wrong)}; "
                "add a migration in flows/migrations/"
            )


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # no transaction was open: nothing to undo
        con.execute("ROLLBACK")


# ---------------------------------------------------------------------- results
