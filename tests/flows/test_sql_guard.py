"""The SQL guard: what it refuses (and why it says so), and what it lets analysts write."""

from __future__ import annotations

import re

import duckdb
import pytest
import sqlglot

from flows.errors import SqlError
from flows.sql_guard import (
    SAFE_FUNCTIONS,
    SAFE_TABLE_FUNCTIONS,
    check_sql,
    match_duckdb_statements,
)

# Refused in read mode, most of them in write mode too (see WRITE_REFUSED for the rest).
REFUSED = [
    # files, URLs and other databases
    "COPY t TO '/tmp/out.csv'",
    "COPY t FROM '/etc/passwd'",
    "COPY (SELECT 1) TO 'out.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '/tmp/dump'",
    "IMPORT DATABASE '/tmp/dump'",
    "ATTACH '/tmp/other.db' AS other",
    "ATTACH ':memory:' AS m",
    "DETACH other",
    "USE other",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT * FROM parquet_scan('x.parquet')",
    "SELECT * FROM read_json('x.json')",
    "SELECT * FROM read_json_auto('x.json')",
    "SELECT * FROM read_ndjson_objects('x.json')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/home/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM iceberg_scan('warehouse/t')",
    "SELECT * FROM delta_scan('lake/t')",
    "SELECT * FROM sqlite_scan('x.db', 't')",
    "SELECT * FROM postgres_scan('dbname=x', 'public', 't')",
    "SELECT * FROM mysql_scan('x', 'y', 'z')",
    "FROM '/etc/passwd'",
    "SELECT * FROM 'http://x/y.parquet'",
    'SELECT * FROM "data.csv"',
    "SELECT * FROM t JOIN 's3://b/x.csv' AS s USING (id)",
    "SELECT * FROM t WHERE EXISTS (FROM '/etc/passwd')",
    # hidden in subqueries, set operations, lateral joins, expressions
    "SELECT * FROM (SELECT * FROM read_parquet('x.parquet'))",
    "SELECT * FROM t WHERE a IN (SELECT a FROM (SELECT * FROM read_parquet('x.parquet')))",
    "SELECT * FROM t WHERE a IN (SELECT file FROM glob('*'))",
    "SELECT a FROM t UNION SELECT content FROM read_text('/etc/passwd')",
    "SELECT * FROM t, LATERAL glob(t.pattern)",
    "SELECT * FROM t, LATERAL (SELECT * FROM glob(t.p)) AS g",
    "SELECT (SELECT content FROM read_text('/etc/passwd'))",
    "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x",
    "SELECT * FROM range(10), read_csv('x')",
    "SELECT list_transform(['HOME'], x -> getenv(x))",
    # statements that change data, hidden or not
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
    "SELECT 1; DROP TABLE t",
    "DELETE FROM t",
    "UPDATE t SET a = 1",
    "INSERT INTO t VALUES (1)",
    "CREATE TABLE t2 AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "DROP TABLE t",
    "ALTER TABLE t ADD COLUMN c INT",
    # extensions, settings, secrets, macros, system state
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "INSTALL shellfs FROM community",
    "LOAD httpfs",
    "PRAGMA version",
    "PRAGMA enable_profiling",
    "SET enable_external_access = true",
    "SET GLOBAL enable_external_access = true",
    "SET lock_configuration = false",
    "RESET allowed_directories",
    "SET VARIABLE x = 1",
    "CALL pragma_version()",
    "CALL duckdb_settings()",
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "VACUUM",
    "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "CREATE PERSISTENT SECRET s (TYPE s3)",
    "CREATE MACRO m(a) AS a + 1",
    "CREATE MACRO m() AS TABLE SELECT 1",
    "CREATE FUNCTION f(a) AS a",
    "SELECT getenv('HOME')",
    "SELECT 'HOME'.getenv()",
    "SELECT 1 FROM t WHERE a = (SELECT getenv('X'))",
    "SELECT current_setting('secret_directory')",
    "SELECT getvariable('x')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM pragma_table_info('t')",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')",
    "SELECT * FROM query_table('t')",
    "SELECT * FROM json_execute_serialized_sql('x')",
    "SELECT json_serialize_sql('SELECT 1')",
    "SELECT nextval('seq')",
    "SELECT pg_sleep(100)",
    # other catalogs and schemas
    "SELECT * FROM other.main.t",
    "SELECT * FROM other.t",
    "SELECT * FROM system.main.duckdb_settings",
    "SELECT * FROM information_schema.tables",
    # everything else that is not a query
    "BEGIN TRANSACTION",
    "COMMIT",
    "SUMMARIZE t",
    "DESCRIBE t",
    "SHOW TABLES",
    "EXPLAIN SELECT 1",
    "TRUNCATE t",
    "SELECT * FROM t AT (VERSION => 1)",
    "SELECT ?",
    "",
    "-- only a comment",
    "SELEC 1",
]

