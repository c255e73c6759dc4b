"""The SQL guard: decide, before DuckDB sees it, whether a SQL step may run.

A step's SQL is parsed with sqlglot (DuckDB dialect) and every node of every statement
is checked against an allow-list. Checking only the top statement is not enough:
`WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x` parses as a SELECT, and a file
reader can hide in a subquery, a lateral join or a scalar call. Anything the lists do
not name is refused, so a construct sqlglot learns later, or one nobody thought of, is
refused until someone reviews it.

Read mode allows queries only. Write mode also allows INSERT, UPDATE, DELETE,
CREATE TABLE / VIEW, DROP TABLE / VIEW and ALTER TABLE, on plain table names. Nothing
may touch files, URLs, other databases, extensions, settings or credentials; the
DuckDB connection is locked down as well (see `flows.sql`), so the guard is the first
line, not the only one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from flows.errors import SqlError

SqlMode = Literal["read", "write"]

DIALECT = "duckdb"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Scalar, aggregate, window, list, struct, map, string, date and JSON functions that
# compute on their arguments only: no files, settings, sequences, sleeps or dynamic
# SQL. DuckDB names: matched against calls sqlglot does not model (exp.Anonymous), and
# against a database's macros, which would shadow them (see flows.sql).
# fmt: off
SAFE_FUNCTIONS = _words("""
abs acos acosh add age aggregate ago any_value approx_count_distinct approx_quantile
approx_top_k arbitrary arg_max arg_max_null arg_max_nulls_last arg_min arg_min_null
arg_min_nulls_last argmax argmin array_agg array_aggr array_aggregate array_append
array_apply array_cat array_concat array_contains array_cosine_distance
array_cosine_similarity array_cross_product array_distance array_distinct array_dot_product
array_extract array_filter array_grade_up array_has array_has_all array_has_any
array_indexof array_inner_product array_intersect array_length array_negative_dot_product
array_negative_inner_product array_pop_back array_pop_front array_position array_prepend
array_push_back array_push_front array_reduce array_resize array_reverse array_reverse_sort
array_select array_slice array_sort array_to_json array_to_string
array_to_string_comma_default array_transform array_unique array_value array_where array_zip
ascii asin asinh atan atan2 atanh avg bar base64 bin binom bit_and bit_count bit_length
bit_or bit_position bit_xor bitstring bitstring_agg bool_and bool_or cardinality cbrt ceil
ceiling century char_length character_length chr coalesce combine_aggr concat concat_ws
contains corr cos cosh cot count count_if count_star countif covar_pop covar_samp cume_dist
current_date damerau_levenshtein date_add date_diff date_part date_sub date_trunc datediff
datepart datesub datetrunc day dayname dayofmonth dayofweek dayofyear days_in_month decade
decimal_average decode degrees dense_rank divide editdist3 element_at encode ends_with
entropy enum_code enum_first enum_last enum_range enum_range_boundary epoch epoch_ms
epoch_ns epoch_us equi_width_bins era even exp factorial favg fdiv fill filter first
first_value flatten floor fmod format formatReadableDecimalSize formatReadableSize
format_bytes from_base64 from_binary from_hex from_json from_json_strict fsum gamma gcd
gen_random_uuid generate_series generate_subscripts geomean geometric_mean get_bit grade_up
greatest greatest_common_divisor group_concat hamming hash hex histogram histogram_exact
hour if ifnull ilike_escape instr is_histogram_other_bin isfinite isinf isnan isodow isoyear
jaccard jaro_similarity jaro_winkler_similarity json json_array json_array_length
json_contains json_copy_strftime_if_date json_copy_strftime_if_timestamp json_deep_merge
json_exists json_extract json_extract_path json_extract_path_text json_extract_string
json_group_array json_group_object json_group_structure json_insert json_keys
json_merge_patch json_merge_patch_diff json_normalize json_object json_pretty json_quote
json_remove json_replace json_set json_strip_nulls json_structure json_transform
json_transform_strict json_type json_valid json_value julian kahan_sum kurtosis kurtosis_pop
lag last last_day last_value lcase lcm lead least least_common_multiple left left_grapheme
len length length_grapheme levenshtein lgamma like_escape list list_aggr list_aggregate
list_any_value list_append list_apply list_approx_count_distinct list_avg list_bit_and
list_bit_or list_bit_xor list_bool_and list_bool_or list_cat list_concat list_contains
list_cosine_distance list_cosine_similarity list_count list_distance list_distinct
list_dot_product list_element list_entropy list_extract list_filter list_first list_grade_up
list_has list_has_all list_has_any list_histogram list_indexof list_inner_product
list_intersect list_kurtosis list_kurtosis_pop list_last list_mad list_max list_median
list_min list_mode list_negative_dot_product list_negative_inner_product list_pack
list_position list_prepend list_product list_reduce list_resize list_reverse
list_reverse_sort list_select list_sem list_skewness list_slice list_sort list_stddev_pop
list_stddev_samp list_string_agg list_sum list_transform list_unique list_value list_var_pop
list_var_samp list_where list_zip listagg ln log log10 log2 lower lpad ltrim lttb mad
make_date make_time make_timestamp make_timestamp_ms make_timestamp_ns make_timestamptz map
map_concat map_contains map_contains_entry map_contains_value map_entries map_extract
map_extract_value map_from_entries map_keys map_values max max_by md5 md5_number
md5_number_lower md5_number_upper mean median microsecond millennium millisecond min min_by
minute mismatches mod mode month monthname multiply nanosecond nextafter nfc_normalize
normalized_interval not_ilike_escape not_like_escape now nth_value ntile nullif octet_length
ord overlay parse_formatted_bytes percent_rank pi position pow power prefix printf product
quantile quantile_cont quantile_disc quarter radians random range rank rank_dense reduce
regexp_escape regexp_extract regexp_extract_all regexp_full_match regexp_matches
regexp_replace regexp_split_to_array regexp_split_to_table regr_avgx regr_avgy regr_count
regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy repeat replace
reservoir_quantile reverse right right_grapheme round round_even roundbankers row row_number
row_to_json rpad rtrim second sem set_bit sha1 sha256 sign signbit sin sinh skewness split
split_part sqrt starts_with stddev stddev_pop stddev_samp str_split str_split_regex strftime
string_agg string_split string_split_regex string_to_array strip_accents strlen strpos
strptime struct_concat struct_contains struct_extract struct_extract_at struct_has
struct_indexof struct_insert struct_keys struct_pack struct_position struct_update
struct_values substr substring substring_grapheme subtract suffix sum sum_no_overflow
sumkahan switch tan tanh time_bucket timezone timezone_hour timezone_minute to_base
to_base64 to_binary to_centuries to_days to_decades to_hex to_hours to_json to_microseconds
to_millennia to_milliseconds to_minutes to_months to_quarters to_seconds to_timestamp
to_weeks to_years today translate trim trunc try_strptime typeof ucase unbin unhex unicode
union_extract union_tag union_value upper url_decode url_encode uuid uuid_extract_timestamp
uuid_extract_version uuidv4 uuidv7 var_pop var_samp variance wavg week weekday weekofyear
weighted_avg xor year yearweek
""")

# The sqlglot classes the names above parse into (sqlglot keeps only the class, not the
# name that was written), plus syntax that sqlglot models as functions (CASE, CAST, ...).
SAFE_FUNCTION_CLASSES = _words("""
Abs Acos Acosh AnyValue ApproxDistinct ApproxQuantile ApproxTopK ArgMax ArgMin
Array ArrayAgg ArrayAppend ArrayConcat ArrayContains ArrayContainsAll ArrayDistinct
ArrayFilter ArrayIntersect ArrayMax ArrayMin ArrayOverlaps ArrayPosition ArrayPrepend
ArrayReverse ArraySize ArraySlice ArraySort ArrayToString Ascii Asin Asinh Atan Atan2 Atanh
Avg BitLength BitwiseAndAgg BitwiseOrAgg BitwiseXor BitwiseXorAgg Case Cast Cbrt Ceil Chr
Coalesce Concat ConcatWs Contains Corr Cos Cosh CosineDistance Cot Count CountIf CovarPop
CovarSamp CumeDist CurrentDate CurrentTime CurrentTimestamp DateAdd DateBin DateDiff
DateFromParts Day Dayname DayOfMonth DayOfWeek DayOfWeekIso DayOfYear Decode Degrees
DenseRank Encode EndsWith EuclideanDistance Exists Exp Explode Extract Factorial First
FirstValue Flatten Floor Format FromBase64 FromJson GenerateSeries Getbit Greatest
GroupConcat Hex Hour If IgnoreNulls IsInf IsNan JarowinklerSimilarity JSONArray JSONExtract
JSONExtractScalar JSONKeys JSONKeyValue JSONObject JSONRemove JSONSet JSONStripNulls
JSONType Kurtosis Lag Last LastDay LastValue Lead Least Left Length Levenshtein Ln Log
LogicalAnd LogicalOr Lower Map MapFromEntries MapKeys Max MD5 Median Min Minute Mod Mode
Month Monthname NthValue Ntile Nullif Overlay Pad ParseJSON PercentileCont PercentileDisc
PercentRank Pi Pow Quantile Quarter Radians Rand Rank Reduce RegexpExtract RegexpExtractAll
RegexpFullMatch RegexpLike RegexpReplace RegexpSplit RegrAvgx RegrAvgy RegrCount
RegrIntercept RegrR2 RegrSlope RegrSxx RegrSxy RegrSyy Repeat Replace Reverse Right Round
RowNumber Second SHA SHA2 Sign Sin Sinh Skewness Split SplitPart Sqrt StartsWith Stddev
StddevPop StddevSamp StrPosition StrToTime Struct StructExtract Substring Sum Tan Tanh
TimeFromParts TimestampFromParts TimestampTrunc TimeToStr TimeToUnix ToBase64 ToBinary
ToDays ToMap Transform Translate Trim Trunc Try TryCast Typeof Unhex Unicode UnixToTime
Unnest Upper Uuid Variance VariancePop Week WeekOfYear Year
""")

# Query syntax: clauses, operators, literals, names, subqueries, set operations.
SAFE_NODES = _words("""
Add Alias All And Any ArrayContainedBy AtTimeZone Between BitString BitwiseAnd
BitwiseLeftShift BitwiseNot BitwiseOr BitwiseRightShift Boolean Bracket ByteString Collate
Column ColumnDef Columns Comprehension CTE Cube DataType DataTypeParam Distinct Div Dot
DPipe EQ Escape Except Fetch Filter From Glob Group GroupingSets GT GTE Having HexString
Identifier IgnoreNulls ILike In IntDiv Intersect Interval Is Join JSONPath JSONPathKey
JSONPathRoot JSONPathSelector JSONPathSlice JSONPathSubscript JSONPathWildcard Kwarg Lambda
Lateral Like Limit LimitOptions Literal LT LTE Mod Mul National Neg NEQ Not Null NullSafeEQ
NullSafeNEQ Offset Or Order Ordered Paren Pivot PivotAlias Placeholder PositionalColumn
PropertyEQ Qualify RawString RespectNulls Rollup Select SimilarTo Slice Star Sub Subquery
Table TableAlias TableSample Tuple Union UnpivotColumns Values Var Where Window WindowSpec
With WithinGroup Xor
""")

# Extra nodes inside the write statements allowed in write mode.
WRITE_NODES = _words("""
AlterColumn AlterRename CheckColumnConstraint ColumnConstraint DefaultColumnConstraint
NotNullColumnConstraint OnConflict PrimaryKey PrimaryKeyColumnConstraint Properties
RenameColumn Returning Schema TemporaryProperty Unique UniqueColumnConstraint
""")
# fmt: on

# Table functions allowed in FROM: they only generate or unpack values.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
_SAFE_TABLE_FUNCTION_CLASSES = frozenset({"GenerateSeries", "Unnest", "Explode"})

_FILE_READERS = _words(
    "glob read_blob read_text sniff_csv parquet_scan parquet_metadata parquet_schema "
    "parquet_file_metadata parquet_kv_metadata parquet_full_metadata parquet_bloom_probe "
    "iceberg_scan iceberg_metadata iceberg_snapshots delta_scan read_xlsx read_duckdb "
    "read_csv read_csv_auto read_parquet read_ndjson read_ndjson_auto read_json "
    "read_json_auto read_json_objects read_json_objects_auto"
)
_DATABASE_READERS = _words(
    "sqlite_scan sqlite_attach postgres_scan postgres_scan_pushdown postgres_query "
    "postgres_attach postgres_execute mysql_scan mysql_query mysql_execute "
    "mysql_attach"
)
_DYNAMIC_SQL = frozenset({"query", "query_table", "json_execute_serialized_sql"})
_SYSTEM_STATE = _words("getenv current_setting getvariable which_secret version current_query")
_SEQUENCES = frozenset({"nextval", "currval", "setval"})

# Calls sqlglot does not model: only the name written in the SQL says what they are.
_NAMED_BY_TEXT = (exp.Anonymous, exp.AnonymousAggFunc)
_WRITE_STATEMENTS = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter)
_QUERY_STATEMENTS = (exp.Select, exp.SetOperation, exp.Values, exp.Subquery, exp.Pivot)
_WRITABLE_KINDS = {"CREATE": {"TABLE", "VIEW"}, "DROP": {"TABLE", "VIEW"}, "ALTER": {"TABLE"}}

_FILES = "it reads or writes files"
_SETTINGS = "it changes database settings"
_MAINTENANCE = "it maintains the database file"
_TRANSACTION = "each SQL step already runs in its own transaction"
_REASONS = {
    "COPY": _FILES,
    "EXPORT DATABASE": _FILES,
    "IMPORT DATABASE": _FILES,
    "ATTACH": "it opens another database",
    "DETACH": "it closes a database",
    "USE": "it switches to another database or schema",
    "INSTALL": "it installs extensions",
    "LOAD": "it loads extensions",
    "FORCE INSTALL": "it installs extensions",
    "PRAGMA": _SETTINGS,
    "SET": _SETTINGS,
    "RESET": _SETTINGS,
    "CALL": "it runs system procedures",
    "CHECKPOINT": _MAINTENANCE,
    "FORCE CHECKPOINT": _MAINTENANCE,
    "VACUUM": _MAINTENANCE,
    "ANALYZE": _MAINTENANCE,
    "CREATE SECRET": "it stores credentials",
    "DROP SECRET": "it manages credentials",
    "CREATE MACRO": "it defines code that later queries would run",
    "CREATE FUNCTION": "it defines code that later queries would run",
    "BEGIN": _TRANSACTION,
    "START": _TRANSACTION,
    "COMMIT": _TRANSACTION,
    "ROLLBACK": _TRANSACTION,
    "ABORT": _TRANSACTION,
    "END": _TRANSACTION,
}
_ONLY = (
    "only queries are allowed, and with mode: write INSERT, UPDATE, DELETE, "
    "CREATE TABLE/VIEW, DROP TABLE/VIEW and ALTER TABLE"
)
_NAME_CLASSES = {
    exp.Copy: "COPY",
    exp.Attach: "ATTACH",
    exp.Detach: "DETACH",
    exp.Install: "INSTALL",
    exp.Pragma: "PRAGMA",
    exp.Set: "SET",
    exp.Use: "USE",
    exp.Transaction: "BEGIN",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
    exp.Describe: "DESCRIBE",
    exp.Summarize: "SUMMARIZE",
    exp.Show: "SHOW",
    exp.Analyze: "ANALYZE",
    exp.TruncateTable: "TRUNCATE",
    exp.Comment: "COMMENT",
    exp.Merge: "MERGE",
}
# The DuckDB statement types each kind of statement the guard approved may parse as.
_DUCKDB_KINDS: tuple[tuple[type[exp.Expr], frozenset[str]], ...] = (
    (exp.Pivot, frozenset({"SELECT", "MULTI"})),  # PIVOT without IN runs as several
    (exp.Insert, frozenset({"INSERT"})),
    (exp.Update, frozenset({"UPDATE"})),
    (exp.Delete, frozenset({"DELETE"})),
    (exp.Create, frozenset({"CREATE"})),
    (exp.Drop, frozenset({"DROP"})),
    (exp.Alter, frozenset({"ALTER"})),
)
_QUERY_KINDS = frozenset({"SELECT"})
_READ_KINDS = frozenset({"SELECT", "MULTI"})
_PLAIN_TABLE = re.compile(r"[^\W\d][\w\- ]*")
_SYSTEM_PREFIXES = ("duckdb_", "pragma_", "sqlite_", "pg_", "information_schema")
_MODIFIERS = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY", "PERSISTENT", "IF", "EXISTS"})
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def check_sql(sql: str, *, mode: SqlMode = "read") -> None:
    """Refuse `sql` (raise `SqlError`) unless every statement in it is allowed in `mode`.

    Messages start with "SQL refused:" and name what was refused and why.
    """
    checked_statements(sql, mode=mode)


def checked_statements(sql: str, *, mode: SqlMode = "read") -> list[exp.Expr]:
    """Parse and check `sql`; return its statements (empty ones dropped) in order."""
    if mode not in ("read", "write"):
        raise SqlError(f"SQL mode must be 'read' or 'write', not {mode!r}")
    statements = _parse(sql)
    if not statements:
        raise SqlError("SQL refused: there is no SQL statement to run")
    for statement in statements:
        _check_statement(statement, mode)
    return statements


def match_duckdb_statements(
    statements: Sequence[exp.Expr], prepared: Sequence[duckdb.Statement], mode: SqlMode
) -> None:
    """Refuse SQL that DuckDB splits or classifies differently from the guard.

    `prepared` is DuckDB's own parse (`extract_statements`) of the text the guard
    checked. If the two parsers ever disagree (a tokenizer corner case), the check would
    not cover what runs; in read mode DuckDB must also see queries only.
    """
    if len(statements) != len(prepared):
        raise SqlError(
            f"SQL refused: DuckDB reads {len(prepared)} statement(s) where the guard read "
            f"{len(statements)}; simplify the SQL (quotes, comments, semicolons)"
        )
    for number, (statement, duck) in enumerate(zip(statements, prepared, strict=True), 1):
        kinds = next((k for cls, k in _DUCKDB_KINDS if isinstance(statement, cls)), _QUERY_KINDS)
        if mode == "read":
            kinds &= _READ_KINDS
        if duck.type.name not in kinds:
            raise SqlError(
                f"SQL refused: DuckDB reads statement {number} as {duck.type.name}, the "
                f"guard as {statement_name(statement)}; simplify the SQL"
            )


def refuse_shadowing_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a database whose macros take the name of an allowed function.

    DuckDB resolves `upper(x)` to a macro named `upper` in the database before the
    built-in, so such a macro would run its own body under a name the guard allows.
    SQL steps cannot create macros; a database file prepared elsewhere can hold them.
    """
    try:
        rows = con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE NOT internal AND function_type IN ('macro', 'table_macro')"
        ).fetchall()
    except duckdb.Error as exc:
        raise SqlError(str(exc)) from None
    allowed = SAFE_FUNCTIONS | SAFE_TABLE_FUNCTIONS
    shadowing = sorted(name for (name,) in rows if str(name).lower() in allowed)
    if shadowing:
        raise SqlError(
            f"SQL refused: the database defines macros named like built-in functions "
            f"({', '.join(shadowing)}); a SQL step would run them in their place. "
            "Drop or rename them first."
        )


