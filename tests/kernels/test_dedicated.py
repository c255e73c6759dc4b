"""Dedicated run processes on real kernels: kept across runs of one key, never shared
between keys, handed straight to a job of the same key that waits, and given back to
the pool when another lease needs the kernel.

The module's own pool of two kernels (not the shared fixture): these tests hold
kernels on purpose.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from kernels.dedicated import DedicatedProcesses
from kernels.environments import EnvironmentSpec, EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import RunnerSession, ScriptRunner
from kernels.scripts import Script
from tests.conftest import wait_for
from tests.portal import Portal

PID = "import os\ndef main():\n    return os.getpid()\n"
SLOW_PID = "import os, time\ndef main(s: float):\n    time.sleep(s)\n    return os.getpid()\n"


def script(source: str) -> Script:
    return Script.inline(textwrap.dedent(source), path="step.py")


async def pid(session: RunnerSession | ScriptRunner, source: str = PID, **args: Any) -> int:
    result = await session.run(script(source), args)
    assert result.status == "ok", result.error
    return int(result.value)


@pytest.fixture(scope="module")
def two_kernels(
    portal: Portal, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ScriptRunner, EnvironmentSpec]]:
    """A runner on a pool of exactly two kernels (it never grows)."""
    pool = KernelPool(PoolConfig(size=2, max_size=2, health_interval_s=3600))
    environments = EnvironmentStore(tmp_path_factory.mktemp("envs"))
    portal.run(pool.__aenter__())
    portal.run(pool.wait_warm(environments.default(), timeout=120))
    yield ScriptRunner(pool, environments, interrupt_grace_s=1.0), environments.default()
    portal.run(pool.close())


@pytest.fixture
def runner(two_kernels: tuple[ScriptRunner, EnvironmentSpec]) -> ScriptRunner:
    return two_kernels[0]


def test_runs_of_one_key_keep_their_process(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> tuple[list[int], int]:
        async with DedicatedProcesses(runner) as dedicated:
            # Each run takes the session anew, as the engine does for each flow run.
            pids = [await pid(dedicated.session(("flow.yaml", "v1", "ann"))) for _ in range(3)]
            return pids, dedicated.processes

    pids, kept = portal.run(go())
    assert len(set(pids)) == 1, pids
    assert kept == 1


def test_two_keys_never_share_a_process(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> tuple[list[int], list[int]]:
        async with DedicatedProcesses(runner) as dedicated:
            ann, bob = [], []
            for _ in range(2):  # interleaved: each key's process waits while the other runs
                ann.append(await pid(dedicated.session(("flow.yaml", "v1", "ann"))))
                bob.append(await pid(dedicated.session(("flow.yaml", "v1", "bob"))))
            return ann, bob

    ann, bob = portal.run(go())
    assert len(set(ann)) == 1 and len(set(bob)) == 1, (ann, bob)
    assert not set(ann) & set(bob)


def test_a_waiting_job_gets_the_process_another_job_of_its_key_finishes_with(
    portal: Portal, two_kernels: tuple[ScriptRunner, EnvironmentSpec]
) -> None:
    runner, env = two_kernels

    async def go() -> tuple[int, int]:
        async with DedicatedProcesses(runner) as dedicated, runner.pool.lease(env):
            # One kernel is leased away and the pool cannot grow: the second job can
            # only run in the first job's process, and gets it as soon as that ends
            # (not after the process has waited `idle_s`, an hour here).
            dedicated.idle_s = 3600
            session = dedicated.session("key")
            first, second = await asyncio.gather(
                pid(session, SLOW_PID, s=0.3), pid(session, SLOW_PID, s=0.0)
            )
            return first, second

    first, second = portal.run(go(), timeout=30)
    assert first == second


def test_a_kept_process_gives_its_kernel_to_a_lease_that_would_wait(
    portal: Portal, two_kernels: tuple[ScriptRunner, EnvironmentSpec]
) -> None:
    runner, env = two_kernels

    async def go() -> tuple[int, int]:
        async with DedicatedProcesses(runner, idle_s=3600) as dedicated:
            await pid(dedicated.session("key"))
            kept = dedicated.processes
            async with runner.pool.lease(env):  # the other kernel
                await pid(runner)  # a plain run: needs the kernel the kept process holds
            return kept, dedicated.processes

    kept_before, kept_after = portal.run(go(), timeout=30)
    assert (kept_before, kept_after) == (1, 0)


def test_closing_lets_every_process_go(
    portal: Portal, two_kernels: tuple[ScriptRunner, EnvironmentSpec]
) -> None:
    runner, env = two_kernels
    wait_for(lambda: runner.pool.stats()[env.id]["idle"] == 2, timeout=10)

    async def go() -> DedicatedProcesses:
        async with DedicatedProcesses(runner) as dedicated:
            for key in ("a", "b"):  # one after the other: b's lease finds the idle kernel
                await pid(dedicated.session(key))
            assert dedicated.processes == 2
            assert runner.pool.stats()[env.id]["leased"] == 2
        return dedicated

    dedicated = portal.run(go(), timeout=30)
    wait_for(lambda: runner.pool.stats()[env.id]["leased"] == 0, timeout=10)
    with pytest.raises(RuntimeError, match="not open"):
        dedicated.session("a")
