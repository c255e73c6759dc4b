"""`DuckDbStore` on real DuckDB files: round trips, the queue, durability, locking, user SQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest

from flows.duckdb_schema import migrations
from flows.duckdb_store import DuckDbStore
from flows.duckdb_tables import dumps, encode_json
from flows.errors import StoreError
from flows.records import LogRecord, RunRecord, StepRecord

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Values that JSON columns must give back exactly: big ints stay ints, floats keep
# their digits, nesting and None survive, text is not mangled.
AWKWARD = {
    "big": 2**70,
    "neg": -7,
    "float": 0.1,
    "tiny": 5e-324,
    "nested": [1, [2, {"three": None}], {"t": True, "f": False}],
    "text": 'quote " backslash \\ newline \n tab \t é ✓ \u2028',
    "empty": {},
}


def with_store(path: Path, body: Callable[[DuckDbStore], Awaitable[T]]) -> T:
    """Open a store on `path`, run `body` with it, close it."""

    async def go() -> T:
        async with DuckDbStore(path) as store:
            return await body(store)

    return asyncio.run(go())


def a_run(run_id: str, **fields: Any) -> RunRecord:
    fields.setdefault("created_at", 1000.0)
    return RunRecord(id=run_id, kind="flow", path="f/demo/flow", definition="steps: []", **fields)


def a_step(run_id: str, key: str, **fields: Any) -> StepRecord:
    return StepRecord(
        run_id=run_id, key=key, step_id=key.rsplit("/", 1)[-1], kind="python", **fields
    )


def in_subprocess(path: Path, sql: str) -> subprocess.CompletedProcess[str]:
    """Open the store in another Python process and run `sql` there (exit 3: StoreError)."""
    script = (
        "import asyncio, json, sys\n"
        "from pathlib import Path\n"
        "from flows.duckdb_store import DuckDbStore\n"
        "from flows.errors import StoreError\n"
        "async def main():\n"
        "    async with DuckDbStore(Path(sys.argv[1])) as store:\n"
        "        print(json.dumps((await store.query(sys.argv[2]))[1]))\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script, str(path), sql],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


# ---------------------------------------------------------------------- round trips


def test_a_run_keeps_every_field(tmp_path: Path) -> None:
    full = RunRecord(
        id="r-full",
        kind="script",
        path="u/ada/report",
        definition="def main(n: int):\n    return n\n",
        args=AWKWARD,
        status="failure",
        result=[AWKWARD, 3, "x"],
        error={"message": "boom", "retryable": False, "trace": ["a", "b"]},
        recovered=True,
        trigger="webhook",
        actor="ada",
        priority=-3,
        concurrency_key="reports",
        concurrency_limit=2,
        parent_run_id="r-parent",
        created_at=1700000000.123456,
        started_at=1700000001.5,
        finished_at=1700000002.25,
        wake_at=1700000100.0,
        worker="host:123",
        heartbeat_at=1700000001.75,
    )
    plain = a_run("r-plain")  # every default: args {}, result None, no times

    async def body(store: DuckDbStore) -> None:
        await store.create_run(full)
        await store.create_run(plain)
        assert await store.get_run("r-full") == full
        assert await store.get_run("r-plain") == plain
        assert await store.get_run("nope") is None

    with_store(tmp_path / "runs.duckdb", body)

    async def reread(store: DuckDbStore) -> list[RunRecord | None]:
        return [await store.get_run("r-full"), await store.get_run("r-plain")]

    assert with_store(tmp_path / "runs.duckdb", reread) == [full, plain]


def test_steps_and_logs_keep_every_field(tmp_path: Path) -> None:
    step = StepRecord(
        run_id="r1",
        key="each/3/show",
        step_id="show",
        kind="for_each",
        attempt=2,
        status="waiting",
        args={"x": AWKWARD},
        result=AWKWARD["nested"],
        error={"message": "nope"},
        started_at=12.5,
        finished_at=13.75,
        detail={"approvers": ["ada"], "payload": None, "deadline": 99.5},
    )
    bare = a_step("r1", "fetch")
    logs = [
        LogRecord("r1", "fetch", 0, "stdout", "hello\n", 1.25),
        LogRecord("r1", "fetch", 1, "stderr", "warn ✓\n", 1.5),
        LogRecord("r1", "each/3/show", 2, "display", "<b>x</b>", 2.0),
        LogRecord("r1", "", 3, "system", "", 0.0),
    ]

    async def body(store: DuckDbStore) -> tuple[list[StepRecord], list[LogRecord]]:
        await store.record_step(step)
        await store.record_step(bare)
        await store.append_logs(logs)
        await store.append_logs([])
        return await store.steps("r1"), await store.logs("r1")

    steps, read_logs = with_store(tmp_path / "runs.duckdb", body)
    assert steps == [bare, step]  # bare started at 0.0, so first
    assert read_logs == logs


def test_values_that_are_not_json_are_refused_by_the_call(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        with pytest.raises(StoreError, match=r"record_step 'r1' 'fetch' attempt 1: result"):
            await store.record_step(a_step("r1", "fetch", result=float("nan")))
        with pytest.raises(StoreError, match="args is not JSON"):
            await store.create_run(a_run("r1", args={"when": object()}))
        with pytest.raises(StoreError, match="error is not JSON"):
            await store.update_run("r1", error={"x": float("inf")})
        with pytest.raises(StoreError, match="a run has no field colour"):
            await store.update_run("r1", colour="red")
        with pytest.raises(StoreError, match="write_many: result is not JSON"):
            await store.write_many([], [a_step("r1", "x", result={1, 2})])
        assert await store.steps("r1") == []
        assert await store.get_run("r1") is None

    with_store(tmp_path / "runs.duckdb", body)


def test_calls_are_queued_when_made_and_refusals_raise_at_the_await(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        created = store.create_run(a_run("r1"))
        assert asyncio.isfuture(created)  # queued already: no Task, no coroutine
        refused = store.record_step(a_step("r1", "a", result={"x": object()}))
        await created
        with pytest.raises(StoreError, match="result is not JSON"):
            await refused
        loop = asyncio.get_running_loop()

        def elsewhere() -> RunRecord | None:
            """A thread with no event loop hands the call to the store's loop."""
            return asyncio.run_coroutine_threadsafe(store.get_run("r1"), loop).result(30)

        assert await asyncio.to_thread(elsewhere) == a_run("r1")
        assert await store.steps("r1") == []

    with_store(tmp_path / "runs.duckdb", body)


