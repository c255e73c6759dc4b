"""The scheduler loop: starts the runs of due schedule fires, one loop per process.

Each tick asks `flows.schedules.due_fires` what to start, submits it, and only then
records the fire as done (`set_last_fire`). A crash between the two cannot double a
run: the target dedupes on the key `schedule:<path>:<fire_at>` and answers None for a
fire that already has its run. Between ticks the loop sleeps until the earliest next
fire, at most `max_sleep` seconds, and `reload()` wakes it when schedules change.

Each run started is watched to its end: a failure runs the schedule's `on_failure`
handler, the first success after a failure runs `on_recovery`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self

from flows.schedules import ScheduleError, ScheduleSpec, due_fires, next_fires
from kernels.closing import AsyncClosing

log = logging.getLogger(__name__)

RunStatus = Literal["success", "failure", "cancelled"]


def fire_key(path: str, fire_at: float) -> str:
    """The dedupe key of one fire; a target starts at most one run per key. Cron fires
    fall on whole seconds, so the integer part names the fire."""
    return f"schedule:{path}:{int(fire_at)}"


@dataclass(frozen=True)
class RunOutcome:
    """How a scheduled run ended; `error` is the message of a failure."""

    status: RunStatus
    error: str | None = None


@dataclass(frozen=True)
class SkippedFire:
    """A fire the scheduler did not start, and why (reported to `on_skip`)."""

    path: str
    fire_at: float
    reason: str


class ScheduleSource(Protocol):
    """Where schedules and their progress live (the workspace store).

    The scheduler calls `schedules()` at every tick, `last_fire(path)` before it works
    out a schedule's due fires, and `set_last_fire(path, fire_at)` after each fire was
    submitted (or skipped), so a new process resumes where this one stopped.
    """

    def schedules(self) -> list[tuple[ScheduleSpec, float]]:
        """Every schedule with the time it was created (unix seconds)."""
        ...

    def last_fire(self, path: str) -> float | None:
        """The last fire handled for `path`, or None when none was yet."""
        ...

    def set_last_fire(self, path: str, fire_at: float) -> None:
        """Record that the fire at `fire_at` was handled; must be durable when it returns."""
        ...


class FireTarget(Protocol):
    """What starts and follows runs (the flows dispatcher behind the studio).

    The scheduler calls `submit` once per due fire, `is_running` before a fire of a
    `no_overlap` schedule, `outcome` from a watcher task right after a submit, and
    `run_handler` when a watched run failed or recovered.
    """

    async def submit(self, spec: ScheduleSpec, fire_at: float) -> str | None:
        """Start the run of this fire and return its id; None when the fire already has a
        run (dedupe on `fire_key(spec.path, fire_at)`)."""
        ...

    async def is_running(self, run_id: str) -> bool:
        """Whether the run is queued or running (not yet finished)."""
        ...

    async def latest_run(self, path: str) -> str | None:
        """The id of the newest run a fire of schedule `path` started, from the durable
        history: after a restart, `no_overlap` still knows the run before it."""
        ...

    async def outcome(self, run_id: str) -> RunOutcome:
        """Wait for the run to end and say how."""
        ...

    async def run_handler(self, handler_path: str, args: dict[str, Any]) -> None:
        """Start the error or recovery handler script at `handler_path` with `args`."""
        ...


Sleep = Callable[[float], Awaitable[None]]


class Scheduler(AsyncClosing):
    """`async with Scheduler(source, target) as scheduler:` runs the loop until the block
    ends; `now` and `sleep` are injectable so tests drive time themselves."""

    def __init__(
        self,
        source: ScheduleSource,
        target: FireTarget,
        *,
        now: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        max_sleep: float = 1.0,
        on_skip: Callable[[SkippedFire], None] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.now = now
        self.sleep = sleep
        self.max_sleep = max_sleep
        self.on_skip = on_skip
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        # The latest run per schedule (the target's history fills it in after a restart);
        # failure/recovery tracking is in memory: after a restart recovery starts afresh.
        self._last_run: dict[str, str] = {}
        self._failed: dict[str, str] = {}  # path -> error of the last failed run
        self._latest_outcome: dict[str, float] = {}  # path -> fire_at of the latest outcome

    async def __aenter__(self) -> Self:
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")
        return self

    async def close(self) -> None:
        """Stop the loop and the watchers; runs already started go on in the target."""
        tasks = [t for t in (self._loop_task, *self._watchers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        self._watchers.clear()

    def reload(self) -> None:
        """Schedules changed: tick now rather than at the end of the current sleep."""
        self._wake.set()

    async def wait_watchers(self) -> None:
        """Wait until every run started so far has ended and its handlers ran."""
        while self._watchers:
            await asyncio.gather(*list(self._watchers), return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                delay = self.seconds_to_next_fire()
            except Exception:
                # The loop outlives a bad tick (store briefly locked, ...); next one retries.
                log.exception("scheduler tick failed")
                delay = self.max_sleep
            await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    def seconds_to_next_fire(self) -> float:
        """How long the loop may sleep: until the earliest next fire, at most `max_sleep`."""
        now = self.now()
        earliest = now + self.max_sleep
        for spec, _created in self.source.schedules():
            if spec.enabled:
                try:
                    upcoming = next_fires(spec, now, 1)
                except ScheduleError:
                    continue  # tick() logs it
                if upcoming:
                    earliest = min(earliest, upcoming[0])
        return max(0.0, earliest - now)

    async def tick(self) -> None:
        """Start every due fire of every schedule (one pass; the loop calls it)."""
        now = self.now()
        for spec, created_at in self.source.schedules():
            try:
                fires = due_fires(spec, self.source.last_fire(spec.path), now, created_at)
            except ScheduleError as exc:
                # One bad stored schedule must not stop the others.
                log.error("schedule %s cannot fire: %s", spec.path, exc)
                continue
            for fire_at in fires:
                try:
                    await self._fire(spec, fire_at)
                except Exception:
                    # Not recorded as done: the next tick submits it again (deduped).
                    log.exception("schedule %s: fire at %s failed to start", spec.path, fire_at)
                    break

    async def _fire(self, spec: ScheduleSpec, fire_at: float) -> None:
        previous = self._last_run.get(spec.path)
        if spec.no_overlap and previous is None:
            previous = await self.target.latest_run(spec.path)
        if spec.no_overlap and previous is not None and await self.target.is_running(previous):
            self._skip(SkippedFire(spec.path, fire_at, f"run {previous} is still running"))
        else:
            run_id = await self.target.submit(spec, fire_at)
            if run_id is not None:
                self._last_run[spec.path] = run_id
                self._watch(spec, fire_at, run_id)
        self.source.set_last_fire(spec.path, fire_at)

    def _skip(self, skipped: SkippedFire) -> None:
        log.info(
            "schedule %s: skipped fire at %s: %s", skipped.path, skipped.fire_at, skipped.reason
        )
        if self.on_skip is not None:
            self.on_skip(skipped)

    def _watch(self, spec: ScheduleSpec, fire_at: float, run_id: str) -> None:
        task = asyncio.create_task(self._follow(spec, fire_at, run_id), name=f"watch {run_id}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _follow(self, spec: ScheduleSpec, fire_at: float, run_id: str) -> None:
        try:
            outcome = await self.target.outcome(run_id)
        except Exception:
            log.exception("schedule %s: cannot follow run %s", spec.path, run_id)
            return
        base = {"path": spec.path, "fire_at": fire_at, "run_id": run_id}
        newest = fire_at >= self._latest_outcome.get(spec.path, float("-inf"))
        if newest:
            self._latest_outcome[spec.path] = fire_at
        if outcome.status == "failure":
            error = outcome.error or "the run failed"
            if newest:
                self._failed[spec.path] = error
            if spec.on_failure:
                await self._handler(spec.on_failure, {**base, "error": error})
        elif outcome.status == "success" and newest and spec.path in self._failed:
            previous_error = self._failed.pop(spec.path)
            if spec.on_recovery:
                await self._handler(spec.on_recovery, {**base, "previous_error": previous_error})

    async def _handler(self, handler_path: str, args: dict[str, Any]) -> None:
        try:
            await self.target.run_handler(handler_path, args)
        except Exception:
            log.exception("schedule %s: handler %s failed to start", args["path"], handler_path)
