"""The scheduler loop over fake sources and targets (the loop is what is under test) and
a manual clock, so no test waits for real time to pass."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flows.scheduler import FireTarget, RunOutcome, Scheduler, ScheduleSource, SkippedFire, fire_key
from flows.schedules import ScheduleSpec

T0 = 1_714_521_600.0  # 2024-05-01 00:00:00 UTC


class Source:
    """A schedule table in memory; `fail_set_last_fire_at` simulates a crash after submit."""

    def __init__(self, *specs: ScheduleSpec, created_at: float = T0) -> None:
        self.rows: dict[str, tuple[ScheduleSpec, float]] = {s.path: (s, created_at) for s in specs}
        self.last: dict[str, float] = {}
        self.fail_set_last_fire_at: int | None = None
        self.set_calls = 0

    def schedules(self) -> list[tuple[ScheduleSpec, float]]:
        return list(self.rows.values())

    def last_fire(self, path: str) -> float | None:
        return self.last.get(path)

    def set_last_fire(self, path: str, fire_at: float) -> None:
        self.set_calls += 1
        if self.set_calls == self.fail_set_last_fire_at:
            raise OSError("disk went away")
        self.last[path] = fire_at


class Target:
    """Starts fake runs, deduped on the fire key like the real target."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[str, float]] = {}  # run id -> (path, fire_at)
        self.keys: dict[str, str] = {}
        self.submits: list[tuple[str, float]] = []
        self.ends: dict[str, asyncio.Future[RunOutcome]] = {}
        self.handlers: list[tuple[str, dict[str, Any]]] = []
        self.block_submit: asyncio.Event | None = None
        self.block_after = 0

    async def submit(self, spec: ScheduleSpec, fire_at: float) -> str | None:
        self.submits.append((spec.path, fire_at))
        if self.block_submit is not None and len(self.submits) > self.block_after:
            await self.block_submit.wait()
        key = fire_key(spec.path, fire_at)
        if key in self.keys:
            return None
        run_id = f"run{len(self.runs) + 1}"
        self.keys[key] = run_id
        self.runs[run_id] = (spec.path, fire_at)
        self.ends[run_id] = asyncio.get_running_loop().create_future()
        return run_id

    async def is_running(self, run_id: str) -> bool:
        return not self.ends[run_id].done()

    async def latest_run(self, path: str) -> str | None:
        mine = [run_id for run_id, (p, _) in self.runs.items() if p == path]
        return max(mine, key=lambda run_id: self.runs[run_id][1]) if mine else None

    async def outcome(self, run_id: str) -> RunOutcome:
        return await asyncio.shield(self.ends[run_id])

    async def run_handler(self, handler_path: str, args: dict[str, Any]) -> None:
        self.handlers.append((handler_path, args))

    def finish(self, run_id: str, status: str = "success", error: str | None = None) -> None:
        self.ends[run_id].set_result(RunOutcome(status, error))  # type: ignore[arg-type]

    def fires(self) -> list[float]:
        return sorted(fire_at for _path, fire_at in self.runs.values())


class Clock:
    """Time stands still until the test moves it; `sleep` returns once it has moved."""

    def __init__(self, now: float) -> None:
        self.t = now
        self.sleeps: list[float] = []
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._moved.clear()
        await self._moved.wait()

    def move_to(self, t: float) -> None:
        self.t = t
        self._moved.set()


async def until(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Let the loop run until `condition()` holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.001)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=30))


def hourly(**options: Any) -> ScheduleSpec:
    return ScheduleSpec("f/ops/import", "0 * * * *", **options)


def test_fakes_match_the_protocols():
    source: ScheduleSource = Source()
    target: FireTarget = Target()
    assert source and target


def test_tick_submits_due_fire_then_records_it():
    async def test() -> None:
        source, target, clock = Source(hourly()), Target(), Clock(T0 + 3600 + 0.2)
        scheduler = Scheduler(source, target, now=clock.now, sleep=clock.sleep)
        await scheduler.tick()
        assert target.submits == [("f/ops/import", T0 + 3600)]
        assert source.last == {"f/ops/import": T0 + 3600}
        await scheduler.tick()
        assert len(target.submits) == 1  # handled fires are not due again

    run(test)


