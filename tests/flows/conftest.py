"""Flow fixtures: a real kernel pool, a real DuckDB store, the engine and its dispatcher."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.dispatcher import Dispatcher
from flows.duckdb_store import DuckDbStore
from flows.engine import FlowEngine, Outcome
from flows.records import StepRecord
from kernels.dedicated import DedicatedProcesses
from kernels.environments import EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import ScriptRunner
from tests.portal import Portal


@dataclass
class Flows:
    """A running engine, driven synchronously from tests."""

    portal: Portal
    engine: FlowEngine
    dispatcher: Dispatcher
    store: DuckDbStore
    directory: Path

    def write(self, name: str, text: str) -> Path:
        path = self.directory / name
        path.write_text(textwrap.dedent(text))
        return path

    def run(
        self, text: str, args: dict[str, Any] | None = None, name: str = "flow.yaml"
    ) -> Outcome:
        """Submit the flow and wait until it ends or waits for an approval."""
        path = self.write(name, text)
        return self.portal.run(self._submit_and_wait(path, args or {}))

    async def _submit_and_wait(self, path: Path, args: dict[str, Any]) -> Outcome:
        run = await self.dispatcher.submit(path.read_text(), args, path=str(path))
        return await self.dispatcher.wait(run.id)

    def wait(self, run_id: str) -> Outcome:
        async def wait() -> Outcome:
            self.dispatcher.wake()
            return await self.dispatcher.wait(run_id)

        return self.portal.run(wait())

    def steps(self, run_id: str) -> list[StepRecord]:
        return self.portal.run(self.store.steps(run_id))


@pytest.fixture(scope="module")
def flows(portal: Portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flows]:
    directory = tmp_path_factory.mktemp("flows")
    pool = KernelPool(PoolConfig(size=4, health_interval_s=3600))
    store = DuckDbStore(directory / "runs.duckdb")

    async def start() -> Flows:
        await pool.__aenter__()
        await store.__aenter__()
        runner = ScriptRunner(pool, EnvironmentStore(directory / "envs"), interrupt_grace_s=1.0)
        dedicated = await DedicatedProcesses(runner).__aenter__()
        engine = FlowEngine(store, runner, data_dir=directory, key=b"k" * 32, dedicated=dedicated)
        dispatcher = await Dispatcher(store, engine).__aenter__()
        await pool.wait_warm(EnvironmentStore(directory / "envs").default(), timeout=120)
        return Flows(portal, engine, dispatcher, store, directory)

    harness = portal.run(start(), timeout=180)
    yield harness

    async def stop() -> None:
        await harness.dispatcher.close()
        if harness.engine.dedicated is not None:
            await harness.engine.dedicated.close()
        await store.close()
        await pool.close()

    portal.run(stop())
