-- 003: script runs (their language) and runs that must not start twice (a schedule's
-- fire, named by its dedupe key). No index on either: every index costs each insert of
-- the busiest table, and the key is looked up once per schedule fire (a scan of the
-- runs table's one column). The one process that owns the store checks the key before
-- it inserts, so no unique constraint is needed to keep one run per key.

ALTER TABLE runs ADD COLUMN language VARCHAR DEFAULT '';
ALTER TABLE runs ADD COLUMN dedupe_key VARCHAR;