def statement_name(node: exp.Expr) -> str:
    """A statement's name as a person would write it: "SELECT", "CREATE MACRO", ..."""
    if isinstance(node, exp.Command):
        words = _snippet(node, limit=200).upper().split()
        head = words[0] if words else "COMMAND"
        if head in {"CREATE", "DROP", "EXPORT", "IMPORT", "FORCE"}:
            rest = [w for w in words[1:] if w not in _MODIFIERS]
            return f"{head} {rest[0]}" if rest else head
        return head
    if isinstance(node, exp.Create | exp.Drop | exp.Alter):
        verb = type(node).__name__.upper()
        kind = str(node.args.get("kind") or "").upper()
        return f"{verb} {kind}".strip()
    if isinstance(node, exp.Insert | exp.Update | exp.Delete | exp.Select):
        return type(node).__name__.upper()
    for cls, name in _NAME_CLASSES.items():
        if isinstance(node, cls):
            return name
    if isinstance(node, exp.Column):  # sqlglot reads a lone keyword (CHECKPOINT) as a column
        return node.name.upper()
    return type(node).__name__.upper()


def _parse(sql: str) -> list[exp.Expr]:
    try:
        parsed = sqlglot.parse(sql, dialect=DIALECT)
    except (SqlglotError, RecursionError) as exc:
        known = _refused_leading_words(sql)
        if known:
            raise _refusal(known) from None
        message = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
        raise SqlError(f"SQL refused: it cannot be parsed: {message}") from None
    # sqlglot yields None for an empty statement (`;;`) and Semicolon for a trailing comment.
    return [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]


