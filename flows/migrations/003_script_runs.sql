-- 003: script runs (their language) and runs that must not start twice (a schedule's
-- fire, named by its dedupe key). No unique index: the one process that owns the store
-- checks the key before it inserts, and a unique index would fail whole group commits.

ALTER TABLE runs ADD COLUMN language VARCHAR DEFAULT '';
ALTER TABLE runs ADD COLUMN dedupe_key VARCHAR;
CREATE INDEX runs_by_dedupe_key ON runs (dedupe_key);
CREATE INDEX runs_by_path ON runs (path);
