"""Run-store figures: durable records per second through `DuckDbStore`, and one write's latency.

- store_rows_per_s: run + step records per second written the way the engine writes
  them: 1,000 flow runs in flight at any time, each `create_run` (a fresh id) and then
  its 5 steps' first `record_step` awaited together, as parallel steps are; a writer
  that finishes a run takes the next (10,000 runs in all, their records made before the
  clock starts; 1,000 with --quick). Counted when the last await returns, so every
  record is durable. The records made beforehand are frozen out of the garbage
  collector (`gc.freeze`) while the clock runs: 60,000 records and their dicts are the
  harness's, not the store's, and each full collection walking them costs about 100 ms
  here (6 or 7 of them: 40 % of the time). The store's own objects are collected as usual.
- store_rows_per_s_inputs_walked: the same with those records left to the collector,
  for comparison with earlier figures.
- store_commits / store_ops_per_commit: how many durable group commits that took
  (journal syncs and DuckDB transactions).
- await_floor_rows_per_s: the same awaits resolved at once by a stand-in that stores
  nothing (its inputs frozen the same way): what the event loop alone allows here,
  the ceiling for store_rows_per_s.
- store_bulk_rows_per_s: the same records through `write_many`, in chunks of 1,000 runs
  submitted together (one chunk is encoded while DuckDB writes the one before).
- store_write_p50_ms / p99_ms: one awaited `record_step` at a time (a lone caller, as a
  sequential flow is): queueing, one statement and one commit.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from flows.duckdb_store import DuckDbStore
from flows.records import RunRecord, StepRecord

STEPS_PER_RUN = 5
DEFINITION = "steps:\n  - id: fetch\n    python: |\n      def main(n: int):\n          return n\n"


async def run(quick: bool = False) -> dict[str, Any]:
    n_runs = 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="gm-bench-store-") as tmp:
        async with DuckDbStore(Path(tmp) / "concurrent.duckdb") as store:
            await _concurrent(store, "warm", 200)  # warm-up: first statements, pages
            commits_before = store.commits
            seconds = await _concurrent(store, "c", n_runs)
            commits = store.commits - commits_before
            walked_seconds = await _concurrent(store, "w", n_runs, freeze=False)
            latencies = await _sequential(store, 200 if quick else 1_000)
        async with DuckDbStore(Path(tmp) / "bulk.duckdb") as store:
            await _bulk(store, _runs("warm", 200))
            bulk_seconds = await _bulk(store, _runs("b", n_runs))
    floor_seconds = await _concurrent(_NoStore(), "f", n_runs)
    records = n_runs * (1 + STEPS_PER_RUN)
    return {
        "store_rows_per_s": round(records / seconds),
        "store_rows_per_s_inputs_walked": round(records / walked_seconds),
        "store_commits": commits,
        "store_ops_per_commit": round(records / max(commits, 1), 1),
        "await_floor_rows_per_s": round(records / floor_seconds),
        "store_bulk_rows_per_s": round(records / bulk_seconds),
        "store_write_p50_ms": round(statistics.median(latencies), 2),
        "store_write_p99_ms": round(_percentile(latencies, 0.99), 2),
        "store_records": records,
    }


def _runs(prefix: str, n: int) -> list[tuple[RunRecord, list[StepRecord]]]:
    return [_run(prefix, i) for i in range(n)]


def _run(prefix: str, i: int) -> tuple[RunRecord, list[StepRecord]]:
    """The records of run `i`: the run and its steps' first attempts."""
    now = time.time()
    run_id = f"{prefix}-{i:06d}"
    run = RunRecord(
        id=run_id,
        kind="flow",
        path="f/bench/nightly",
        definition=DEFINITION,
        args={"n": i, "tags": ["a", "b"]},
        created_at=now,
    )
    steps = [
        StepRecord(
            run_id=run_id,
            key=f"s{j}",
            step_id=f"s{j}",
            kind="python",
            status="success",
            args={"n": i},
            result={"rows": [i, j], "ok": True},
            started_at=now + j * 0.001,
            finished_at=now + j * 0.001 + 0.0005,
        )
        for j in range(STEPS_PER_RUN)
    ]
    return run, steps


class _Writes(Protocol):
    def create_run(self, run: RunRecord, *, new_id: bool = False) -> Awaitable[None]: ...

    def record_step(self, step: StepRecord, *, new: bool = False) -> Awaitable[None]: ...


IN_FLIGHT = 1_000


async def _concurrent(store: _Writes, prefix: str, n_runs: int, *, freeze: bool = True) -> float:
    runs = iter(_runs(prefix, n_runs))  # made beforehand: what is timed is the store
    if freeze:  # see the module's docstring
        gc.collect()
        gc.freeze()

    async def writer() -> None:
        for run, steps in runs:  # shared: each writer takes the next run
            await store.create_run(run, new_id=True)
            await asyncio.gather(*(store.record_step(step, new=True) for step in steps))

    start = time.perf_counter()
    try:
        await asyncio.gather(*(writer() for _ in range(min(IN_FLIGHT, n_runs))))
        return time.perf_counter() - start
    finally:
        gc.unfreeze()


async def _bulk(store: DuckDbStore, runs: list[tuple[RunRecord, list[StepRecord]]]) -> float:
    async def chunk(part: list[tuple[RunRecord, list[StepRecord]]]) -> None:
        await store.write_many([r for r, _ in part], [s for _, steps in part for s in steps])

    start = time.perf_counter()
    await asyncio.gather(*(chunk(runs[i : i + 1_000]) for i in range(0, len(runs), 1_000)))
    return time.perf_counter() - start


class _NoStore:
    """Resolves each await on the next loop turn, as the writer thread would, storing
    nothing: the cost of the awaits themselves. Its writes return futures, as
    `DuckDbStore`'s do, so the floor stays a fair ceiling for the same call shape."""

    def __init__(self) -> None:
        self._pending: list[asyncio.Future[None]] = []

    def create_run(self, run: RunRecord, *, new_id: bool = False) -> asyncio.Future[None]:
        return self._later()

    def record_step(self, step: StepRecord, *, new: bool = False) -> asyncio.Future[None]:
        return self._later()

    def _later(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._settle)
        future = loop.create_future()
        self._pending.append(future)
        return future

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.set_result(None)


async def _sequential(store: DuckDbStore, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        step = StepRecord(run_id="seq", key=f"s{i}", step_id="s", kind="python", started_at=i)
        start = time.perf_counter()
        await store.record_step(step)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