def test_loop_sleeps_until_the_next_fire_capped():
    async def test() -> None:
        every_2s = ScheduleSpec("u/a/tick", "*/2 * * * * *")
        source, target, clock = Source(every_2s, hourly()), Target(), Clock(T0 + 0.5)
        async with Scheduler(source, target, now=clock.now, sleep=clock.sleep, max_sleep=1.0):
            await until(lambda: clock.sleeps, "the loop to sleep")
            assert clock.sleeps == [1.0]  # next fire in 1.5 s: the cap wins
            clock.move_to(T0 + 1.5)
            await until(lambda: len(clock.sleeps) == 2, "the second sleep")
            assert clock.sleeps[1] == 0.5  # wakes right at T0 + 2
            clock.move_to(T0 + 2)
            await until(lambda: target.submits, "the fire at T0 + 2")
        assert target.submits == [("u/a/tick", T0 + 2)]

    run(test)


def test_restart_mid_catch_up_neither_doubles_nor_misses():
    async def test() -> None:
        spec = hourly(catch_up="all")
        source, target = Source(spec), Target()
        now = T0 + 6 * 3600 + 5  # down since T0: six fires missed
        source.fail_set_last_fire_at = 3  # the process dies after submitting the 3rd fire
        first = Scheduler(source, target, now=lambda: now)
        await first.tick()
        assert source.last["f/ops/import"] == T0 + 2 * 3600
        await first.close()

        second = Scheduler(source, target, now=lambda: now)
        await second.tick()
        assert target.fires() == [T0 + h * 3600 for h in range(1, 7)]
        assert target.submits.count(("f/ops/import", T0 + 3 * 3600)) == 2  # deduped by key
        assert source.last["f/ops/import"] == T0 + 6 * 3600
        await second.close()

    run(test)


def test_restart_while_a_submit_is_in_flight():
    async def test() -> None:
        source, target = Source(hourly(catch_up="all")), Target()
        clock = Clock(T0 + 4 * 3600 + 1)
        target.block_submit, target.block_after = asyncio.Event(), 2
        async with Scheduler(source, target, now=clock.now, sleep=clock.sleep):
            await until(lambda: len(target.submits) == 3, "the third submit to hang")
        # Closed (a restart) while the third submit hung: it never got a run.
        assert target.fires() == [T0 + 3600, T0 + 7200]
        target.block_submit = None
        async with Scheduler(source, target, now=clock.now, sleep=clock.sleep):
            await until(lambda: len(target.runs) == 4, "the catch-up to finish")
        assert target.fires() == [T0 + h * 3600 for h in range(1, 5)]

    run(test)


def test_no_overlap_skips_while_the_previous_run_runs():
    async def test() -> None:
        spec = ScheduleSpec("u/a/slow", "* * * * *", no_overlap=True)
        skipped: list[SkippedFire] = []
        source, target = Source(spec), Target()
        clock = Clock(T0 + 60)
        scheduler = Scheduler(source, target, now=clock.now, on_skip=skipped.append)
        await scheduler.tick()
        clock.t = T0 + 120
        await scheduler.tick()
        assert target.fires() == [T0 + 60]
        assert skipped == [SkippedFire("u/a/slow", T0 + 120, "run run1 is still running")]
        assert source.last["u/a/slow"] == T0 + 120  # the skipped fire is not queued for later
        target.finish("run1")
        clock.t = T0 + 180
        await scheduler.tick()
        assert target.fires() == [T0 + 60, T0 + 180]
        await scheduler.close()

    run(test)


def test_no_overlap_after_a_restart_knows_the_run_before_it():
    async def test() -> None:
        spec = ScheduleSpec("u/a/slow", "* * * * *", no_overlap=True)
        source, target = Source(spec), Target()
        clock = Clock(T0 + 60)
        first = Scheduler(source, target, now=clock.now)
        await first.tick()
        await first.close()  # the server stops; run1 goes on
        skipped: list[SkippedFire] = []
        second = Scheduler(source, target, now=clock.now, on_skip=skipped.append)
        clock.t = T0 + 120
        await second.tick()
        assert target.fires() == [T0 + 60]
        assert skipped == [SkippedFire("u/a/slow", T0 + 120, "run run1 is still running")]
        await second.close()

    run(test)


def test_overlap_allowed_by_default():
    async def test() -> None:
        source, target = Source(ScheduleSpec("u/a/slow", "* * * * *")), Target()
        clock = Clock(T0 + 60)
        scheduler = Scheduler(source, target, now=clock.now)
        await scheduler.tick()
        clock.t = T0 + 120
        await scheduler.tick()
        assert target.fires() == [T0 + 60, T0 + 120]
        await scheduler.close()

    run(test)