WRITE_REFUSED = [
    "INSERT INTO t SELECT * FROM read_csv('/etc/passwd')",
    "INSERT INTO t SELECT content FROM read_text('/etc/passwd')",
    "CREATE TABLE t AS SELECT * FROM read_parquet('x.parquet')",
    "CREATE TABLE t AS FROM 'x.csv'",
    "CREATE VIEW v AS SELECT * FROM glob('*')",
    "DELETE FROM t WHERE a IN (SELECT * FROM read_csv('x'))",
    "UPDATE t SET a = getenv('HOME')",
    "CREATE TABLE t (a VARCHAR DEFAULT current_setting('x'))",
    "INSERT INTO other.main.t VALUES (1)",
    "INSERT INTO other.t VALUES (1)",
    "CREATE TABLE other.t AS SELECT 1",
    "DROP TABLE other.main.t",
    "UPDATE other.t SET a = 1",
    "DELETE FROM other.t",
    "ALTER TABLE other.t ADD COLUMN c INT",
    'INSERT INTO "x.csv" VALUES (1)',
    "INSERT INTO duckdb_settings VALUES (1)",
    "CREATE SCHEMA s",
    "CREATE SEQUENCE s",
    "CREATE INDEX i ON t (a)",
    "CREATE TYPE mood AS ENUM ('a')",
    "DROP SCHEMA main",
    "DROP MACRO m",
    "DROP SECRET s",
    "ALTER VIEW v RENAME TO w",
    "CREATE TABLE t AS SELECT 1; COPY t TO 'x.csv'",
    "WITH x AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM x",
]

