-- 002: find a run's steps and logs without scanning the whole history.
--
-- Run ids are random, so DuckDB's min/max zone maps cannot skip anything: reading one
-- run's logs from 2 million lines took ~33 ms as a scan and ~4 ms through this index
-- (measured on the 2-core machine), and the scan grows with the history. The price is
-- paid on insert, where batches amortise it.

CREATE INDEX steps_by_run ON steps (run_id);
CREATE INDEX logs_by_run ON logs (run_id);
