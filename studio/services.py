"""The one object that owns the long-lived parts: environments, kernel pool, runner,
and (when flows are used) the run store, the flow engine and its dispatcher, the
secrets vault and the workspace (first start: admin account and examples).

Created once per process (`async with Services(settings) as services:`) and passed
down; nothing else holds global state.
"""

from __future__ import annotations

import contextlib
import time
from typing import Self

from flows.approvals import load_or_create_key
from flows.dispatcher import Dispatcher
from flows.duckdb_store import DuckDbStore
from flows.engine import FlowEngine
from flows.records import RunRecord
from flows.scheduler import Scheduler
from kernels.closing import AsyncClosing
from kernels.dedicated import DedicatedProcesses
from kernels.environments import EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import ScriptRunner
from studio.bootstrap import Bootstrapped, bootstrap
from studio.job_tokens import RunTokens
from studio.scheduling import DispatcherFires, WorkspaceSchedules
from studio.settings import Settings
from studio.vault import Vault, redact
from studio.workspace.store import Workspace
from studio.workspace_items import WorkspaceItems


class Services(AsyncClosing):
    """Started and stopped together; `flows=True` also opens the run store (it locks the
    file) and the workspace."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool_size: int | None = None,
        flows: bool = False,
        bootstrap: bool = True,
        scheduler: bool = False,
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
        self._with_scheduler = scheduler
        # Where runs' clients and approval links reach this server; `serve` sets it once
        # it knows its port (GRISTMILL_BASE_URL overrides, e.g. behind a proxy).
        self.public_url = settings.base_url.rstrip("/")
        self.run_tokens: RunTokens | None = None
        self.scheduler: Scheduler | None = None
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
                # Entered after the pool: every kept process goes before the pool stops.
                dedicated = await self._stack.enter_async_context(DedicatedProcesses(self.runner))
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
                self.run_tokens = RunTokens.open(self.settings.data / "keys" / "runs.key")
                self.engine = FlowEngine(
                    self.store,
                    self.runner,
                    data_dir=self.settings.data,
                    key=key,
                    base_url=self.public_url,
                    redact=self._redact,
                    credentials=self._credentials,
                    items=WorkspaceItems(self.workspace),
                    dedicated=dedicated,
                )
                self.dispatcher = await self._stack.enter_async_context(
                    Dispatcher(
                        self.store, self.engine, max_parallel=self.settings.max_parallel_runs
                    )
                )
                if self._with_scheduler:
                    self.scheduler = await self._stack.enter_async_context(
                        Scheduler(
                            WorkspaceSchedules(self.workspace),
                            DispatcherFires(self.workspace, self.dispatcher),
                        )
                    )
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    def set_public_url(self, url: str) -> None:
        """The URL this server is reached at, unless GRISTMILL_BASE_URL already said."""
        if not self.settings.base_url:
            self.public_url = url.rstrip("/")
            if self.engine is not None:
                self.engine.base_url = self.public_url

    def _redact(self, text: str) -> str:
        # Secret values printed by a run never reach the store (nor its pages).
        return redact(text, self.workspace.secret_values()) if self.workspace else text

    def _credentials(self, run: RunRecord) -> tuple[str, str]:
        """What a run's `import gristmill` client calls the server with: a token with the
        permissions of whoever started the run (none for runs nobody started, CLI runs)."""
        if not (self.public_url and run.actor and self.run_tokens):
            return "", ""
        return self.public_url, self.run_tokens.mint(run.id, run.actor, time.time(), run.path)

    async def close(self) -> None:
        """Stop everything, in the reverse order of starting it."""
        await self._stack.aclose()
