"""Running SQL steps on DuckDB, and reading `.sql` scripts' argument declarations."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb
import pytest
import sqlglot

import flows.sql
from flows.errors import SqlError
from flows.sql import SqlInput, locked_connection, run_sql, sql_arguments, sql_schema
from kernels.errors import ScriptError


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "workspace.duckdb"
    run_sql(
        "CREATE TABLE x (id INTEGER, name VARCHAR); INSERT INTO x VALUES (1, 'a'), (2, 'b')",
        {},
        database=path,
        mode="write",
    )
    return path


# --- parameters -------------------------------------------------------------------


def test_parameters_are_bound_never_formatted(database: Path) -> None:
    evil = "'; DROP TABLE x; --"
    rows = run_sql(
        "SELECT $v AS v, count(*) AS n FROM x WHERE name <> $v", {"v": evil}, database=database
    )
    assert rows == [{"v": evil, "n": 2}]
    run_sql("INSERT INTO x VALUES (3, $v)", {"v": evil}, database=database, mode="write")
    assert run_sql("SELECT name FROM x WHERE id = 3", {}, database=database) == [{"name": evil}]


def test_positional_and_list_parameters() -> None:
    assert run_sql("SELECT $1 + 1 AS n", {"1": 41}) == [{"n": 42}]
    rows = run_sql(
        "SELECT i FROM range(5) AS r(i) WHERE i IN (SELECT unnest($ids))", {"ids": [1, 3]}
    )
    assert rows == [{"i": 1}, {"i": 3}]


def test_a_missing_parameter_is_named() -> None:
    with pytest.raises(SqlError) as caught:
        run_sql("SELECT $min AS a, $max AS b", {"min": 1, "other": 2})
    assert str(caught.value) == (
        "the SQL uses $max but no argument named 'max' was given; add it to the step's args"
    )


def test_unused_arguments_are_ignored() -> None:
    assert run_sql("SELECT 1 AS one", {"unused": 5, "rows": [{"a": 1}]}) == [{"one": 1}]


def test_a_table_argument_is_not_a_parameter() -> None:
    with pytest.raises(SqlError, match=r"is a table: read it with `FROM rows`, not `\$rows`"):
        run_sql("SELECT $rows", {"rows": [{"a": 1}]})


# --- list-of-object arguments are tables ------------------------------------------------


def test_a_list_of_objects_is_a_table_with_inferred_types() -> None:
    rows = [
        {"id": 1, "name": "a", "score": 1.5, "ok": True, "tags": ["x"], "when": "2024-01-02"},
        {"id": 2, "score": 2, "extra": {"k": [1, None]}, "ok": False},
    ]
    types = run_sql(
        "SELECT typeof(id) AS id, typeof(name) AS name, typeof(score) AS score, typeof(ok) AS ok,"
        " typeof(tags) AS tags, typeof(extra) AS extra FROM rows LIMIT 1",
        {"rows": rows},
    )
    assert types == [
        {
            "id": "BIGINT",
            "name": "VARCHAR",
            "score": "DOUBLE",
            "ok": "BOOLEAN",
            "tags": "JSON",
            "extra": "JSON",
        }
    ]
    # Columns: the union of the keys in first-seen order; a missing key is NULL; nested
    # values come back as the same data.
    assert run_sql("SELECT * FROM rows ORDER BY id", {"rows": rows}) == [
        {
            "id": 1,
            "name": "a",
            "score": 1.5,
            "ok": True,
            "tags": ["x"],
            "when": "2024-01-02",
            "extra": None,
        },
        {
            "id": 2,
            "name": None,
            "score": 2.0,
            "ok": False,
            "tags": None,
            "when": None,
            "extra": {"k": [1, None]},
        },
    ]


def test_table_values_stay_data_and_mixed_columns_become_json() -> None:
    rows = [{"s": "'; DROP TABLE rows; --", "m": 1}, {"s": 'say "hi"', "m": "one"}]
    assert run_sql("SELECT s, m, typeof(m) AS t FROM rows", {"rows": rows}) == [
        {"s": "'; DROP TABLE rows; --", "m": 1, "t": "JSON"},
        {"s": 'say "hi"', "m": "one", "t": "JSON"},
    ]


def test_python_dates_in_a_table_keep_their_type() -> None:
    rows = [{"d": dt.date(2024, 1, 2), "ts": dt.datetime(2024, 1, 2, 3, 4, 5)}]
    result = run_sql("SELECT d + 1 AS next, typeof(ts) AS t, ts FROM rows", {"rows": rows})
    assert result == [{"next": "2024-01-03", "t": "TIMESTAMP", "ts": "2024-01-02T03:04:05"}]


def test_a_table_argument_joins_a_database_table(database: Path) -> None:
    rows = [{"id": 1, "v": 10}, {"id": 2, "v": 20}, {"id": 9, "v": 90}]
    result = run_sql(
        "SELECT x.name, rows.v FROM x JOIN rows USING (id) WHERE rows.v > $min ORDER BY v",
        {"rows": rows, "min": 10},
        database=database,
    )
    assert result == [{"name": "b", "v": 20}]


def test_an_empty_list_is_no_table_and_the_error_says_why() -> None:
    with pytest.raises(SqlError, match="argument 'rows' is an empty list"):
        run_sql("SELECT * FROM rows", {"rows": []})


def test_100k_rows_load_as_a_table() -> None:
    rows = [{"id": i, "name": f"n{i}", "v": i * 0.5, "ok": i % 2 == 0} for i in range(100_000)]
    result = run_sql(
        "SELECT count(*) AS n, sum(id) AS s, count(*) FILTER (WHERE ok) AS even FROM rows",
        {"rows": rows},
    )
    assert result == [{"n": 100_000, "s": 4_999_950_000, "even": 50_000}]


# --- results --------------------------------------------------------------------------


def test_results_are_json_friendly() -> None:
    rows = run_sql(
        "SELECT DATE '2024-01-02' AS d, TIMESTAMP '2024-01-02 03:04:05' AS ts,"
        " TIMESTAMPTZ '2024-01-02 03:04:05+02' AS tz, TIME '12:30:00' AS t,"
        " 1.25::DECIMAL(10, 2) AS dec, '00000000-0000-0000-0000-000000000001'::UUID AS u,"
        " 'ab'::BLOB AS b, INTERVAL 90 MINUTE AS i, [1, 2] AS l, {'k': [1.5::DECIMAL(4, 1)]} AS s,"
        " MAP {'a': 1} AS m, '{\"x\": [1]}'::JSON AS j, NULL AS n, 1 AS a, 2 AS a",
        {},
    )
    assert rows == [
        {
            "d": "2024-01-02",
            "ts": "2024-01-02T03:04:05",
            "tz": "2024-01-02T01:04:05.000000Z",
            "t": "12:30:00",
            "dec": 1.25,
            "u": "00000000-0000-0000-0000-000000000001",
            "b": "YWI=",
            "i": 5400.0,
            "l": [1, 2],
            "s": {"k": [1.5]},
            "m": {"a": 1},
            "j": {"x": [1]},
            "n": None,
            "a": 1,
            "a_1": 2,
        }
    ]
    assert isinstance(rows[0]["dec"], float)


def test_a_query_returning_no_rows_is_an_empty_list() -> None:
    assert run_sql("SELECT 1 AS a WHERE false", {}) == []


def test_pivot_returns_its_rows() -> None:
    rows = [
        {"region": "n", "amount": 1},
        {"region": "s", "amount": 2},
        {"region": "n", "amount": 3},
    ]
    assert run_sql("PIVOT rows ON region USING sum(amount)", {"rows": rows}) == [
        {"n": 4.0, "s": 2.0}
    ]


# --- write mode, read mode ---------------------------------------------------------------


def test_write_mode_persists_and_reports_rows_affected(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rows = [{"id": i, "v": i * i} for i in range(5)]
    assert run_sql(
        "CREATE TABLE squares AS SELECT * FROM rows", {"rows": rows}, database=path, mode="write"
    ) == [{"rows_affected": 5}]
    assert run_sql(
        "UPDATE squares SET v = 0 WHERE id < $n", {"n": 2}, database=path, mode="write"
    ) == [{"rows_affected": 2}]
    assert run_sql("DELETE FROM squares WHERE id = 4", {}, database=path, mode="write") == [
        {"rows_affected": 1}
    ]
    assert (
        run_sql("ALTER TABLE squares ADD COLUMN c INTEGER", {}, database=path, mode="write") == []
    )
    assert run_sql(
        "INSERT INTO squares VALUES (7, 49, 1) RETURNING id, v", {}, database=path, mode="write"
    ) == [{"id": 7, "v": 49}]
    # A fresh connection (another run) sees the committed data; the table argument is gone.
    assert run_sql("SELECT id, v FROM squares ORDER BY id", {}, database=path) == [
        {"id": 0, "v": 0},
        {"id": 1, "v": 0},
        {"id": 2, "v": 4},
        {"id": 3, "v": 9},
        {"id": 7, "v": 49},
    ]
    with pytest.raises(SqlError, match="Table with name rows does not exist"):
        run_sql("SELECT * FROM rows", {}, database=path)


def test_a_failing_write_rolls_back_the_whole_step(database: Path) -> None:
    with pytest.raises(SqlError, match="Conversion Error"):
        run_sql(
            "INSERT INTO x VALUES (10, 'kept?'); INSERT INTO x VALUES ('not a number', 'z')",
            {},
            database=database,
            mode="write",
        )
    assert run_sql("SELECT count(*) AS n FROM x", {}, database=database) == [{"n": 2}]


def test_read_mode_cannot_write(database: Path) -> None:
    with pytest.raises(SqlError, match="SQL refused: DELETE needs mode: write"):
        run_sql("DELETE FROM x", {}, database=database)
    # Below the guard, the file itself is opened read-only.
    with locked_connection(database, read_only=True) as con, pytest.raises(duckdb.Error):
        con.execute("DELETE FROM x")
    assert run_sql("SELECT count(*) AS n FROM x", {}, database=database) == [{"n": 2}]


def test_a_read_step_past_the_guard_still_cannot_write(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Suppose the guard had a hole: DuckDB's own parse refuses a non-query in read mode...
    monkeypatch.setattr(flows.sql, "checked_statements", _parse_only)
    with pytest.raises(SqlError, match="DuckDB reads statement 1 as DELETE"):
        run_sql("DELETE FROM x", {}, database=database)
    # ...and with that check gone too, the read step's transaction is rolled back.
    monkeypatch.setattr(flows.sql, "match_duckdb_statements", lambda *args: None)
    assert run_sql("DELETE FROM x", {}, database=database) == [{"rows_affected": 2}]
    monkeypatch.undo()
    assert run_sql("SELECT count(*) AS n FROM x", {}, database=database) == [{"n": 2}]


def _parse_only(sql: str, *, mode: str) -> list[sqlglot.exp.Expr]:
    return [s for s in sqlglot.parse(sql, dialect="duckdb") if s is not None]


def test_parallel_read_and_write_steps_share_one_file(database: Path) -> None:
    failures: list[BaseException] = []

    def step(index: int) -> None:
        try:
            for _ in range(10):
                if index % 2:
                    run_sql(
                        "INSERT INTO x VALUES ($i, 'p')",
                        {"i": index},
                        database=database,
                        mode="write",
                    )
                else:
                    run_sql("SELECT count(*) AS n FROM x", {}, database=database)
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=step, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert run_sql("SELECT count(*) AS n FROM x", {}, database=database) == [{"n": 32}]


def test_a_database_whose_macros_shadow_allowed_functions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prepared-elsewhere.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE MACRO mine(x) AS x + 1")  # not an allowed name: harmless
        assert con.execute("SELECT upper('x')").fetchall() == [("X",)]
    assert run_sql("SELECT upper('x') AS u", {}, database=path) == [{"u": "X"}]
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE MACRO upper(x) AS current_setting('threads')")
        assert con.execute("SELECT upper('x')").fetchall() != [("X",)]  # DuckDB picks the macro
    with pytest.raises(SqlError, match=r"macros named like built-in functions \(upper\)"):
        run_sql("SELECT upper('x') AS u", {}, database=path)


def test_read_mode_on_a_missing_file_reads_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "nothing-yet.duckdb"
    assert run_sql("SELECT 1 AS one", {}, database=path) == [{"one": 1}]
    assert not path.exists()


def test_duckdb_errors_become_sql_errors_without_traceback() -> None:
    with pytest.raises(SqlError) as caught:
        run_sql("SELECT CAST('abc' AS INTEGER) AS n", {})
    assert str(caught.value).startswith("Conversion Error: Could not convert string 'abc'")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- the locked connection ----------------------------------------------------------------


def test_settings_cannot_be_changed_even_past_the_guard() -> None:
    with pytest.raises(SqlError, match="SET is not allowed"):
        run_sql("SET enable_external_access = true", {})
    with locked_connection() as con:
        for statement in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "RESET allowed_directories",
            "SET autoload_known_extensions = true",
        ):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(statement)
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access',"
                " 'lock_configuration', 'autoinstall_known_extensions',"
                " 'autoload_known_extensions', 'allow_community_extensions')"
            ).fetchall()
        )
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_community_extensions": "false",
    }


def test_files_are_out_of_reach_except_allowed_directories(tmp_path: Path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    for folder in (allowed, other):
        folder.mkdir()
        (folder / "data.csv").write_text("a,b\n1,2\n")
    with locked_connection(allowed_directories=[allowed]) as con:
        assert con.execute(f"SELECT a FROM read_csv('{allowed}/data.csv')").fetchall() == [(1,)]
        for sql in (
            f"SELECT * FROM read_csv('{other}/data.csv')",
            f"SELECT * FROM '{other}/data.csv'",
            f"COPY (SELECT 1) TO '{other}/out.csv'",
            f"ATTACH '{other}/x.db' AS x",
            "SELECT * FROM read_text('/etc/passwd')",
        ):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    assert not (other / "out.csv").exists()
    assert not (other / "x.db").exists()


def test_allowed_directories_do_not_open_files_to_steps(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    with pytest.raises(SqlError, match=r"read_csv\(\) reads files"):
        run_sql(
            f"SELECT * FROM read_csv('{tmp_path}/data.csv')", {}, allowed_directories=[tmp_path]
        )


# --- .sql scripts ---------------------------------------------------------------------------

SCRIPT = """\
-- Orders by region since a date.
--
-- $min (int) = 1
-- $ratio (float) = 0.5
-- $region (text)
-- $since (date)
-- $until (timestamp) = '2030-01-01T00:00:00'
-- $flag (bool) = false
-- $label (varchar) = 'it''s'
-- $extra (json) = {"a": [1, 2]}
-- $orders (table)
-- $anything
-- $limit = 10
SELECT * FROM orders WHERE n >= $min AND region = $region AND day >= $since
  AND $undeclared IS NULL LIMIT $limit
