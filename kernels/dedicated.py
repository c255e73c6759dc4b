"""Dedicated run processes: kept warm between runs of one owner, as Windmill's
"dedicated workers" are (an enterprise feature there).

A plain run gets a fresh process forked from its kernel's zygote, and the process
exits when the run ends: about 3 ms of CPU per run on this machine (the fork, the
copy-on-write faults of a new process, its exit), more than a short flow's steps cost.
An owner that opts in (a flow file's `dedicated: true`) keeps its processes: each
`session(key)` is one `RunnerSession` that lives across runs, so the next run of the
same key starts in a process that has run it before.

What isolation remains: processes never pass between keys, and the caller makes the key
from everything that must not share (the flow, its version, the user who runs it).
Between jobs a process restores its environment variables and working directory, as
it does between the steps of one run; what a run leaves in memory (imported modules,
module-level caches) the next run of the same key can see.

A dedicated process holds its kernel while it waits. It gives the kernel back after
`idle_s` without a job, and at once when a lease of its environment would otherwise
wait (`KernelPool.add_reclaimer`), so dedicated owners never starve the others.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Self

from kernels.closing import AsyncClosing
from kernels.runner import RunnerSession, ScriptRunner

# How long a dedicated process waits for its owner's next run: long enough to span the
# gaps of a steady trigger, short enough that a burst's extra processes go away soon.
IDLE_S = 60.0


class DedicatedProcesses(AsyncClosing):
    """Keyed `RunnerSession`s that outlive each run; see the module's docstring.

    Use as `async with DedicatedProcesses(runner) as dedicated:` inside the pool's
    block, so every process has gone before the pool stops.
    """

    def __init__(self, runner: ScriptRunner, *, idle_s: float = IDLE_S) -> None:
        self.runner = runner
        self.idle_s = idle_s
        self._sessions: dict[Hashable, RunnerSession] = {}
        self._open = False

    async def __aenter__(self) -> Self:
        self.runner.pool.add_reclaimer(self._reclaim)
        self._open = True
        return self

    async def close(self) -> None:
        """Let every kept process go; later `session` calls are refused."""
        self._open = False
        self.runner.pool.remove_reclaimer(self._reclaim)
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def session(self, key: Hashable) -> RunnerSession:
        """The session of `key` (made on first use). Its owner must not close it."""
        if not self._open:
            raise RuntimeError("dedicated processes are not open: use `async with`")
        session = self._sessions.get(key)
        if session is None:
            self._forget_unused()
            session = self._sessions[key] = _KeptSession(self.runner, idle_s=self.idle_s)
        return session

    async def let_go(self) -> None:
        """Let every waiting process go now; runs in progress keep theirs."""
        for session in list(self._sessions.values()):
            await session.let_go()

    @property
    def processes(self) -> int:
        """Processes waiting for their owner's next run."""
        return sum(session.idle for session in self._sessions.values())

    def _forget_unused(self) -> None:
        """Drop sessions with no process and no job (their keys' runs stopped coming)."""
        unused = [k for k, s in self._sessions.items() if not s.in_use]
        for key in unused:
            del self._sessions[key]

    def _reclaim(self, env_id: str) -> bool:
        return any(session.reclaim(env_id) for session in self._sessions.values())


class _KeptSession(RunnerSession):
    """A session shared by the runs of one key: one run that is about to wait a long
    time (a sleep, an approval) keeps the others' processes. Its own process is back
    in the session already, and goes after `idle_s` or when the pool needs its kernel."""

    async def release(self) -> None:
        return None
