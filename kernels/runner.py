"""Run a script end to end: check its arguments, find its environment, lease, execute.

This is the one entry point the CLI, the flows engine and the server use to run code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kernels.arguments import validate_arguments
from kernels.environments import EnvironmentStore
from kernels.errors import KernelDiedError
from kernels.execution import EventSink, execute
from kernels.messages import RunContext, RunLimits, RunResult
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
        if script.language == "bash":
            # Bash sees only text: numbers and booleans from a flow or a form become words.
            args = {name: _as_word(value) for name, value in args.items()}
        checked = validate_arguments(args, script.schema)
        if prepare is not None:  # e.g. resource paths replaced by the resources (the server)
            checked = await prepare(checked)
        environment = await self.environments.resolve(script.requirements)
        job = script.job(checked, context=context, limits=limits, env=dict(env or {}))
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


def _as_word(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value