-- $not_a_declaration (int): the header ended above
"""


def test_sql_schema_of_declarations() -> None:
    assert sql_schema(SCRIPT, "f/x/orders.sql") == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "description": "Orders by region since a date.",
        "properties": {
            "min": {"type": "integer", "default": 1},
            "ratio": {"type": "number", "default": 0.5},
            "region": {"type": "string"},
            "since": {"type": "string", "format": "date"},
            "until": {"type": "string", "format": "date-time", "default": "2030-01-01T00:00:00"},
            "flag": {"type": "boolean", "default": False},
            "label": {"type": "string", "default": "it's"},
            "extra": {"default": {"a": [1, 2]}},
            "orders": {"type": "array", "items": {"type": "object"}},
            "anything": {},
            "limit": {"type": "integer", "default": 10},
            "undeclared": {},
        },
        "required": ["region", "since", "orders", "anything", "undeclared"],
        "additionalProperties": False,
    }


def test_sql_arguments_keep_order_defaults_and_lines() -> None:
    inputs = sql_arguments(SCRIPT)
    assert inputs[0] == SqlInput("min", "int", 1, has_default=True, line=3)
    assert inputs[2] == SqlInput("region", "text", line=5)
    assert [i.name for i in inputs][-3:] == ["orders", "anything", "limit"]
    assert inputs[-1] == SqlInput("limit", "", 10, has_default=True, line=13)


def test_sql_schema_without_declarations() -> None:
    assert sql_schema("select 1") == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "-- $min int = 1",
            "malformed argument declaration `-- $min int = 1`; write it as `-- $name (type)`"
            " or `-- $name (type) = default`",
        ),
        ("-- $1 (int)", "malformed argument declaration"),
        ("-- $min (integr)", "unknown type 'integr' for $min; did you mean 'integer'?"),
        ("-- $min (int) = 'one'", 'default of $min: "one" is not a valid int'),
        ("-- $since (date) = 'yesterday'", 'default of $since: "yesterday" is not a valid date'),
        ("-- $name (text) = bob", "default of $name: `bob` is not a literal (quote a text"),
        ("-- $a (int)\n-- $a (int)", "argument $a is declared twice"),
    ],
)
def test_a_malformed_declaration_names_its_line(header: str, message: str) -> None:
    source = f"-- A report\n\n{header}\nselect 1\n"
    line = 3 + header.count("\n")
    with pytest.raises(ScriptError) as caught:
        sql_schema(source, "f/x/report.sql")
    assert caught.value.line == line
    assert caught.value.path == "f/x/report.sql"
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"f/x/report.sql, line {line}: ")


def test_declared_defaults_fill_missing_arguments() -> None:
    script = "-- $min (int) = 2\n-- $name (text) = 'x'\nSELECT $min * 10 AS n, $name AS name"
    assert run_sql(script, {}) == [{"n": 20, "name": "x"}]
    assert run_sql(script, {"min": 3}) == [{"n": 30, "name": "x"}]
    with pytest.raises(SqlError, match="no argument named 'max'"):
        run_sql("-- $max (int)\nSELECT $max", {})
