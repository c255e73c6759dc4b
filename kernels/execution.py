"""Run jobs on a leased kernel: send them, stream their events, enforce their timeouts.

A job goes to the kernel's waiting run process over the run socket; frames come back
(`child.py` lists them) and become typed events and one `RunResult`. A timeout or a
cancellation first interrupts the run (SIGINT: a KeyboardInterrupt in the script); a
run that does not stop within the grace period is killed with its kernel, which the
pool replaces.

`execute` runs one job in a process of its own. A `RunSession` keeps its process for
the next job while the last one left it reusable (`child.py` says when): the steps of
one flow run go through one, and pay for one fork between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from kernels import framing
from kernels.closing import AsyncClosing
from kernels.errors import KernelDiedError
from kernels.messages import (
    DisplayEvent,
    ErrorKind,
    RunError,
    RunEvent,
    RunJob,
    RunResult,
    StreamEvent,
)
from kernels.pool import KernelLease
from kernels.requirements import run_imports
from kernels.run_connection import RunConnection, connect

EventSink = Callable[[RunEvent], Awaitable[None] | None]

# How long a kernel's waiting run process may take to say it started: it is already
# forked and blocked in accept(), so anything slower means the kernel is wedged.
_START_TIMEOUT_S = 10.0


async def execute(
    lease: KernelLease,
    job: RunJob,
    *,
    on_event: EventSink | None = None,
    cancel: asyncio.Event | None = None,
    interrupt_grace_s: float = 2.0,
) -> RunResult:
    """Run `job` on the leased kernel, in a process of its own, and return how it ended.

    Raises `KernelDiedError` only when the job never started (the caller may retry it
    on another kernel, since nothing ran); every other failure is a `RunResult`.
    """
    async with RunSession(lease, keep=False, interrupt_grace_s=interrupt_grace_s) as session:
        return await session.run(job, on_event=on_event, cancel=cancel)


def fits_lean(job: RunJob, loaded: frozenset[str]) -> bool:
    """Whether the kernel's lean zygote, which has `loaded`, has all that `job` imports.

    A job that would import more goes to the full zygote (kernel_app.FULL_PRELOAD),
    which has more of the standard library loaded already; so does a job whose source
    cannot be read. A session's first job decides for the jobs after it."""
    if job.language != "python":
        return True
    imports = job.imports if job.imports is not None else run_imports(job.source)
    if imports is None or not loaded:
        return False
    return loaded.issuperset(imports)


class RunSession(AsyncClosing):
    """One run process on a leased kernel, for one job or (`keep`) several in a row.

    Use as `async with RunSession(lease) as session:`; `reusable` says whether the
    process will take another job. Closing it lets the process exit.
    """

    def __init__(self, lease: KernelLease, *, keep: bool = True, interrupt_grace_s: float = 2.0):
        self.lease = lease
        self.keep = keep
        self.interrupt_grace_s = interrupt_grace_s
        self.jobs = 0
        self._connection: RunConnection | None = None
        self._pid: int | None = None  # the run process's, once it started a job
        self._frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._usable = True

    @property
    def reusable(self) -> bool:
        return self.keep and self._usable

    async def close(self) -> None:
        self._usable = False
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def run(
        self, job: RunJob, *, on_event: EventSink | None = None, cancel: asyncio.Event | None = None
    ) -> RunResult:
        """Run `job` and return how it ended; `KernelDiedError` if it never started."""
        if not self._usable:
            raise KernelDiedError("this run process takes no more jobs")
        started = time.perf_counter()
        kernel = self.lease.kernel
        frame = framing.encode_frame({**job.frame(), "session": self.keep})
        run: _Run | None = None
        self.jobs += 1
        try:
            connection = self._connection or await self._connect(job)
            await connection.send(frame)
            if self._pid is None:  # the process's first job: it says when it takes it
                first = await self._started()
                if first is None:
                    self._usable = False
                    if self.jobs == 1 or not kernel.alive():
                        self.lease.poison("the run process did not start")
                    raise KernelDiedError(f"kernel {kernel.id} did not start the run")
                self._pid = int(first["pid"])
            # A later job starts as soon as it is read: the process waits for nothing
            # else, so a frame of its own per job would only cost a wake-up each side.
            run = _Run(self.lease, self._pid, on_event, self.interrupt_grace_s)
            result = await run.follow(self._frames, job.limits.timeout_s, cancel)
            self._usable = self._usable and run.more
            return _with_timing(result, kernel.id, started)
        except ConnectionError as exc:  # the kept process went away between jobs
            self._usable = False
            raise KernelDiedError(f"kernel {kernel.id} did not take the run ({exc})") from exc
        except asyncio.CancelledError:
            self._usable = False
            if run is not None:
                await asyncio.shield(run.stop(self._frames))
            raise
        except BaseException:
            self._usable = False
            raise

    async def _connect(self, job: RunJob) -> RunConnection:
        """Connect to the kernel's waiting run process that suits `job`."""
        kernel = self.lease.kernel
        path = kernel.run_socket if fits_lean(job, kernel.lean_modules) else kernel.full_run_socket
        try:
            sock = await connect(str(path))
        except OSError as exc:
            self._usable = False
            self.lease.poison(f"run socket unreachable: {exc}")
            raise KernelDiedError(f"kernel {kernel.id} does not accept runs ({exc})") from exc
        self._connection = RunConnection(sock, self._frames)
        return self._connection

    async def _started(self) -> dict[str, Any] | None:
        """The first job's `started` frame, or None if the process will not run it."""
        frame = await _next(self._frames, _START_TIMEOUT_S)
        if frame is _TIMED_OUT or frame is None or frame.get("t") != "started":
            return None
        return frame


