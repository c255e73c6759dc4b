"""Run a script end to end: check its arguments, find its environment, lease, execute.

This is the one entry point the CLI, the flows engine and the server use to run code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kernels.closing import AsyncClosing
from kernels.environments import EnvironmentSpec, EnvironmentStore
from kernels.errors import KernelDiedError
from kernels.execution import EventSink, RunSession, execute
from kernels.messages import RunContext, RunJob, RunLimits, RunResult
from kernels.pool import KernelPool
from kernels.scripts import Script

# A job that never started (its kernel died between lease and run) is safe to retry:
# nothing of it ran. Two more tries hide a crash from the user without looping forever.
_START_ATTEMPTS = 3


class ScriptRunner:
    """Runs scripts on the pool's kernels, in the environment each script needs."""

    def __init__(
        self, pool: KernelPool, environments: EnvironmentStore, *, interrupt_grace_s: float = 2.0
    ) -> None:
        self.pool = pool
        self.environments = environments
        self.interrupt_grace_s = interrupt_grace_s

    async def run(
        self,
        script: Script,
        args: Mapping[str, Any],
        *,
        context: RunContext | None = None,
        limits: RunLimits | None = None,
        env: Mapping[str, str] | None = None,
        on_event: EventSink | None = None,
        cancel: asyncio.Event | None = None,
        prepare: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> RunResult:
        """Run `script` with `args` and return how it ended.

        Raises `ScriptError` (no main, syntax error), `ArgumentError` (args do not fit
        the schema) and `EnvironmentBuildError` (requirements cannot be installed)
        before anything runs; a failure of the code itself is a `RunResult`.
        """
        environment, job = await self.prepare_job(script, args, context, limits, env, prepare)
        for attempt in range(1, _START_ATTEMPTS + 1):
            async with self.pool.lease(environment) as lease:
                try:
                    return await execute(
                        lease,
                        job,
                        on_event=on_event,
                        cancel=cancel,
                        interrupt_grace_s=self.interrupt_grace_s,
                    )
                except KernelDiedError:
                    if attempt == _START_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def prepare_job(
        self,
        script: Script,
        args: Mapping[str, Any],
        context: RunContext | None,
        limits: RunLimits | None,
        env: Mapping[str, str] | None,
        prepare: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None,
    ) -> tuple[EnvironmentSpec, RunJob]:
        """The checked job and the environment it runs in (see `run` for what it raises)."""
        if script.language == "bash":
            # Bash sees only text: numbers and booleans from a flow or a form become words.
            args = {name: _as_word(value) for name, value in args.items()}
        checked = script.check_arguments(args)
        if prepare is not None:  # e.g. resource paths replaced by the resources (the server)
            checked = await prepare(checked)
        environment = await self.environments.resolve(script.requirements)
        job = script.job(checked, context=context, limits=limits, env=dict(env or {}))
        return environment, job

    def session(self, *, idle_s: float = 0.5) -> RunnerSession:
        """Runs that may share run processes: use as `async with runner.session() as s:`."""
        return RunnerSession(self, idle_s=idle_s)


class RunnerSession(AsyncClosing):
    """Runs for one owner (the steps of one flow run) that reuse run processes.

    `run` takes the same arguments as `ScriptRunner.run`. A run process that ends a job
    reusable goes to the owner's next job in the same environment: one already waiting
    for a process, or else one that comes within `idle_s` (the process waits, holding
    its kernel). Runs at the same time get processes of their own. Processes never pass
    between owners, so isolation holds per owner: a step sees no other owner's state.
    Leaving the `async with` block lets every process go.
    """

    def __init__(self, runner: ScriptRunner, *, idle_s: float) -> None:
        self.runner = runner
        self.idle_s = idle_s
        self.running = 0  # jobs in progress
        self._idle: dict[str, list[_Held]] = {}
        # Jobs waiting for a process of an environment: one that finishes goes to them.
        self._waiting: dict[str, deque[asyncio.Future[_Held]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def close(self) -> None:
        """Let every process go, and take no more runs."""
        self._closed = True
        await self.let_go()

    @property
    def idle(self) -> int:
        """Processes waiting for the owner's next job."""
        return sum(len(waiting) for waiting in self._idle.values())

    @property
    def in_use(self) -> bool:
        """Whether a job runs, a process waits, or one is still closing."""
        return bool(self.running or self._closing or self.idle)

    async def release(self) -> None:
        """The owner is about to wait a long time (a sleep, an approval): let every
        waiting process go now, and their kernels with them."""
        await self.let_go()

    async def let_go(self) -> None:
        """Let every waiting process go now (jobs in progress keep theirs)."""
        held = [h for waiting in self._idle.values() for h in waiting]
        self._idle.clear()
        for h in held:
            self._close_later(h)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def reclaim(self, env_id: str) -> bool:
        """Let the longest-waiting process of `env_id` go (its kernel returns to the
        pool); False when there is none."""
        waiting = self._idle.get(env_id)
        if not waiting:
            return False
        held = waiting.pop(0)
        self._close_later(held)
        return True

    async def run(
        self,
        script: Script,
        args: Mapping[str, Any],
        *,
        context: RunContext | None = None,
        limits: RunLimits | None = None,
        env: Mapping[str, str] | None = None,
        on_event: EventSink | None = None,
        cancel: asyncio.Event | None = None,
        prepare: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> RunResult:
        """As `ScriptRunner.run`, in a waiting process of this session when there is one."""
        if self._closed:
            raise RuntimeError("this runner session has ended")
        runner = self.runner
        environment, job = await runner.prepare_job(script, args, context, limits, env, prepare)
        self.running += 1
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                held = await self._process(environment)
                try:
                    result = await held.session.run(job, on_event=on_event, cancel=cancel)
                except KernelDiedError:
                    self._close_later(held)
                    if attempt == _START_ATTEMPTS:
                        raise
                    continue
                except BaseException:
                    self._close_later(held)
                    raise
                if held.session.reusable and not self._closed:
                    self._keep(environment.id, held)
                else:
                    self._close_later(held)
                return result
        finally:
            self.running -= 1
        raise AssertionError("unreachable")

    async def _process(self, environment: EnvironmentSpec) -> _Held:
        """A waiting process; else whichever comes first: a process another job of
        this session finishes with, or a new one on a kernel leased from the pool."""
        env_id = environment.id
        if waiting := self._idle.get(env_id):
            return self._take(waiting)
        if not self.running > 1:  # no other job of ours could hand one over
            return await _Held.open(self.runner, environment)
        handed: asyncio.Future[_Held] = asyncio.get_running_loop().create_future()
        waiters = self._waiting.setdefault(env_id, deque())
        waiters.append(handed)
        opening = asyncio.ensure_future(_Held.open(self.runner, environment))
        finished = False
        try:
            await asyncio.wait((handed, opening), return_when=asyncio.FIRST_COMPLETED)
            finished = True
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(handed)
            if not waiters:
                self._waiting.pop(env_id, None)
            got = handed.result() if handed.done() else None
            handed.cancel()
            if not finished and got is not None:  # this job was cancelled: the next one's
                self._keep(env_id, got)
            if not finished or got is not None:
                # The loser must not leak: a lease on its way is cancelled, and a
                # process that arrives anyway waits for the next job like any other.
                opening.cancel()
                opening.add_done_callback(lambda task: self._adopt(env_id, task))
        return got if got is not None and finished else opening.result()

    def _adopt(self, env_id: str, opening: asyncio.Future[_Held]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            self._keep(env_id, opening.result())

    def _take(self, waiting: list[_Held]) -> _Held:
        held = waiting.pop()  # the most recently used: its pages are warm
        if held.expiry is not None:
            held.expiry.cancel()
            held.expiry = None
        return held

    def _keep(self, env_id: str, held: _Held) -> None:
        if self._closed:
            self._close_later(held)
            return
        waiters = self._waiting.get(env_id)
        while waiters:
            handed = waiters.popleft()
            if not handed.done():
                handed.set_result(held)
                return
        self._idle.setdefault(env_id, []).append(held)
        held.expiry = asyncio.get_running_loop().call_later(self.idle_s, self._expire, env_id, held)

    def _expire(self, env_id: str, held: _Held) -> None:
        waiting = self._idle.get(env_id, [])
        if held in waiting:
            waiting.remove(held)
            self._close_later(held)

    def _close_later(self, held: _Held) -> None:
        task = asyncio.ensure_future(held.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class _Held:
    """A leased kernel and a run process on it, kept by a `RunnerSession`."""

    def __init__(self, stack: contextlib.AsyncExitStack, session: RunSession) -> None:
        self.stack = stack
        self.session = session
        self.expiry: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, runner: ScriptRunner, environment: EnvironmentSpec) -> _Held:
        async with contextlib.AsyncExitStack() as stack:
            lease = await stack.enter_async_context(runner.pool.lease(environment))
            session = await stack.enter_async_context(
                RunSession(lease, interrupt_grace_s=runner.interrupt_grace_s)
            )
            return cls(stack.pop_all(), session)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        await self.stack.aclose()  # the process exits, the kernel goes back to the pool


def _as_word(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value