def _refused_leading_words(sql: str) -> str:
    """Name a refused statement (EXPORT DATABASE, ...) sqlglot cannot parse, else ""."""
    try:
        tokens = Dialect.get_or_raise(DIALECT).tokenize(sql)
    except (SqlglotError, RecursionError):
        return ""
    starts: list[list[str]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            starts.append([])
        elif len(starts[-1]) < 2:
            starts[-1].append(token.text.upper())
    for words in starts:
        for name in (" ".join(words), words[0] if words else ""):
            if name in _REASONS:
                return name
    return ""


def _refusal(name: str) -> SqlError:
    return SqlError(f"SQL refused: {name} is not allowed ({_REASONS.get(name, _ONLY)})")


def _check_statement(statement: exp.Expr, mode: SqlMode) -> None:
    if isinstance(statement, _WRITE_STATEMENTS):
        name = statement_name(statement)
        verb = name.split()[0]
        kind = name.partition(" ")[2]
        if verb in _WRITABLE_KINDS and kind not in _WRITABLE_KINDS[verb]:
            raise _refusal(name)
        if mode != "write":
            raise SqlError(f"SQL refused: {name} needs mode: write")
    elif not isinstance(statement, _QUERY_STATEMENTS):
        raise _refusal(statement_name(statement))
    for node in statement.walk():
        if node is not statement:
            _check_node(node, mode)


def _check_node(node: exp.Expr, mode: SqlMode) -> None:
    name = type(node).__name__
    if isinstance(node, _WRITE_STATEMENTS):
        if isinstance(node, exp.Drop) and isinstance(node.parent, exp.Alter):
            return  # ALTER TABLE ... DROP COLUMN
        raise SqlError(
            f"SQL refused: {statement_name(node)} inside another statement is not allowed "
            "(a query must not change data; write it as its own statement with mode: write)"
        )
    if isinstance(node, exp.Table):
        _check_table(node)
    elif isinstance(node, exp.Placeholder):
        if not node.this:
            raise SqlError(
                "SQL refused: `?` placeholders are not supported; "
                "name the parameter instead, e.g. `$min`"
            )
    elif isinstance(node, exp.Func) and _is_table_function(node):
        _check_table_function(node)
    elif isinstance(node, _NAMED_BY_TEXT):
        _check_function(node)
    elif _allowed(name, mode):
        return
    elif isinstance(node, exp.Func):
        _check_function(node)  # not allowed: raises, naming the function
    else:
        raise SqlError(
            f"SQL refused: `{_snippet(node)}` ({name}) is not on the list of allowed SQL constructs"
        )


def _allowed(name: str, mode: SqlMode) -> bool:
    return (
        name in SAFE_NODES
        or name in SAFE_FUNCTION_CLASSES
        or (mode == "write" and name in WRITE_NODES)
    )


def _is_table_function(node: exp.Func) -> bool:
    # `FROM f(...)` and `LATERAL f(...)`: DuckDB resolves f among table functions there.
    parent = node.parent
    return isinstance(parent, exp.Table | exp.Lateral) and parent.this is node


def _function_name(node: exp.Func) -> str:
    if isinstance(node, _NAMED_BY_TEXT):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_function(node: exp.Func) -> None:
    name = _function_name(node)
    if isinstance(node, _NAMED_BY_TEXT):
        if name in SAFE_FUNCTIONS:
            return
    elif type(node).__name__ in SAFE_FUNCTION_CLASSES:
        return
    raise SqlError(f"SQL refused: {name}() {_function_reason(name)}")


def _check_table_function(node: exp.Func) -> None:
    name = _function_name(node)
    allowed = (
        name in SAFE_TABLE_FUNCTIONS
        if isinstance(node, _NAMED_BY_TEXT)
        else type(node).__name__ in _SAFE_TABLE_FUNCTION_CLASSES
    )
    if not allowed:
        raise SqlError(f"SQL refused: {name}() {_function_reason(name, table=True)}")


def _function_reason(name: str, *, table: bool = False) -> str:
    if name in _FILE_READERS or name.startswith(("read_", "parquet_", "iceberg_", "delta_")):
        return "reads files; pass the data as a step argument instead"
    if name in _DATABASE_READERS or name.endswith("_scan"):
        return "reads another database; pass the data as a step argument instead"
    if name in _DYNAMIC_SQL:
        return "runs SQL built at run time, which the guard cannot check"
    if name in _SYSTEM_STATE or name.startswith(("duckdb_", "pragma_", "current_")):
        return "reads settings or system state of the host"
    if name in _SEQUENCES:
        return "uses sequences, which keep state between runs"
    if table:
        return (
            f"is not an allowed table function (allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
        )
    return "is not on the list of allowed functions"


def _check_table(node: exp.Table) -> None:
    if isinstance(node.this, exp.Func):
        return  # a table function: checked when the walk reaches it
    if not isinstance(node.this, exp.Identifier):
        raise SqlError(f"SQL refused: `{_snippet(node)}` is not a plain table name")
    name = node.name
    if node.args.get("db") or node.args.get("catalog"):
        raise SqlError(
            f"SQL refused: `{_snippet(node)}` names a table in another schema or database; "
            "only plain table names are allowed"
        )
    if not _PLAIN_TABLE.fullmatch(name):
        if any(c in name for c in "./\\:*?~"):
            raise SqlError(
                f"SQL refused: '{name}' looks like a file or URL, which DuckDB would read; "
                "pass the data as a step argument instead"
            )
        raise SqlError(f"SQL refused: '{name}' is not a plain table name")
    if name.lower().startswith(_SYSTEM_PREFIXES):
        raise SqlError(f"SQL refused: '{name}' is a DuckDB system table or view")


def _snippet(node: exp.Expr, limit: int = 60) -> str:
    try:
        text = node.sql(dialect=DIALECT)
    except (SqlglotError, RecursionError, ValueError):
        text = type(node).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