class _Run:
    """A started run: follows its frames and stops it when asked or late."""

    def __init__(
        self, lease: KernelLease, pid: int, on_event: EventSink | None, grace_s: float
    ) -> None:
        self.lease = lease
        self.pid = pid
        self.on_event = on_event
        self.grace_s = grace_s
        self.more = False  # the process takes another job (its final frame said so)

    async def follow(
        self,
        frames: asyncio.Queue[dict[str, Any] | None],
        timeout_s: float | None,
        cancel: asyncio.Event | None,
    ) -> RunResult:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        cancel_wait = asyncio.create_task(cancel.wait()) if cancel is not None else None
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return await self._stopped(
                        frames,
                        "timeout",
                        f"the run took longer than its timeout of {timeout_s:g} s",
                    )
                if cancel_wait is not None and cancel_wait.done():  # even if frames keep coming
                    return await self._stopped(frames, "cancelled", "the run was cancelled")
                if not frames.empty():  # the usual case for short runs: no task, no wait
                    frame = frames.get_nowait()
                elif cancel_wait is None:
                    try:
                        async with asyncio.timeout(remaining):
                            frame = await frames.get()
                    except TimeoutError:
                        continue  # the deadline, checked above
                else:
                    get = asyncio.ensure_future(frames.get())
                    done, _ = await asyncio.wait(
                        {get, cancel_wait}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                    if get not in done:
                        get.cancel()
                        if cancel_wait in done:
                            return await self._stopped(frames, "cancelled", "the run was cancelled")
                        continue
                    frame = get.result()
                final = await self._handle(frame)
                if final is not None:
                    return final
        finally:
            if cancel_wait is not None:
                cancel_wait.cancel()

    async def _handle(self, frame: dict[str, Any] | None) -> RunResult | None:
        if frame is None:
            if not self.lease.kernel.alive():
                self.lease.poison("the kernel died during the run")
                return _failed(
                    "system",
                    "KernelDied",
                    "the kernel running the script died (killed, or out of memory)",
                )
            return _failed(
                "system",
                "RunProcessDied",
                "the run process ended without a result (killed by a signal, os._exit(), or out of memory)",
            )
        kind = frame.get("t")
        if kind == "stream":
            await self._emit(
                StreamEvent(
                    name="stderr" if frame.get("name") == "stderr" else "stdout",
                    text=str(frame.get("text", "")),
                )
            )
        elif kind == "display":
            await self._emit(
                DisplayEvent(data=frame.get("data") or {}, metadata=frame.get("metadata") or {})
            )
        elif kind == "result":
            self.more = bool(frame.get("more"))
            return RunResult(status="ok", value=frame.get("value"))
        elif kind == "error":
            error = RunError(
                kind=frame.get("kind", "code"),
                name=str(frame.get("ename", "Error")),
                message=str(frame.get("evalue", "")),
                traceback=str(frame.get("traceback", "")),
                line=frame.get("line"),
                field=frame.get("field"),
            )
            self.more = bool(frame.get("more"))
            return RunResult(status="error", error=error)
        return None

    async def _emit(self, event: RunEvent) -> None:
        if self.on_event is not None:
            outcome = self.on_event(event)
            if inspect.isawaitable(outcome):
                await outcome

    async def _stopped(
        self,
        frames: asyncio.Queue[dict[str, Any] | None],
        status: Literal["timeout", "cancelled"],
        message: str,
    ) -> RunResult:
        stopped_cleanly = await self.stop(frames)
        if not stopped_cleanly:
            message += f"; it ignored the interrupt for {self.grace_s:g} s, so its kernel was killed and replaced"
        return RunResult(
            status=status, error=RunError(kind=status, name=status.capitalize(), message=message)
        )

    async def stop(self, frames: asyncio.Queue[dict[str, Any] | None]) -> bool:
        """Interrupt the run; kill it with its kernel if it has not ended after the grace period."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + self.grace_s
        while (remaining := deadline - time.monotonic()) > 0:
            frame = await _next(frames, remaining)
            if frame is _TIMED_OUT:
                break
            if frame is None or frame.get("t") in ("result", "error"):
                return True
            await self._handle(frame)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.lease.poison("a run ignored its interrupt")
        return False


_TIMED_OUT: dict[str, Any] = {"t": "timed out"}


async def _next(
    frames: asyncio.Queue[dict[str, Any] | None], timeout: float
) -> dict[str, Any] | None:
    """The next frame, None at the end of the stream, or `_TIMED_OUT`."""
    try:
        async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancellation on 3.11
            return await frames.get()
    except TimeoutError:
        return _TIMED_OUT


def _failed(kind: ErrorKind, name: str, message: str) -> RunResult:
    return RunResult(status="error", error=RunError(kind=kind, name=name, message=message))


def _with_timing(result: RunResult, kernel_id: str, started: float) -> RunResult:
    return RunResult(
        status=result.status,
        value=result.value,
        error=result.error,
        kernel_id=kernel_id,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