@pytest.mark.parametrize(
    "value",
    [AWKWARD, "é\n", 1.5, -0.0, 10**30, None, [], {1: "int key", None: 0, False: 1, 2.5: "f"}],
)
def test_json_text_is_what_json_dumps_writes(value: Any) -> None:
    assert encode_json(value) == json.dumps(value, allow_nan=False, separators=(",", ":"))


def test_json_text_refuses_what_json_dumps_refuses() -> None:
    circular: list[Any] = []
    circular.append(circular)
    for value, error in [
        (circular, "Circular reference detected"),
        (float("nan"), "Out of range float values"),
        ({"when": object()}, "Object of type object is not JSON serializable"),
        ({(1, 2): "tuple key"}, "keys must be str, int, float, bool or None"),
    ]:
        with pytest.raises((TypeError, ValueError), match=error):
            encode_json(value)
    with pytest.raises(StoreError, match="r1: args is not JSON \\(Circular reference"):
        dumps(circular, "r1", "args")


# ---------------------------------------------------------------------- runs


def test_update_run_changes_only_the_given_fields(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("r1", args={"n": 1}))
        await store.update_run("r1", status="running", started_at=5.0, worker="w1")
        await store.update_run("r1", status="success", result={"rows": [1, 2]}, finished_at=6.5)
        await store.update_run("r1", error=None, recovered=True)
        await store.update_run("r1")  # nothing to change
        await store.update_run("ghost", status="failure")  # no such run: nothing happens
        want = a_run(
            "r1",
            args={"n": 1},
            status="success",
            result={"rows": [1, 2]},
            recovered=True,
            started_at=5.0,
            finished_at=6.5,
            worker="w1",
        )
        assert await store.get_run("r1") == want
        assert await store.get_run("ghost") is None

    with_store(tmp_path / "runs.duckdb", body)


