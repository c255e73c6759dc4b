-- 005: the last journal entry DuckDB holds (flows/duckdb_journal.py). The transaction
-- that applies journaled writes sets it, so a restart applies only the entries after it.
CREATE TABLE journal_applied (seq BIGINT NOT NULL);
INSERT INTO journal_applied VALUES (0);
