from __future__ import annotations

import sqlite3

import pytest

from studio.workspace.db import Database, migrations
from studio.workspace.errors import WorkspaceError


def test_migrations_are_numbered_files_in_order():
    found = migrations()
    assert [v for v, _, _ in found] == sorted({v for v, _, _ in found})
    assert found[0][:2] == (1, "initial")


def test_a_new_database_is_wal_full_sync_and_migrated_once(tmp_path):
    path = tmp_path / "workspace.db"
    db = Database(path)
    assert db.row("PRAGMA journal_mode")[0] == "wal"
    assert db.row("PRAGMA synchronous")[0] == 2  # FULL
    assert db.row("PRAGMA foreign_keys")[0] == 1
    applied = db.rows("SELECT version, name FROM schema_version")
    assert applied == [(v, n) for v, n, _ in migrations()]
    db.close()
    again = Database(path)  # nothing applied twice
    assert again.rows("SELECT version, name FROM schema_version") == applied
    again.close()


def test_a_failed_transaction_leaves_nothing(tmp_path):
    db = Database(tmp_path / "w.db")
    with pytest.raises(RuntimeError), db.transaction() as con:
        con.execute("INSERT INTO groups (name, created_at) VALUES ('ops', 0)")
        raise RuntimeError("boom")
    assert db.rows("SELECT name FROM groups") == []
    with db.transaction() as con, db.transaction() as inner:  # nested: joins the outer one
        assert inner is con
        con.execute("INSERT INTO groups (name, created_at) VALUES ('ops', 0)")
    assert db.rows("SELECT name FROM groups") == [("ops",)]
    db.close()


def test_a_database_from_a_newer_gristmill_is_refused(tmp_path):
    path = tmp_path / "w.db"
    Database(path).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
    con.commit()
    con.close()
    with pytest.raises(WorkspaceError, match="schema version 999, newer than this Gristmill"):
        Database(path)
