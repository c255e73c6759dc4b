"""Shared fixtures: real kernels on a background event loop, deadlines instead of sleeps."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernels.environments import EnvironmentSpec, EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import ScriptRunner
from tests.portal import Portal

ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Wait until `condition()` is true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def portal() -> Iterator[Portal]:
    p = Portal()
    yield p
    p.close()


@pytest.fixture(scope="module")
def default_env() -> EnvironmentSpec:
    return EnvironmentSpec(id="default", python=Path(sys.executable), requirements=(), lock=None)


@pytest.fixture(scope="module")
def pool(portal: Portal, default_env: EnvironmentSpec) -> Iterator[KernelPool]:
    """A warm pool of two real ipykernels, shared by a test module."""
    kernel_pool = KernelPool(PoolConfig(size=2, health_interval_s=3600))
    portal.run(kernel_pool.__aenter__())
    portal.run(kernel_pool.wait_warm(default_env, timeout=120))
    yield kernel_pool
    portal.run(kernel_pool.close())


@pytest.fixture(scope="module")
def runner(pool: KernelPool, tmp_path_factory: pytest.TempPathFactory) -> ScriptRunner:
    return ScriptRunner(
        pool, EnvironmentStore(tmp_path_factory.mktemp("envs")), interrupt_grace_s=1.0
    )
