"""The run store's journal end to end: writes acknowledged from it survive SIGKILL, are
read back at once, reach DuckDB exactly once, and a damaged journal stops the store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows import duckdb_writer
from flows.duckdb_journal import Journal
from flows.duckdb_store import DuckDbStore
from flows.duckdb_writer import APPLY_WHEN_QUIET_S, Writer
from flows.errors import StoreError
from flows.records import LogRecord, RunRecord, StepRecord

ROOT = Path(__file__).resolve().parents[2]

# Writes a run through DuckDB, then its steps, logs and end through the journal, says
# so, and waits to be killed.
WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from flows.duckdb_store import DuckDbStore
    from flows.records import LogRecord, RunRecord, StepRecord

    async def main():
        store = DuckDbStore(Path(sys.argv[1]))
        await store.__aenter__()
        await store.create_run(RunRecord(id="r1", kind="flow", path="f/a/b",
                                         definition="steps: []", created_at=1.0))
        await asyncio.gather(*(
            store.record_step(StepRecord(run_id="r1", key=f"s{i}", step_id=f"s{i}",
                                         kind="python", status="success", result=i,
                                         started_at=float(i), finished_at=i + 0.5), new=True)
            for i in range(3)
        ))
        await store.append_logs([LogRecord("r1", "s0", 1, "stdout", "hello", 2.0)])
        await store.finish_run("r1", [], status="success", result={"n": 3}, finished_at=9.0)
        print("acknowledged", flush=True)
        time.sleep(600)

    asyncio.run(main())
    """
)


def test_writes_acknowledged_from_the_journal_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "acknowledged"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert Path(f"{db}.journal").stat().st_size > 0  # acknowledged, not in DuckDB yet
    with duckdb.connect(str(db)) as con:  # DuckDB alone does not have them
        assert con.execute("SELECT count(*) FROM steps").fetchone() == (0,)

    async def reopened() -> tuple[RunRecord | None, list[StepRecord], list[LogRecord]]:
        async with DuckDbStore(db) as store:
            return await store.get_run("r1"), await store.steps("r1"), await store.logs("r1")

    run, steps, logs = asyncio.run(reopened())
    assert run is not None and run.status == "success" and run.result == {"n": 3}
    assert [(s.key, s.result) for s in steps] == [("s0", 0), ("s1", 1), ("s2", 2)]
    assert [log.text for log in logs] == ["hello"]
    assert Path(f"{db}.journal").stat().st_size == 0  # all of it in DuckDB now


def test_a_read_sees_every_acknowledged_write_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        async with DuckDbStore(tmp_path / "runs.duckdb") as store:
            await store.create_run(
                RunRecord(id="r", kind="flow", path="p", definition="steps: []", created_at=1.0)
            )
            for i in range(5):
                await store.record_step(
                    StepRecord(run_id="r", key=f"k{i}", step_id="k", kind="python", started_at=i),
                    new=True,
                )
                await store.update_run("r", status="running", progress=i)
                assert len(await store.steps("r")) == i + 1
                run = await store.get_run("r")
                assert run is not None and run.progress == i

    asyncio.run(go())


