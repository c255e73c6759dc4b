-- 002: state a script keeps between its runs (`gristmill.get_state` / `set_state`),
-- keyed by the script's path or a key the script names.
CREATE TABLE state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
);