ACCEPTED = [
    "SELECT a, b FROM t JOIN u ON t.id = u.id WHERE a > $min",
    "SELECT * FROM t LEFT JOIN u USING (id) FULL OUTER JOIN w ON w.id = t.id CROSS JOIN z",
    "SELECT * FROM t ASOF JOIN u USING (k, ts)",
    "SELECT * FROM t POSITIONAL JOIN u",
    "SELECT * FROM t SEMI JOIN u USING (id)",
    "SELECT * FROM t ANTI JOIN u USING (id)",
    "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id) AS s",
    "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
    "SELECT a, sum(b) OVER (PARTITION BY a ORDER BY c ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)"
    " FROM t QUALIFY row_number() OVER (PARTITION BY a ORDER BY c) = 1",
    "SELECT lag(a) OVER w, lead(a, 2) OVER w, first_value(a) OVER w, ntile(4) OVER w, rank()"
    " OVER w, dense_rank() OVER w, percent_rank() OVER w, cume_dist() OVER w FROM t"
    " WINDOW w AS (ORDER BY b)",
    "SELECT first(a) IGNORE NULLS OVER (ORDER BY b) FROM t",
    "SELECT a, b, sum(c) FROM t GROUP BY ROLLUP (a, b)",
    "SELECT a, b, sum(c) FROM t GROUP BY CUBE (a, b)",
    "SELECT a, b, sum(c) FROM t GROUP BY GROUPING SETS ((a), (b), ())",
    "SELECT a FROM t GROUP BY ALL ORDER BY ALL",
    "SELECT sum(a) AS total FROM t HAVING sum(a) > 10",
    "SELECT sum(a) FILTER (WHERE b > 1) FROM t",
    "SELECT count(*) FILTER (WHERE a), bool_and(b), bit_or(c) FROM t",
    "SELECT count(*), count(DISTINCT a), avg(b), median(b), quantile_cont(b, 0.5), stddev(b),"
    " min(b), max(b), arg_max(a, b), mode(a), any_value(a) FROM t",
    "SELECT quantile_cont(x, 0.5) WITHIN GROUP (ORDER BY x) FROM t",
    "SELECT CASE WHEN a THEN 1 ELSE 2 END, coalesce(a, b), nullif(a, 0), greatest(a, b),"
    " ifnull(a, 1) FROM t",
    "SELECT a LIKE 'x%', a ILIKE 'y', a SIMILAR TO 'z', a GLOB '*.x', a NOT LIKE 'q' FROM t",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id) AND a = ANY (SELECT 1)"
    " AND b NOT IN (1, 2) AND c BETWEEN 1 AND 5 AND d IS NOT NULL",
    "SELECT [x * 2 for x in [1, 2, 3]]",
    "SELECT list_transform([1, 2], x -> x + 1)",
    "SELECT list_reduce([1, 2, 3], (x, y) -> x + y)",
    "SELECT list_filter(l, x -> x > 1), list_sort(l), len(l), l[1], l[1:2], array_length(l),"
    " unnest(l) FROM t",
    "SELECT {'a': 1, 'b': [1, 2]} AS s",
    "SELECT s.a FROM (SELECT {'a': 1} AS s)",
    "SELECT map_from_entries([(1, 2)]), map_keys(m), struct_extract(s, 'a'), row(1, 2) FROM t",
    "SELECT regexp_matches(a, 'x'), string_agg(a, ','), list(a), array_agg(a ORDER BY b),"
    " struct_pack(a := 1) FROM t",
    "SELECT upper(a), lower(a), trim(a), substring(a, 1, 2), concat(a, b), a || b,"
    " replace(a, 'x', 'y'), split_part(a, ',', 1), length(a), left(a, 2), lpad(a, 5, '0'),"
    " starts_with(a, 'x'), contains(a, 'y'), string_split(a, ','), format('{}', a),"
    " printf('%d', 1) FROM t",
    "SELECT regexp_extract(a, '(\\d+)', 1), regexp_replace(a, '\\s+', ' ', 'g') FROM t",
    "SELECT round(a, 2), floor(a), ceil(a), abs(a), sqrt(a), ln(a), log10(a), power(a, 2),"
    " a ** 2, a // 2, a % 2, -a FROM t",
    "SELECT strftime(now(), '%Y'), date_trunc('month', d), d + INTERVAL 1 DAY,"
    " extract(year FROM d), d - INTERVAL '3 days' FROM t",
    "SELECT date_diff('day', a, b), age(a), current_date, current_timestamp, today(),"
    " make_date(2020, 1, 1), strptime(a, '%Y'), epoch_ms(1), date_part('year', a),"
    " dayname(a), last_day(a) FROM t",
    "SELECT time_bucket(INTERVAL '1 hour', ts), avg(v) FROM t GROUP BY 1",
    "SELECT epoch(ts), to_timestamp(1700000000) FROM t",
    "SELECT DATE '2024-01-01', TIMESTAMP '2024-01-01 10:00', INTERVAL 3 MONTH",
    "SELECT a::INT, CAST(b AS DATE), TRY_CAST(c AS DOUBLE), d::JSON ->> '$.x', d -> 'a' ->> 'b'"
    " FROM t",
    "SELECT x::STRUCT(a INT, b VARCHAR[]), x::MAP(VARCHAR, INT), x::DECIMAL(10, 2) FROM t",
    "SELECT json_extract(j, '$.a'), json_array_length(j), json_keys(j), j ->> '$.a[0]' FROM t",
    "SELECT md5(a), hash(a), uuid(), gen_random_uuid(), random(), typeof(a) FROM t",
    "SELECT a IS DISTINCT FROM b, a COLLATE nocase FROM t",
    "SELECT * EXCLUDE (a) FROM t",
    "SELECT * REPLACE (a + 1 AS a) FROM t",
    "SELECT COLUMNS('a.*') FROM t",
    "FROM t SELECT a",
    "SELECT * FROM t USING SAMPLE 10%",
    "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC NULLS LAST",
    "SELECT * FROM t LIMIT 10 OFFSET 5",
    "SELECT * FROM (VALUES (1, 'a')) AS v(id, name)",
    "VALUES (1), (2)",
    "SELECT a FROM t UNION BY NAME SELECT a FROM u",
    "SELECT a FROM t EXCEPT SELECT a FROM u",
    "SELECT a FROM t INTERSECT SELECT a FROM u",
    "(SELECT 1) UNION ALL (SELECT 2)",
    "PIVOT t ON region USING sum(amount)",
    "SELECT * FROM t PIVOT (sum(x) FOR y IN ('a', 'b'))",
    "UNPIVOT t ON a, b INTO NAME k VALUE v",
    "SELECT * FROM range(10) AS r(i)",
    "SELECT * FROM generate_series(1, 10)",
    "SELECT * FROM unnest([1, 2, 3]) AS u(x)",
    "SELECT * FROM t, unnest(t.l) AS u(x)",
    "SELECT * FROM t, LATERAL unnest(t.l) AS u(x)",
    "SELECT * FROM t, LATERAL generate_series(1, t.a) AS g(i)",
    "SELECT * FROM json_each('[1, 2]')",
    'SELECT "my table".a FROM "my table"',
    "SELECT 'it''s', E'a\\nb', $$raw$$",
    "SELECT $1, $2",
    "SELECT a, b FROM t WHERE a = $name AND b = $other -- a comment",
    "SELECT 1; SELECT 2;",
]