def test_entries_duckdb_already_holds_are_not_applied_twice(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    log = LogRecord("r", "s", 1, "stdout", "once", 1.0)

    async def write() -> None:
        async with DuckDbStore(db) as store:
            await store.append_logs([log])

    asyncio.run(write())
    # A crash after DuckDB committed the entry, before the journal was emptied:
    journal = Journal(Path(f"{db}.journal"))
    journal.open(applied=0)
    journal.append([("add_logs", ([("r", "s", 1, "stdout", "once", 1.0)],))])
    journal.close()

    async def read() -> list[LogRecord]:
        async with DuckDbStore(db) as store:
            return await store.logs("r")

    assert [entry.text for entry in asyncio.run(read())] == ["once"]


def test_writes_left_in_both_journal_segments_reach_duckdb_in_order(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    asyncio.run(_open_and_close(db))
    # A crash while the older segment's writes were going to DuckDB, with newer ones
    # already acknowledged from the other segment:
    journal = Journal(Path(f"{db}.journal"))
    journal.open(applied=0)
    journal.append([("add_logs", ([("r", "s", 1, "stdout", "first", 1.0)],))])
    journal.rotate()
    journal.append([("add_logs", ([("r", "s", 2, "stdout", "second", 2.0)],))])
    journal.close()

    async def read() -> list[LogRecord]:
        async with DuckDbStore(db) as store:
            return await store.logs("r")

    assert [entry.text for entry in asyncio.run(read())] == ["first", "second"]
    assert Path(f"{db}.journal").stat().st_size == 0
    assert Path(f"{db}.journal-2").stat().st_size == 0


def test_many_writes_go_to_duckdb_while_new_ones_are_acknowledged(tmp_path: Path) -> None:
    # Past 4,096 journaled writes, a thread of their own puts them in DuckDB and the
    # journal's other segment takes the next ones; every write is read back once.
    db = tmp_path / "runs.duckdb"
    logs = [LogRecord("r", "s", i, "stdout", f"line {i}", float(i)) for i in range(10_000)]

    async def go() -> list[LogRecord]:
        async with DuckDbStore(db) as store:
            await asyncio.gather(*(store.append_logs([log]) for log in logs))
            return await store.logs("r")

    assert [log.seq for log in asyncio.run(go())] == list(range(10_000))
    assert Path(f"{db}.journal-2").exists()  # the journal rotated
    assert Path(f"{db}.journal").stat().st_size == 0
    assert Path(f"{db}.journal-2").stat().st_size == 0


async def _open_and_close(db: Path) -> None:
    async with DuckDbStore(db):
        pass


def test_a_journal_entry_from_a_newer_version_stops_the_store_opening(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    journal = Journal(Path(f"{db}.journal"))
    journal.open(applied=0)
    journal.append([("compact_everything", ())])
    journal.close()
    written = Path(f"{db}.journal").read_bytes()

    async def open_it() -> None:
        async with DuckDbStore(db):
            pass

    with pytest.raises(StoreError, match=r"unknown write 'compact_everything' \(entry 1\)"):
        asyncio.run(open_it())
    assert Path(f"{db}.journal").read_bytes() == written


def test_without_a_journal_writes_go_straight_to_duckdb(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"

    async def go() -> None:
        async with DuckDbStore(db, journal=False) as store:
            await store.append_logs([LogRecord("r", "s", 1, "stdout", "x", 1.0)])

    asyncio.run(go())
    assert not Path(f"{db}.journal").exists()
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT count(*) FROM logs").fetchone() == (1,)


def test_steady_writes_wait_in_the_journal_and_reach_duckdb_when_traffic_stops(
    tmp_path: Path,
) -> None:
    # Applying a few hundred journaled writes takes tens of ms, during which nothing is
    # acknowledged: under steady traffic they wait (for APPLY_AT of them, applied on a
    # thread of their own), and a quiet moment puts them in DuckDB.
    db = tmp_path / "runs.duckdb"
    gap = APPLY_WHEN_QUIET_S / 5

    async def go() -> tuple[list[int], int, int]:
        async with DuckDbStore(db) as store:
            waiting = []
            for i in range(20):  # four quiet-periods' worth of traffic, never quiet
                await store.append_logs([LogRecord("r", "s", i, "stdout", f"line {i}", 1.0)])
                waiting.append(store.journaled)
                await asyncio.sleep(gap)
            await asyncio.sleep(APPLY_WHEN_QUIET_S * 3)
            after_quiet = store.journaled
            _, rows = await store.query("SELECT count(*) FROM logs")
            return waiting, after_quiet, rows[0][0]

    waiting, after_quiet, rows = asyncio.run(go())
    assert waiting == list(range(1, 21))
    assert after_quiet == 0
    assert rows == 20


def test_writes_whose_background_apply_failed_go_in_again_once_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first hand-over to the applying thread fails (a full disk, say): its writes
    # are the writer's again, ahead of newer ones, and reach DuckDB exactly once.
    monkeypatch.setattr(duckdb_writer, "APPLY_AT", 8)
    failed: list[int] = []
    commit = Writer._commit

    def fails_once_behind(
        self: Writer, con: duckdb.DuckDBPyConnection, entries: list[Any], seq: int
    ) -> StoreError | None:
        if threading.current_thread().name == "gristmill-store-apply" and not failed:
            failed.append(len(entries))
            return StoreError("the disk is full (a test)")
        return commit(self, con, entries, seq)

    monkeypatch.setattr(Writer, "_commit", fails_once_behind)
    db = tmp_path / "runs.duckdb"

    async def write_then_read() -> list[int]:
        async with DuckDbStore(db) as store:
            for i in range(20):
                await store.append_logs([LogRecord("r", "s", i, "stdout", f"line {i}", 1.0)])
            _, rows = await store.query("SELECT seq FROM logs ORDER BY rowid")
            return [row[0] for row in rows]

    assert asyncio.run(write_then_read()) == list(range(20))
    assert failed == [8]

    async def reopen() -> int:  # nothing left in the journal to apply twice
        async with DuckDbStore(db) as store:
            _, rows = await store.query("SELECT count(*) FROM logs")
            return int(rows[0][0])

    assert asyncio.run(reopen()) == 20
