"""The one object that owns the long-lived parts: environments, kernel pool, runner.

Created once per process (`async with Services(settings) as services:`) and passed
down; nothing else holds global state.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from kernels.environments import EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import ScriptRunner
from studio.settings import Settings


class Services:
    """Environments, the kernel pool and the script runner, started and stopped together."""

    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self.settings = settings
        self.environments = EnvironmentStore(settings.data / "envs")
        self.pool = KernelPool(
            PoolConfig(
                size=pool_size or settings.pool_size,
                start_timeout_s=settings.kernel_start_timeout,
                health_interval_s=settings.health_interval,
            )
        )
        self.runner = ScriptRunner(
            self.pool, self.environments, interrupt_grace_s=settings.interrupt_grace
        )

    async def __aenter__(self) -> Self:
        await self.pool.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.pool.close()