WRITE_ACCEPTED = [
    "INSERT INTO t SELECT * FROM rows",
    "INSERT INTO t (a, b) VALUES (1, 2), ($a, $b)",
    "INSERT INTO t BY NAME SELECT id, v FROM rows WHERE v > $min",
    "INSERT OR REPLACE INTO t VALUES (1, 'x')",
    "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
    "INSERT INTO t VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET b = excluded.b",
    "INSERT INTO t VALUES (1) RETURNING *",
    "UPDATE t SET a = a + 1 WHERE b IN (SELECT b FROM u)",
    "UPDATE t SET a = u.a FROM u WHERE t.id = u.id",
    "DELETE FROM t WHERE a = $x",
    "DELETE FROM t USING u WHERE t.id = u.id",
    "CREATE TABLE t2 AS SELECT * FROM t WHERE a > 1",
    "CREATE OR REPLACE TABLE t2 AS SELECT 1 AS a",
    "CREATE TABLE IF NOT EXISTS t3 (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL DEFAULT 'x',"
    " n INT CHECK (n > 0), UNIQUE (name))",
    "CREATE TEMP TABLE scratch AS SELECT 1",
    "CREATE VIEW v AS SELECT a, count(*) AS n FROM t GROUP BY a",
    "CREATE OR REPLACE VIEW v AS SELECT 1",
    "DROP TABLE IF EXISTS t2",
    "DROP VIEW v",
    "ALTER TABLE t ADD COLUMN c INTEGER DEFAULT 0",
    "ALTER TABLE t DROP COLUMN c",
    "ALTER TABLE t RENAME TO t4",
    "ALTER TABLE t RENAME COLUMN a TO b",
    "ALTER TABLE t ALTER COLUMN a SET DATA TYPE BIGINT",
    "CREATE TABLE t (a INT); INSERT INTO t VALUES (1); SELECT * FROM t",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_refused_in_read_mode(sql: str) -> None:
    with pytest.raises(SqlError, match=r"^SQL refused: "):
        check_sql(sql)


@pytest.mark.parametrize("sql", REFUSED)
def test_refused_in_write_mode_unless_a_plain_write(sql: str) -> None:
    plain_writes = {
        "DELETE FROM t",
        "UPDATE t SET a = 1",
        "INSERT INTO t VALUES (1)",
        "CREATE TABLE t2 AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE t",
        "ALTER TABLE t ADD COLUMN c INT",
        "SELECT 1; DROP TABLE t",
    }
    if sql in plain_writes:
        check_sql(sql, mode="write")
    else:
        with pytest.raises(SqlError, match=r"^SQL refused: "):
            check_sql(sql, mode="write")


@pytest.mark.parametrize("sql", WRITE_REFUSED)
def test_refused_in_write_mode(sql: str) -> None:
    with pytest.raises(SqlError, match=r"^SQL refused: "):
        check_sql(sql, mode="write")


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepted_in_read_mode(sql: str) -> None:
    check_sql(sql)
    check_sql(sql, mode="write")


@pytest.mark.parametrize("sql", WRITE_ACCEPTED)
def test_accepted_in_write_mode_only(sql: str) -> None:
    check_sql(sql, mode="write")
    with pytest.raises(SqlError, match="needs mode: write"):
        check_sql(sql)


def test_the_lists_are_long_enough() -> None:
    assert len(REFUSED) + len(WRITE_REFUSED) >= 50
    assert len(ACCEPTED) + len(WRITE_ACCEPTED) >= 50


@pytest.mark.parametrize(
    ("sql", "mode", "message"),
    [
        (
            "COPY t TO 'x.csv'",
            "write",
            "SQL refused: COPY is not allowed (it reads or writes files)",
        ),
        (
            "SELECT * FROM read_csv('/etc/passwd')",
            "read",
            "SQL refused: read_csv() reads files; pass the data as a step argument instead",
        ),
        ("DELETE FROM t WHERE a = 1", "read", "SQL refused: DELETE needs mode: write"),
        (
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "write",
            "SQL refused: DELETE inside another statement is not allowed (a query must not "
            "change data; write it as its own statement with mode: write)",
        ),
        (
            "SET enable_external_access = true",
            "write",
            "SQL refused: SET is not allowed (it changes database settings)",
        ),
        ("INSTALL httpfs", "write", "SQL refused: INSTALL is not allowed (it installs extensions)"),
        (
            "EXPORT DATABASE 'dump'",
            "write",
            "SQL refused: EXPORT DATABASE is not allowed (it reads or writes files)",
        ),
        (
            "CREATE SECRET s (TYPE s3)",
            "write",
            "SQL refused: CREATE SECRET is not allowed (it stores credentials)",
        ),
        (
            "FROM '/etc/passwd'",
            "read",
            "SQL refused: '/etc/passwd' looks like a file or URL, which DuckDB would read; "
            "pass the data as a step argument instead",
        ),
        (
            "SELECT current_setting('threads')",
            "read",
            "SQL refused: current_setting() reads settings or system state of the host",
        ),
        (
            "SELECT * FROM query('SELECT 1')",
            "read",
            "SQL refused: query() runs SQL built at run time, which the guard cannot check",
        ),
        (
            "SELECT * FROM other.main.t",
            "write",
            "SQL refused: `other.main.t` names a table in another schema or database; only "
            "plain table names are allowed",
        ),
        (
            "SELECT ?",
            "read",
            "SQL refused: `?` placeholders are not supported; name the parameter instead, "
            "e.g. `$min`",
        ),
        ("", "read", "SQL refused: there is no SQL statement to run"),
    ],
)
def test_messages_name_what_was_refused_and_why(sql: str, mode: str, message: str) -> None:
    with pytest.raises(SqlError) as caught:
        check_sql(sql, mode=mode)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_an_unparseable_statement_carries_the_parser_message() -> None:
    with pytest.raises(SqlError, match=r"^SQL refused: it cannot be parsed: .*Line 1") as caught:
        check_sql("SELECT (1")
    assert "\x1b[" not in str(caught.value)  # sqlglot's terminal underline is stripped


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(SqlError, match="mode must be 'read' or 'write'"):
        check_sql("SELECT 1", mode="admin")  # type: ignore[arg-type]


def _duckdb_functions(*types: str) -> list[str]:
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type IN "
            f"({', '.join('?' for _ in types)}) ORDER BY 1",
            list(types),
        ).fetchall()
    return [name for (name,) in rows if re.fullmatch(r"[A-Za-z_]\w*", name)]