def test_failure_and_recovery_handlers():
    async def test() -> None:
        spec = ScheduleSpec(
            "u/a/job", "* * * * *", on_failure="u/a/alert", on_recovery="u/a/all_clear"
        )
        source, target, clock = Source(spec), Target(), Clock(T0)
        scheduler = Scheduler(source, target, now=clock.now)
        for minute, status in [
            (1, "success"),
            (2, "failure"),
            (3, "failure"),
            (4, "success"),
            (5, "success"),
        ]:
            clock.t = T0 + minute * 60
            await scheduler.tick()
            target.finish(f"run{minute}", status, "boom" if status == "failure" else None)
            await scheduler.wait_watchers()
        assert target.handlers == [
            (
                "u/a/alert",
                {"path": "u/a/job", "fire_at": T0 + 120, "run_id": "run2", "error": "boom"},
            ),
            (
                "u/a/alert",
                {"path": "u/a/job", "fire_at": T0 + 180, "run_id": "run3", "error": "boom"},
            ),
            (
                "u/a/all_clear",
                {
                    "path": "u/a/job",
                    "fire_at": T0 + 240,
                    "run_id": "run4",
                    "previous_error": "boom",
                },
            ),
        ]
        await scheduler.close()

    run(test)


def test_an_older_run_ending_late_does_not_count_as_recovery():
    async def test() -> None:
        spec = ScheduleSpec("u/a/job", "* * * * *", on_failure="h/fail", on_recovery="h/ok")
        source, target, clock = Source(spec), Target(), Clock(T0 + 60)
        scheduler = Scheduler(source, target, now=clock.now)
        await scheduler.tick()
        clock.t = T0 + 120
        await scheduler.tick()
        target.finish("run2", "failure", "late data")
        await until(lambda: target.handlers, "the failure handler")
        target.finish("run1", "success")  # the earlier fire ends after the later one failed
        await scheduler.wait_watchers()
        assert [path for path, _ in target.handlers] == ["h/fail"]
        await scheduler.close()

    run(test)


def test_reload_wakes_the_loop_without_waiting_for_the_sleep():
    async def test() -> None:
        paused = dataclasses.replace(hourly(), enabled=False)
        source, target, clock = Source(paused), Target(), Clock(T0 + 3600 + 10)
        async with Scheduler(source, target, now=clock.now, sleep=clock.sleep) as scheduler:
            await until(lambda: clock.sleeps, "the loop to sleep")
            assert target.submits == []
            source.rows[paused.path] = (dataclasses.replace(paused, enabled=True), T0)
            scheduler.reload()  # the clock has not moved: only the reload can wake it
            await until(lambda: target.submits, "the fire after reload")
        assert target.submits == [("f/ops/import", T0 + 3600)]

    run(test)


def test_a_failing_source_does_not_kill_the_loop():
    async def test() -> None:
        source, target, clock = Source(hourly()), Target(), Clock(T0 + 3600 + 1)
        broken = {"yes": True}
        original = source.schedules

        def schedules() -> list[tuple[ScheduleSpec, float]]:
            if broken["yes"]:
                raise OSError("store locked")
            return original()

        source.schedules = schedules  # type: ignore[method-assign]
        async with Scheduler(source, target, now=clock.now, sleep=clock.sleep, max_sleep=1.0):
            await until(lambda: clock.sleeps, "the loop to sleep after the failed tick")
            broken["yes"] = False
            clock.move_to(clock.t + 1)
            await until(lambda: target.submits, "the fire once the source works again")

    run(test)


def test_close_cancels_watchers():
    async def test() -> None:
        source, target, clock = Source(hourly()), Target(), Clock(T0 + 3600 + 1)
        scheduler = Scheduler(source, target, now=clock.now, sleep=clock.sleep)
        async with scheduler:
            await until(lambda: target.runs, "a run to start")
            assert len(scheduler._watchers) == 1
        assert scheduler._watchers == set()
        assert not target.ends["run1"].done()  # the run itself goes on in the target

    run(test)


def test_one_bad_schedule_does_not_stop_the_others():
    async def test() -> None:
        bad = ScheduleSpec("u/a/bad", "61 * * * *")
        source, target, clock = Source(bad, hourly()), Target(), Clock(T0 + 3600 + 1)
        async with Scheduler(source, target, now=clock.now, sleep=clock.sleep):
            await until(lambda: target.submits, "the good schedule's fire")
        assert target.submits == [("f/ops/import", T0 + 3600)]

    run(test)
