"""The pool with real kernels: refill, replacement of dead and wedged kernels, clean shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap

import psutil
import pytest

from kernels.environments import EnvironmentSpec
from kernels.errors import PoolError
from kernels.execution import execute
from kernels.messages import RunJob, RunLimits, RunResult
from kernels.pool import KernelPool, PoolConfig
from kernels.scripts import Script
from tests.conftest import wait_for
from tests.portal import Portal


def run(
    portal: Portal,
    pool: KernelPool,
    env: EnvironmentSpec,
    source: str,
    limits: RunLimits | None = None,
) -> tuple[RunResult, str]:
    async def go() -> tuple[RunResult, str]:
        async with pool.lease(env) as lease:
            result = await execute(
                lease,
                RunJob(source=textwrap.dedent(source), limits=limits or RunLimits()),
                interrupt_grace_s=1.0,
            )
            return result, lease.kernel.id

    return portal.run(go())


def idle_ids(pool: KernelPool, portal: Portal, env: EnvironmentSpec) -> set[str]:
    async def ids() -> set[str]:
        return {k.id for k in pool._sets[env.id].idle}

    return portal.run(ids())


def kernel_pids(pool: KernelPool, portal: Portal, env: EnvironmentSpec) -> dict[str, int]:
    async def pids() -> dict[str, int]:
        return {k.id: k.pid for k in pool._sets[env.id].idle if k.pid}

    return portal.run(pids())


def wait_for_exit(pid: int, what: str) -> None:
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        what=what,
    )


def wait_for_refill(pool: KernelPool, portal: Portal, env: EnvironmentSpec, victim_id: str) -> None:
    """Until the pool is back to its two idle kernels, `victim_id` not among them."""
    try:
        wait_for(
            lambda: (
                pool.stats()[env.id]["idle"] == 2 and victim_id not in idle_ids(pool, portal, env)
            ),
            timeout=60,
            what="the pool to refill",
        )
    except AssertionError as exc:  # seen once under a full suite's load: say why
        raise AssertionError(
            f"{exc}; pool: {pool.stats()[env.id]}, replaced: {pool.replaced}, "
            f"last start failure: {pool._sets[env.id].last_failure}"
        ) from None


def test_pool_starts_warm_to_its_size(pool, default_env):
    assert pool.stats()["default"] == {"idle": 2, "leased": 0, "starting": 0, "target": 2}


def test_a_kernel_killed_with_sigkill_is_never_handed_out_and_is_replaced(
    portal, pool, runner, default_env
):
    before = kernel_pids(pool, portal, default_env)
    victim_id, victim_pid = sorted(before.items())[0]
    os.killpg(victim_pid, signal.SIGKILL)
    wait_for_exit(victim_pid, what="the kernel to die")
    # Every run works although one idle kernel is dead: a dead kernel is not leased, and
    # one that dies between lease and start is retried elsewhere (nothing of the job ran).
    for _ in range(4):
        result = portal.run(runner.run(Script.inline("def main():\n    return 'ok'\n"), {}))
        assert result.value == "ok"
        assert result.kernel_id != victim_id
    wait_for_refill(pool, portal, default_env, victim_id)


def test_a_kernel_whose_full_zygote_dies_exits_and_is_replaced(portal, pool, default_env):
    before = kernel_pids(pool, portal, default_env)
    victim_id, victim_pid = sorted(before.items())[-1]
    zygotes = [
        child
        for child in psutil.Process(victim_pid).children()
        if any("_asyncio" in m.path for m in child.memory_maps())
    ]
    assert len(zygotes) == 1, zygotes  # the full one: the lean zygote has no asyncio mapped
    zygotes[0].kill()
    wait_for_exit(victim_pid, what="the kernel to exit after its zygote")
    result, kernel_id = run(portal, pool, default_env, "async def main():\n    return 'ok'\n")
    assert result.value == "ok" and kernel_id != victim_id
    wait_for_refill(pool, portal, default_env, victim_id)


def test_a_wedged_kernel_is_killed_and_replaced_after_its_timeout(portal, pool, default_env):
    # Ignores SIGINT and is busy inside C code (a regex that backtracks for minutes).
    wedged = """
        import re, signal
        def main():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return bool(re.match(r"(a+)+$", "a" * 64 + "b"))
    """
    replaced = pool.replaced
    result, wedged_id = run(portal, pool, default_env, wedged, limits=RunLimits(timeout_s=0.5))
    assert result.status == "timeout"
    assert result.error is not None and "its kernel was killed and replaced" in result.error.message
    assert pool.replaced == replaced + 1
    wait_for(
        lambda: pool.stats()["default"]["idle"] == 2, timeout=60, what="the replacement kernel"
    )
    assert wedged_id not in idle_ids(pool, portal, default_env)
    assert run(portal, pool, default_env, "def main():\n    return 2\n")[0].value == 2


def test_health_check_replaces_an_unresponsive_idle_kernel(portal, pool, default_env):
    wait_for(lambda: pool.stats()["default"]["idle"] == 2, timeout=60, what="a full pool")
    # The most recently used idle kernel: the last one a check reaches (in queue order).
    victim_id, victim_pid = list(kernel_pids(pool, portal, default_env).items())[-1]
    os.kill(victim_pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        replaced = portal.run(pool.check_idle(default_env))
    finally:
        with contextlib.suppress(ProcessLookupError):  # the pool may have killed it already
            os.kill(victim_pid, signal.SIGCONT)
    assert replaced == 1
    assert victim_id not in idle_ids(pool, portal, default_env)
    wait_for(
        lambda: pool.stats()["default"]["idle"] == 2, timeout=60, what="the replacement kernel"
    )


def test_health_check_replaces_a_kernel_whose_full_run_socket_is_gone(portal, pool, default_env):
    wait_for(lambda: pool.stats()["default"]["idle"] == 2, timeout=60, what="a full pool")

    async def unlink_one() -> str:
        kernel = list(pool._sets[default_env.id].idle)[-1]  # the last one a check reaches
        kernel.full_run_socket.unlink()  # its zygote still runs but nothing reaches it
        return kernel.id

    victim_id = portal.run(unlink_one())
    assert portal.run(pool.check_idle(default_env)) == 1
    assert victim_id not in idle_ids(pool, portal, default_env)
    wait_for_refill(pool, portal, default_env, victim_id)


def test_closing_the_pool_leaves_no_process_behind(portal, default_env):
    own = KernelPool(PoolConfig(size=2, health_interval_s=3600))
    portal.run(own.__aenter__())
    portal.run(own.wait_warm(default_env, timeout=120))
    # A run in flight at close time too: its process must not survive either.
    descendants = {p.pid for p in psutil.Process().children(recursive=True)}
    pids = set(kernel_pids(own, portal, default_env).values())
    tree = {
        pid
        for pid in descendants
        if pid in pids or any(pp.pid in pids for pp in psutil.Process(pid).parents())
    }
    assert len(tree) >= 10  # two kernels, their two zygotes each and waiting run processes
    portal.run(own.close())
    wait_for(
        lambda: (
            not any(
                psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                for pid in tree
            )
        ),
        timeout=20,
        what="every kernel process to exit",
    )
    with pytest.raises(PoolError, match="closed"):
        own.warm(default_env)


def test_an_environment_whose_kernels_cannot_start_fails_with_a_clear_error(portal, tmp_path):
    broken = EnvironmentSpec(id="broken", python=tmp_path / "no-python", requirements=(), lock=None)
    own = KernelPool(PoolConfig(size=1, max_start_failures=2, start_timeout_s=10))
    portal.run(own.__aenter__())
    try:
        with pytest.raises(PoolError, match="keep failing to start"):
            portal.run(own.wait_warm(broken, timeout=60))
    finally:
        portal.run(own.close())