def test_every_duckdb_table_function_but_the_generators_is_refused() -> None:
    # Asks this DuckDB what it has, so a table function added by an upgrade is covered.
    accepted = []
    for name in _duckdb_functions("table", "table_macro", "pragma"):
        if name in SAFE_TABLE_FUNCTIONS or name == "show":
            continue  # `FROM show('x')` is a table named show to sqlglot, a syntax error to DuckDB
        for sql in (f"SELECT * FROM {name}('x')", f"SELECT * FROM t, LATERAL {name}(t.a)"):
            try:
                check_sql(sql)
            except SqlError:
                continue
            accepted.append(sql)
    assert accepted == []


def test_show_as_a_table_function_is_a_syntax_error_in_duckdb() -> None:
    with duckdb.connect() as con, pytest.raises(duckdb.ParserException):
        con.execute("SELECT * FROM show('x')")


def test_scalar_functions_off_the_allow_list_are_refused() -> None:
    # sqlglot turns many names into typed nodes; a typed node that is allowed must not be
    # reachable from a name that is not (the names listed are the ones that are harmless).
    harmless_aliases = {"get_current_time", "histogram"}
    accepted = []
    for name in _duckdb_functions("scalar", "aggregate", "macro", "window"):
        if name in SAFE_FUNCTIONS or name in harmless_aliases:
            continue
        for args in ("", "1", "1, 2"):
            try:
                check_sql(f"SELECT {name}({args})")
            except SqlError:
                continue
            accepted.append(name)
            break
    assert accepted == []


