-- 001: runs, step attempts, logs, single-use tokens and the step cache.
--
-- Column names and order follow flows/records.py (RunRecord, StepRecord, LogRecord); the
-- store checks at open that every record field has a column. Times are Unix seconds
-- (DOUBLE), as the records carry them. JSON columns hold values exactly as json.dumps
-- wrote them (SQL NULL for None), so ints stay ints when they are read back.
--
-- The VIRTUAL generated columns (created, started, finished as UTC TIMESTAMPs, and
-- duration_ms) cost nothing to store and make SQL over the history pleasant:
--   select key, avg(duration_ms) from steps group by 1
-- `at` is a reserved word in DuckDB SQL: write "at", or use the generated `logged`.

CREATE TABLE runs (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    definition VARCHAR NOT NULL,
    args JSON,
    status VARCHAR NOT NULL,
    result JSON,
    error JSON,
    recovered BOOLEAN NOT NULL,
    "trigger" VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    priority INTEGER NOT NULL,
    concurrency_key VARCHAR,
    concurrency_limit INTEGER,
    parent_run_id VARCHAR,
    created_at DOUBLE NOT NULL,
    started_at DOUBLE,
    finished_at DOUBLE,
    wake_at DOUBLE,
    worker VARCHAR,
    heartbeat_at DOUBLE,
    created TIMESTAMP GENERATED ALWAYS AS (make_timestamp(CAST(created_at * 1e6 AS BIGINT))) VIRTUAL,
    started TIMESTAMP GENERATED ALWAYS AS (make_timestamp(CAST(started_at * 1e6 AS BIGINT))) VIRTUAL,
    finished TIMESTAMP GENERATED ALWAYS AS (make_timestamp(CAST(finished_at * 1e6 AS BIGINT))) VIRTUAL,
    duration_ms DOUBLE GENERATED ALWAYS AS ((finished_at - started_at) * 1000) VIRTUAL
);

-- One row per attempt: a retried step keeps every attempt, in the order they started.
CREATE TABLE steps (
    run_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    step_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    args JSON,
    result JSON,
    error JSON,
    started_at DOUBLE NOT NULL,
    finished_at DOUBLE,
    detail JSON,
    started TIMESTAMP GENERATED ALWAYS AS (make_timestamp(CAST(started_at * 1e6 AS BIGINT))) VIRTUAL,
    finished TIMESTAMP GENERATED ALWAYS AS (make_timestamp(CAST(finished_at * 1e6 AS BIGINT))) VIRTUAL,
    duration_ms DOUBLE GENERATED ALWAYS AS ((finished_at - started_at) * 1000) VIRTUAL,
    PRIMARY KEY (run_id, key, attempt)
);

-- No primary key: `seq` is assigned by the caller and logs are append-only, so a unique
-- index would only slow the busiest table down.
CREATE TABLE logs (
    run_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    stream VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    "at" DOUBLE NOT NULL,
    logged TIMESTAMP GENERATED ALWAYS AS (make_timestamp(CAST("at" * 1e6 AS BIGINT))) VIRTUAL
);

CREATE TABLE tokens_used (
    token_id VARCHAR PRIMARY KEY,
    used_at DOUBLE NOT NULL
);

CREATE TABLE step_cache (
    key VARCHAR PRIMARY KEY,
    value JSON NOT NULL,
    expires_at DOUBLE NOT NULL
);