def test_writes_in_one_batch_apply_in_call_order(tmp_path: Path) -> None:
    """Creates, updates and reads queued together behave as if run one by one."""

    async def body(store: DuckDbStore) -> None:
        results = await asyncio.gather(
            store.update_run("r1", status="failure"),  # before the run exists: no effect
            store.create_run(a_run("r1")),
            store.update_run("r1", status="running", worker="w"),
            store.get_run("r1"),
            store.update_run("r1", result=[1]),
            store.record_step(a_step("r1", "a", status="running")),
            store.record_step(a_step("r1", "a", status="success", result=7)),
            store.steps("r1"),
            store.create_run(a_run("r2")),
            store.update_run("r2", priority=4),
        )
        assert results[3] == a_run("r1", status="running", worker="w")
        assert results[7] == [a_step("r1", "a", status="success", result=7)]
        assert await store.get_run("r1") == a_run("r1", status="running", worker="w", result=[1])
        assert await store.get_run("r2") == a_run("r2", priority=4)

    with_store(tmp_path / "runs.duckdb", body)


def test_list_runs_newest_first_with_status_and_pages(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        for i in range(7):
            status = "success" if i % 2 else "queued"
            await store.create_run(a_run(f"r{i}", created_at=100.0 + i, status=status))
        newest = [r.id for r in await store.list_runs()]
        assert newest == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
        assert [r.id for r in await store.list_runs(status="success")] == ["r5", "r3", "r1"]
        assert [r.id for r in await store.list_runs(limit=3)] == ["r6", "r5", "r4"]
        assert [r.id for r in await store.list_runs(limit=3, offset=3)] == ["r3", "r2", "r1"]
        assert [r.id for r in await store.list_runs(limit=3, offset=6)] == ["r0"]
        assert await store.list_runs(status="cancelled") == []

    with_store(tmp_path / "runs.duckdb", body)


def test_claim_takes_highest_priority_then_oldest(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("old-low", created_at=1.0))
        await store.create_run(a_run("new-high", created_at=3.0, priority=5))
        await store.create_run(a_run("old-high", created_at=2.0, priority=5))
        await store.create_run(a_run("done", created_at=0.5, priority=9, status="success"))
        await store.create_run(
            a_run("resumed", created_at=0.1, status="suspended", wake_at=1.0, started_at=0.2)
        )
        claimed = [await store.claim("w1", now=50.0) for _ in range(5)]
        assert [run.id if run else None for run in claimed] == [
            "old-high",
            "new-high",
            "resumed",
            "old-low",
            None,
        ]
        first = claimed[0]
        assert first is not None
        assert (first.status, first.worker, first.heartbeat_at, first.started_at) == (
            "running",
            "w1",
            50.0,
            50.0,
        )
        resumed = claimed[2]
        assert resumed is not None and resumed.started_at == 0.2  # it had started before
        assert await store.get_run("old-high") == first

    with_store(tmp_path / "runs.duckdb", body)


def test_claim_honours_the_concurrency_limit(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(
            a_run("k1", created_at=1.0, concurrency_key="k", concurrency_limit=2)
        )
        await store.create_run(
            a_run("k2", created_at=2.0, concurrency_key="k", concurrency_limit=2)
        )
        await store.create_run(
            a_run("k3", created_at=3.0, concurrency_key="k", concurrency_limit=2)
        )
        await store.create_run(a_run("free", created_at=4.0))
        got = [await store.claim("w", now=10.0) for _ in range(4)]
        assert [run.id if run else None for run in got] == ["k1", "k2", "free", None]
        await store.update_run("k1", status="success", worker=None)
        third = await store.claim("w", now=11.0)
        assert third is not None and third.id == "k3"

    with_store(tmp_path / "runs.duckdb", body)


def test_claim_wakes_suspended_runs_only_when_due(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("sleeper", status="suspended", wake_at=100.0))
        await store.create_run(a_run("approval", status="suspended"))  # no wake_at: waits
        assert await store.claim("w", now=99.9) is None
        woke = await store.claim("w", now=100.0)
        assert woke is not None and woke.id == "sleeper" and woke.status == "running"
        assert await store.claim("w", now=10_000.0) is None

    with_store(tmp_path / "runs.duckdb", body)


def test_concurrent_claims_never_share_a_run(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        for i in range(20):
            await store.create_run(a_run(f"r{i:02d}", created_at=float(i)))
        got = await asyncio.gather(*(store.claim(f"w{i}", now=1.0) for i in range(30)))
        ids = [run.id for run in got if run is not None]
        assert sorted(ids) == [f"r{i:02d}" for i in range(20)]

    with_store(tmp_path / "runs.duckdb", body)


def test_recover_requeues_running_runs(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        for run_id, status in [("a", "running"), ("b", "queued"), ("c", "running")]:
            await store.create_run(a_run(run_id, status=status, worker="dead:1"))
        await store.create_run(a_run("d", status="success"))

    with_store(tmp_path / "runs.duckdb", body)

    async def after_restart(store: DuckDbStore) -> None:
        assert await store.recover(now=5.0) == ["a", "c"]
        run = await store.get_run("a")
        assert run is not None and (run.status, run.worker) == ("queued", None)
        b = await store.get_run("b")
        assert b is not None and b.worker == "dead:1"  # untouched
        assert await store.recover(now=6.0) == []

    with_store(tmp_path / "runs.duckdb", after_restart)


# ---------------------------------------------------------------------- steps, logs


def test_steps_keep_every_attempt_in_start_order(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> list[tuple[str, int, str]]:
        await store.record_step(a_step("r", "fetch", started_at=1.0))
        await store.record_step(a_step("r", "fetch", started_at=1.0, status="failure"))
        await store.record_step(a_step("r", "fetch", attempt=2, started_at=3.0))
        await store.record_step(a_step("r", "each/0/show", started_at=2.0, status="success"))
        await store.record_step(a_step("r", "fetch", attempt=2, started_at=3.0, status="success"))
        await store.record_step(a_step("other", "fetch", started_at=0.5))
        return [(s.key, s.attempt, s.status) for s in await store.steps("r")]

    assert with_store(tmp_path / "runs.duckdb", body) == [
        ("fetch", 1, "failure"),
        ("each/0/show", 1, "success"),
        ("fetch", 2, "success"),
    ]


def test_logs_from_an_offset(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.append_logs([LogRecord("r", "a", i, "stdout", f"line {i}\n") for i in range(3)])
        await store.append_logs([LogRecord("r", "b", i, "stderr", f"err {i}\n") for i in (4, 3)])
        await store.append_logs([LogRecord("other", "a", 0, "stdout", "x")])
        assert [log.seq for log in await store.logs("r")] == [0, 1, 2, 3, 4]
        assert [log.text for log in await store.logs("r", offset=3)] == ["err 3\n", "err 4\n"]
        assert await store.logs("r", offset=5) == []
        assert await store.logs("nobody") == []

    with_store(tmp_path / "runs.duckdb", body)


# ---------------------------------------------------------------------- tokens, cache


def test_a_token_is_used_once_even_across_reopen(tmp_path: Path) -> None:
    async def first(store: DuckDbStore) -> list[bool]:
        return [
            await store.use_token("t1", now=1.0),
            await store.use_token("t1", now=2.0),
            *await asyncio.gather(store.use_token("t2", 3.0), store.use_token("t2", 3.0)),
        ]

    assert with_store(tmp_path / "runs.duckdb", first) == [True, False, True, False]

    async def second(store: DuckDbStore) -> list[bool]:
        return [await store.use_token("t1", now=9.0), await store.use_token("t3", now=9.0)]

    assert with_store(tmp_path / "runs.duckdb", second) == [False, True]


def test_cache_entries_expire(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        assert await store.cache_get("k", now=0.0) == (False, None)
        await store.cache_put("k", AWKWARD, expires_at=10.0)
        assert await store.cache_get("k", now=9.99) == (True, AWKWARD)
        assert await store.cache_get("k", now=10.0) == (False, None)
        await store.cache_put("k", [1], expires_at=20.0)  # replaces
        assert await store.cache_get("k", now=10.0) == (True, [1])
        await store.cache_put("none", None, expires_at=20.0)  # a cached None is a hit
        assert await store.cache_get("none", now=1.0) == (True, None)

    with_store(tmp_path / "runs.duckdb", body)


# ---------------------------------------------------------------------- the writer


def test_group_commit_serves_many_awaits_with_few_commits(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> tuple[int, tuple[Any, ...]]:
        before = store.commits
        await asyncio.gather(
            *(
                store.record_step(a_step(f"r{i % 7}", f"s{i}", result={"i": i}, started_at=i))
                for i in range(2000)
            )
        )
        commits = store.commits - before
        counts = await store.query("select count(*), sum((result->>'i')::int) from steps")
        return commits, counts[1][0]

    commits, counts = with_store(tmp_path / "runs.duckdb", body)
    assert counts == (2000, sum(range(2000)))
    assert 1 <= commits <= 50, commits


def test_a_bad_operation_fails_alone(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("taken"))
        outcomes = await asyncio.gather(
            *(store.create_run(a_run(f"ok{i}")) for i in range(5)),
            store.create_run(a_run("taken")),
            *(store.record_step(a_step("taken", f"s{i}")) for i in range(5)),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if o is not None]
        assert len(errors) == 1 and isinstance(errors[0], StoreError)
        assert "create_run 'taken'" in str(errors[0]) and "Duplicate key" in str(errors[0])
        assert len(await store.list_runs()) == 6
        assert len(await store.steps("taken")) == 5
        await store.create_run(a_run("after"))  # the writer keeps serving

    with_store(tmp_path / "runs.duckdb", body)


def test_write_many_inserts_and_replaces(tmp_path: Path) -> None:
    runs = [a_run(f"r{i}", args={"i": i, "x": AWKWARD}, created_at=float(i)) for i in range(300)]
    steps = [
        a_step(f"r{i}", f"s{j}", result=[i, j], started_at=j) for i in range(300) for j in range(3)
    ]

    async def body(store: DuckDbStore) -> None:
        await store.write_many(runs, steps)
        await store.write_many(
            [a_run("r0", status="success")], [a_step("r0", "s0", status="failure")]
        )
        await store.write_many([], [])
        assert await store.get_run("r1") == runs[1]
        assert await store.get_run("r0") == a_run("r0", status="success")
        assert await store.steps("r2") == steps[6:9]
        assert [s.status for s in await store.steps("r0")] == ["failure", "running", "running"]
        _, rows = await store.query(
            "select count(*) from runs union all select count(*) from steps"
        )
        assert rows == [(300,), (900,)]

    with_store(tmp_path / "runs.duckdb", body)


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    async def body() -> None:
        store = DuckDbStore(tmp_path / "runs.duckdb")
        with pytest.raises(StoreError, match="not open"):
            await store.get_run("x")
        async with store:
            await store.create_run(a_run("x"))
        with pytest.raises(StoreError, match="not open"):
            await store.get_run("x")
        await store.close()  # twice is fine

    asyncio.run(body())


# ---------------------------------------------------------------------- the file


def test_awaited_writes_survive_reopen_and_another_process(tmp_path: Path) -> None:
    path = tmp_path / "data" / "runs.duckdb"  # the directory is created

    async def write(store: DuckDbStore) -> None:
        await asyncio.gather(*(store.create_run(a_run(f"r{i}", args=AWKWARD)) for i in range(50)))
        await store.record_step(a_step("r1", "fetch", result=AWKWARD))
        await store.update_run("r1", status="success")
        await store.append_logs([LogRecord("r1", "fetch", 0, "stdout", "hi")])

    with_store(path, write)

    async def read(store: DuckDbStore) -> tuple[RunRecord | None, list[StepRecord], int]:
        return await store.get_run("r1"), await store.steps("r1"), len(await store.list_runs())

    run, steps, count = with_store(path, read)
    assert run == a_run("r1", args=AWKWARD, status="success") and count == 50
    assert steps == [a_step("r1", "fetch", result=AWKWARD)]

    done = in_subprocess(
        path,
        "select (select count(*) from runs), (select status from runs where id = 'r1'), "
        "(select result from steps), (select text from logs)",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == [[50, "success", json.loads(json.dumps(AWKWARD)), "hi"]]


def test_a_second_process_is_told_the_file_is_in_use(tmp_path: Path) -> None:
    path = tmp_path / "runs.duckdb"

    async def body(store: DuckDbStore) -> subprocess.CompletedProcess[str]:
        await store.create_run(a_run("r1"))
        return await asyncio.to_thread(in_subprocess, path, "select 1")

    done = with_store(path, body)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"the run store {path} is in use by another Gristmill process (pid {os.getpid()}); "
        "stop it or use another --data directory"
    )


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.duckdb"
    shipped = [(version, name) for version, name, _ in migrations()]
    assert shipped[0] == (1, "initial")

    async def applied(store: DuckDbStore) -> list[tuple[Any, ...]]:
        return (await store.query("select version, name from schema_migrations order by 1"))[1]

    assert with_store(path, applied) == shipped
    assert with_store(path, applied) == shipped  # reopening applies nothing again


def test_a_file_the_code_does_not_match_is_refused(tmp_path: Path) -> None:
    newer, odd = tmp_path / "newer.duckdb", tmp_path / "odd.duckdb"
    with_store(newer, DuckDbStore.close)
    with duckdb.connect(str(newer)) as con:
        con.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="schema version 999, newer than this Gristmill"):
        with_store(newer, DuckDbStore.close)

    with duckdb.connect(str(odd)) as con:  # marked migrated, but made by hand
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER, name VARCHAR, applied_at DOUBLE);"
            "CREATE TABLE runs (id VARCHAR);"
        )
        for version, name, _ in migrations():
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", [version, name])
    with pytest.raises(StoreError, match="table runs lacks kind VARCHAR, path VARCHAR"):
        with_store(odd, DuckDbStore.close)


# ---------------------------------------------------------------------- user SQL


@pytest.mark.parametrize(
    "sql",
    [
        "insert into runs (id) values ('x')",
        "delete from steps",
        "update runs set status = 'success'",
        "copy runs to 'out.csv'",
        "attach 'other.duckdb' as other",
        "drop table logs",
        "select 1; delete from runs",
        "with gone as (delete from runs returning *) select * from gone",
        "set enable_external_access = true",
        "pragma database_list",
    ],
)
def test_query_refuses_anything_but_reading(tmp_path: Path, sql: str) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("r1"))
        with pytest.raises(StoreError):
            await store.query(sql)
        assert await store.get_run("r1") == a_run("r1")

    with_store(tmp_path / "runs.duckdb", body)


def test_query_reads_history_with_friendly_values(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("r1", args={"n": 2**70}, created_at=0.5))
        await store.record_step(
            a_step("r1", "fetch", started_at=10.0, finished_at=10.25, result={"rows": [1]})
        )
        await store.record_step(
            a_step("r1", "fetch", attempt=2, started_at=11.0, finished_at=11.75)
        )

        columns, rows = await store.query("select key, avg(duration_ms) from steps group by 1")
        assert (columns, rows) == (["key", "avg(duration_ms)"], [("fetch", 500.0)])
        assert (await store.query("select count(*) from steps"))[1] == [(2,)]
        _, rows = await store.query(
            "select created, runs.args, runs.args->'n', steps.started, 1.5::decimal(4, 2), "
            "'nan'::double "
            "from runs join steps on steps.run_id = runs.id where attempt = 1"
        )
        assert rows == [
            ("1970-01-01T00:00:00.500000", {"n": 2**70}, 2**70, "1970-01-01T00:00:10", 1.5, None)
        ]
        _, rows = await store.query(
            "select '2020-01-01 10:00:00+02'::timestamptz, ['2020-01-01 10:00:00+00'::timestamptz]"
        )
        assert rows == [("2020-01-01T08:00:00.000000Z", ["2020-01-01 10:00:00+00"])]
        assert (await store.query("values (1, 'a'), (2, 'b')"))[1] == [(1, "a"), (2, "b")]
        _, rows = await store.query("with x as (select 41 as n) select n + 1 from x")
        assert rows == [(42,)]

    with_store(tmp_path / "runs.duckdb", body)


def test_query_errors_say_what_duckdb_said(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> None:
        with pytest.raises(StoreError, match="nope"):
            await store.query("select * from nope")
        with pytest.raises(StoreError, match="read_csv"):
            await store.query("select * from read_csv('/etc/passwd')")
        with pytest.raises(StoreError):
            await store.query("selec 1")
        await store.create_run(a_run("still-fine"))  # the writer keeps serving

    with_store(tmp_path / "runs.duckdb", body)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("select * from read_csv('/etc/passwd')", "file system operations are disabled"),
        ("select * from read_text('runs.duckdb')", "file system operations are disabled"),
        ("insert into runs (id) values ('x')", "only one read-only statement"),
        ("select 1; delete from runs", "only one read-only statement"),
        ("with gone as (delete from runs returning *) select * from gone", "read-only mode"),
        ("set enable_external_access = true", "only one read-only statement"),
    ],
)
def test_duckdb_itself_holds_when_the_guard_lets_sql_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str, reason: str
) -> None:
    """Defence in depth: DuckDB's parser, a READ ONLY transaction, no external access."""
    monkeypatch.setattr("flows.sql.check_sql", lambda sql, mode="read": None)

    async def body(store: DuckDbStore) -> None:
        await store.create_run(a_run("r1"))
        with pytest.raises(StoreError, match=reason):
            await store.query(sql)
        assert await store.list_runs() == [a_run("r1")]

    with_store(tmp_path / "runs.duckdb", body)


def test_first_writes_and_transitions_take_the_fast_paths_and_stay_correct(tmp_path: Path) -> None:
    async def body(store: DuckDbStore) -> list[tuple[int, str]]:
        await store.record_step(a_step("r1", "a", attempt=1, status="running"), new=True)
        await store.record_step(a_step("r1", "a", attempt=1, status="success", result=1))  # UPDATE
        # A broken promise (a row exists) is caught and written carefully, not lost.
        await store.record_step(a_step("r1", "a", attempt=1, status="failure"), new=True)
        # Both in one batch: the later write of the attempt wins.
        await asyncio.gather(
            store.record_step(a_step("r1", "b", attempt=1, status="running"), new=True),
            store.record_step(a_step("r1", "b", attempt=1, status="success")),
        )
        return [(s.attempt, s.status) for s in await store.steps("r1")]

    assert sorted(with_store(tmp_path / "runs.duckdb", body)) == [(1, "failure"), (1, "success")]
    reopened = with_store(tmp_path / "runs.duckdb", lambda store: store.steps("r1"))
    assert {(s.key, s.status) for s in reopened} == {("a", "failure"), ("b", "success")}