@pytest.mark.parametrize(
    "name",
    ["getenv", "current_setting", "getvariable", "sleep_ms", "write_log", "setseed", "nextval"],
)
def test_functions_with_side_effects_or_host_state_are_off_the_list(name: str) -> None:
    assert name not in SAFE_FUNCTIONS


def test_the_run_refuses_sql_duckdb_reads_differently_from_the_guard() -> None:
    guard_view = [sqlglot.parse_one("SELECT 1", dialect="duckdb")]
    with duckdb.connect() as con:
        with pytest.raises(SqlError, match="DuckDB reads 2 statement"):
            match_duckdb_statements(
                guard_view, con.extract_statements("SELECT 1; SELECT 2"), "read"
            )
        with pytest.raises(SqlError, match="DuckDB reads statement 1 as DELETE"):
            match_duckdb_statements(guard_view, con.extract_statements("DELETE FROM t"), "write")
        # In read mode DuckDB must see queries only, whatever the guard let through.
        delete = [sqlglot.parse_one("DELETE FROM t", dialect="duckdb")]
        match_duckdb_statements(delete, con.extract_statements("DELETE FROM t"), "write")
        with pytest.raises(SqlError, match="DuckDB reads statement 1 as DELETE"):
            match_duckdb_statements(delete, con.extract_statements("DELETE FROM t"), "read")
