"""Run-store figures: durable records per second through `DuckDbStore`, and one write's latency.

- store_rows_per_s: run + step records per second written the way the engine writes
  them: every run's `create_run` and its steps' `record_step` awaited concurrently
  (10,000 runs x 5 steps; 1,000 with --quick). Counted when the last await returns,
  so every record is committed.
- store_commits / store_ops_per_commit: how many transactions that took (group commit).
- await_floor_rows_per_s: the same awaits resolved at once by a stand-in that stores
  nothing: what the event loop alone allows here, the ceiling for store_rows_per_s.
- store_bulk_rows_per_s: the same records through `write_many`, in chunks of 1,000 runs
  submitted together (one chunk is encoded while DuckDB writes the one before).
- store_write_p50_ms / p99_ms: one awaited `record_step` at a time (a lone caller, as a
  sequential flow is): queueing, one statement and one commit.
"""

from __future__ import annotations

import asyncio
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
            await _concurrent(store, _runs("warm", 200))  # warm-up: first statements, pages
            commits_before = store.commits
            runs = _runs("c", n_runs)
            seconds = await _concurrent(store, runs)
            commits = store.commits - commits_before
            latencies = await _sequential(store, 200 if quick else 1_000)
        async with DuckDbStore(Path(tmp) / "bulk.duckdb") as store:
            await _bulk(store, _runs("warm", 200))
            bulk_seconds = await _bulk(store, _runs("b", n_runs))
    floor_seconds = await _concurrent(_NoStore(), _runs("f", n_runs))
    records = n_runs * (1 + STEPS_PER_RUN)
    return {
        "store_rows_per_s": round(records / seconds),
        "store_commits": commits,
        "store_ops_per_commit": round(records / max(commits, 1), 1),
        "await_floor_rows_per_s": round(records / floor_seconds),
        "store_bulk_rows_per_s": round(records / bulk_seconds),
        "store_write_p50_ms": round(statistics.median(latencies), 2),
        "store_write_p99_ms": round(_percentile(latencies, 0.99), 2),
        "store_records": records,
    }


def _runs(prefix: str, n: int) -> list[tuple[RunRecord, list[StepRecord]]]:
    now = time.time()
    out = []
    for i in range(n):
        run_id = f"{prefix}-{i:06d}"
        run = RunRecord(
            id=run_id,
            kind="flow",
            path="f/bench/nightly",
            definition=DEFINITION,
            args={"n": i, "tags": ["a", "b"]},
            created_at=now + i * 1e-6,
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
        out.append((run, steps))
    return out


class _Writes(Protocol):
    def create_run(self, run: RunRecord) -> Awaitable[None]: ...

    def record_step(self, step: StepRecord) -> Awaitable[None]: ...


async def _concurrent(store: _Writes, runs: list[tuple[RunRecord, list[StepRecord]]]) -> float:
    async def one(run: RunRecord, steps: list[StepRecord]) -> None:
        await store.create_run(run)
        await asyncio.gather(*(store.record_step(step) for step in steps))

    start = time.perf_counter()
    await asyncio.gather(*(one(run, steps) for run, steps in runs))
    return time.perf_counter() - start


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

    def create_run(self, run: RunRecord) -> asyncio.Future[None]:
        return self._later()

    def record_step(self, step: StepRecord) -> asyncio.Future[None]:
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
