"""The workspace's SQLite file: one connection, WAL, plain-SQL migrations, transactions.

SQLite point operations take microseconds, so callers on the event loop use this
synchronously. One lock serialises the connection: tornado handlers and worker
threads may share the one `Workspace` object.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from studio.workspace.errors import WorkspaceError

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
Params = Sequence[Any]


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of `studio/workspace/migrations/NNN_name.sql`, in order."""
    folder = resources.files("studio.workspace").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if match := _MIGRATION_FILE.match(entry.name):
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise WorkspaceError(f"two workspace migrations share a version number: {versions}")
    return found


class Database:
    """The connection to `workspace.db`; `transaction()` for writes, `rows()`/`row()` for reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is
            # exactly the `with transaction()` block and nothing is left open implicitly.
            self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise WorkspaceError(f"cannot open the workspace database {path}: {exc}") from exc
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._con.close()
            raise

    def _configure(self) -> None:
        con = self._con
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise WorkspaceError(
                f"the workspace database {self.path} cannot use WAL journaling (got {mode!r}); "
                "put the data directory on a local file system"
            )
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are zeroed on disk: a variable that was plain text before it was
        # made secret leaves no copy of its old value in free pages.
        con.execute("PRAGMA secure_delete=ON")
        con.execute("PRAGMA busy_timeout=5000")

    def _migrate(self) -> None:
        """Apply each migration not yet in `schema_version`, each in one transaction with
        its record: a failed one leaves no trace, and applying twice changes nothing."""
        with self.transaction() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        applied = {v for (v,) in self.rows("SELECT version FROM schema_version")}
        known = migrations()
        if newer := applied - {version for version, _, _ in known}:
            raise WorkspaceError(
                f"the workspace database {self.path} has schema version {max(newer)}, newer "
                "than this Gristmill knows; upgrade Gristmill or use another --data directory"
            )
        for version, name, sql in known:
            if version in applied:
                continue
            try:
                with self.transaction() as con:
                    # executescript would COMMIT first; run the statements one by one instead.
                    for statement in _statements(sql):
                        con.execute(statement)
                    con.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, time.time())
                    )
            except sqlite3.Error as exc:
                raise WorkspaceError(
                    f"workspace migration {version:03d}_{name}.sql failed: {exc}"
                ) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). Nested blocks join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._con
                finally:
                    self._depth -= 1
                return
            self._con.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._con
            except BaseException:
                self._depth = 0
                with contextlib.suppress(sqlite3.Error):
                    self._con.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self._con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._con.execute("ROLLBACK")
                raise

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def row(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        with self._lock:
            found: tuple[Any, ...] | None = self._con.execute(sql, params).fetchone()
            return found

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _statements(sql: str) -> Iterator[str]:
    """The statements of a migration file, split where SQLite says a statement is complete."""
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        raise WorkspaceError(
            f"a workspace migration ends with an incomplete statement: {pending!r}"
        )
