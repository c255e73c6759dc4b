"""The one object that owns the long-lived parts: environments, kernel pool, runner,
and (when flows are used) the run store, the flow engine and its dispatcher, the
secrets vault and the workspace (first start: admin account and examples).

Created once per process (`async with Services(settings) as services:`) and passed
down; nothing else holds global state.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

from flows.approvals import load_or_create_key
from flows.dispatcher import Dispatcher
from flows.duckdb_store import DuckDbStore
from flows.engine import FlowEngine
from kernels.environments import EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import ScriptRunner
from studio.bootstrap import Bootstrapped, bootstrap
from studio.settings import Settings
from studio.vault import Vault
from studio.workspace.store import Workspace


class Services:
    """Started and stopped together; `flows=True` also opens the run store (it locks the
    file) and the workspace."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool_size: int | None = None,
        flows: bool = False,
        bootstrap: bool = True,
    ) -> None:
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
        self._with_flows = flows
        # The server bootstraps (admin account, examples); a one-off CLI run may opt out
        # so that a generated admin password is not printed by `gristmill run`.
        self._bootstrap = bootstrap
        self._stack = contextlib.AsyncExitStack()
        self.store: DuckDbStore | None = None
        self.engine: FlowEngine | None = None
        self.dispatcher: Dispatcher | None = None
        self.vault: Vault | None = None
        self.workspace: Workspace | None = None
        self.bootstrapped: Bootstrapped | None = None

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self.pool)
            if self._with_flows:
                self.settings.data.mkdir(parents=True, exist_ok=True)
                self.store = await self._stack.enter_async_context(
                    DuckDbStore(self.settings.data / "runs.duckdb")
                )
                self.vault = Vault.open(self.settings.data, self.settings.secret_key)
                self.workspace = self._stack.enter_context(
                    Workspace(self.settings.data / "workspace.db", self.vault)
                )
                if self._bootstrap:
                    self.bootstrapped = bootstrap(self.workspace, self.settings)
                key = load_or_create_key(self.settings.data / "keys" / "approvals.key")
                self.engine = FlowEngine(
                    self.store,
                    self.runner,
                    data_dir=self.settings.data,
                    key=key,
                    base_url=self.settings.base_url,
                )
                self.dispatcher = await self._stack.enter_async_context(
                    Dispatcher(self.store, self.engine)
                )
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
