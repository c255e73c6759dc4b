"""The dispatcher: claims runnable runs from the store and executes them.

Runs wait in the store's durable queue; the dispatcher claims them by priority within
concurrency limits (the store decides, atomically), up to `max_parallel` at once, and
hands each to the engine. Suspended runs whose wake time came are claimable again, so a
sleep costs nothing while it waits. On start it puts runs a dead process left
`running` back in the queue; on close it hands the runs it holds back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Self

from flows.engine import FlowEngine, Outcome, cancel_run
from flows.records import FINISHED, RunRecord
from flows.store import RunStore
from kernels.closing import AsyncClosing


class Dispatcher(AsyncClosing):
    """Executes queued runs; `wait(run_id)` follows one to its end or its next approval."""

    def __init__(
        self,
        store: RunStore,
        engine: FlowEngine,
        *,
        max_parallel: int = 16,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.store = store
        self.engine = engine
        self.max_parallel = max_parallel
        self.poll_interval_s = poll_interval_s
        self.recovered: list[str] = []
        self._active: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._maybe_queued = True
        self._cancelling: set[str] = set()

    async def __aenter__(self) -> Self:
        self.recovered = await self.store.recover(time.time())
        self._loop_task = asyncio.create_task(self._loop())
        return self

    async def close(self) -> None:
        """Stop claiming; runs still executing are stopped and handed back to the queue."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        active = dict(self._active)
        for task in active.values():
            task.cancel()
        await asyncio.gather(*active.values(), return_exceptions=True)
        for run_id in active:
            run = await self.store.get_run(run_id)
            if run is not None and run.status == "running":
                await self.store.update_run(run_id, status="queued", worker=None)

    async def submit(self, definition: str, args: dict[str, Any], **options: Any) -> RunRecord:
        """Submit a flow run; with room to spare it starts at once, without a queue trip."""
        has_room = len(self._active) < self.max_parallel
        run = await self.engine.submit(definition, args, claim=has_room, **options)
        if (
            run.status == "running"
            and run.id not in self._active
            and run.worker == self.engine.worker
        ):
            self._start(run)
        else:
            self.wake()
        return run

    async def submit_script(self, source: str, args: dict[str, Any], **options: Any) -> RunRecord:
        """Submit a script run (see `FlowEngine.submit_script`); like `submit`, it starts
        at once when there is room."""
        has_room = len(self._active) < self.max_parallel
        run = await self.engine.submit_script(source, args, claim=has_room, **options)
        if (
            run.status == "running"
            and run.id not in self._active
            and run.worker == self.engine.worker
        ):
            self._start(run)
        elif run.status == "queued":
            self.wake()
        return run

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> RunRecord:
        """Cancel a run: a running one here is interrupted (its step's process is stopped),
        a queued or suspended one is marked cancelled."""
        task = self._active.get(run_id)
        if task is not None:
            self._cancelling.add(run_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        outcome = Outcome(await cancel_run(self.store, run_id, reason=reason))
        for future in self._waiters.pop(run_id, []):
            if not future.done():
                future.set_result(outcome)
        return outcome.run

    def wake(self) -> None:
        """Look for runnable runs now rather than at the next poll."""
        self._maybe_queued = True
        self._wake.set()

    @property
    def busy(self) -> int:
        return len(self._active)

    async def wait(self, run_id: str) -> Outcome:
        """Wait until the run ends or waits for an approval (sleeps are waited through)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, []).append(future)
        if run_id not in self._active:  # it may have ended already, or wait in the queue
            run = await self.store.get_run(run_id)
            if run is not None and run.status in FINISHED and not future.done():
                future.set_result(Outcome(run))
            self.wake()
        return await future

    async def _loop(self) -> None:
        while True:
            # A claim is a store round trip: skip it when nothing can have become runnable
            # since the last empty one (the poll still claims, for sleepers and others' runs).
            while self._maybe_queued and len(self._active) < self.max_parallel:
                run = await self.store.claim(self.engine.worker, time.time())
                if run is None:
                    self._maybe_queued = False
                    break
                self._start(run)
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation
            # that races with its timeout, and close() would then wait forever.
            try:
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                self._maybe_queued = True

    def _start(self, run: RunRecord) -> None:
        self._active[run.id] = asyncio.create_task(self._execute(run.id, run))

    async def _execute(self, run_id: str, run: RunRecord) -> None:
        try:
            outcome = await self.engine.execute(run)
        except asyncio.CancelledError:
            if run_id in self._cancelling:  # cancel() finishes the job; not a shutdown
                self._cancelling.discard(run_id)
                return
            raise
        except Exception as exc:  # the store failed under the run: tell whoever waits
            for future in self._waiters.pop(run_id, []):
                if not future.done():
                    future.set_exception(exc)
            raise
        finally:
            self._active.pop(run_id, None)
            if run.concurrency_key is not None or len(self._active) + 1 >= self.max_parallel:
                self._maybe_queued = True  # its slot may let a waiting run in
            self._wake.set()
        if outcome.finished or outcome.waiting == "approval":
            for future in self._waiters.pop(run_id, []):
                if not future.done():
                    future.set_result(outcome)
