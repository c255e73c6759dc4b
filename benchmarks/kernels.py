"""Kernel figures: fresh start vs pooled run latency, isolated throughput, idle memory.

- fresh_kernel_ms: start a new kernel and run a trivial main (median of a few).
- pooled_run_p50_ms / p99_ms: lease + run a trivial main + release, warm pool, sequential.
- pooled_async_run_p50_ms: the same with `async def main`, which runs in a process of
  the kernel's full zygote, which has asyncio loaded (kernel_app.FULL_PRELOAD).
- isolated_runs_per_s: sustained runs per second with two clients on a pool of two
  kernels; every run in its own forked process (isolation is always on).
- idle_kernel_rss_mib: resident memory of one idle kernel process; the whole tree
  (kernel, two zygotes, their waiting run processes) is given as proportional set size
  too, since the zygotes share most of their pages with the kernel.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from kernels.environments import EnvironmentStore
from kernels.execution import execute
from kernels.kernel import PooledKernel, write_kernelspec
from kernels.messages import RunJob
from kernels.pool import KernelPool, PoolConfig

TRIVIAL = RunJob(source="def main():\n    return 1\n", path="trivial.py")
ASYNC = RunJob(source="async def main():\n    return 1\n", path="async.py")


async def run(quick: bool = False) -> dict[str, Any]:
    env = EnvironmentStore(Path(tempfile.mkdtemp(prefix="gm-bench-"))).default()
    fresh = [await _fresh_kernel_ms(env) for _ in range(2 if quick else 5)]
    async with KernelPool(PoolConfig(size=2, health_interval_s=3600)) as pool:
        await pool.wait_warm(env, timeout=120)
        for _ in range(50):  # warm-up: caches, page faults, first forks
            await _one(pool, env)
        latencies = sorted([await _timed(pool, env) for _ in range(200 if quick else 1000)])
        async_latencies = [await _timed(pool, env, ASYNC) for _ in range(50 if quick else 200)]
        per_s = await _throughput(pool, env, seconds=2.0 if quick else 10.0, clients=2)
        await asyncio.sleep(1.0)  # let the kernels settle back to idle
        rss, tree_pss = _idle_memory(pool)
    p50 = _percentile(latencies, 0.50)
    fresh_ms = statistics.median(fresh)
    return {
        "fresh_kernel_ms": round(fresh_ms, 1),
        "pooled_run_p50_ms": round(p50, 2),
        "pooled_run_p99_ms": round(_percentile(latencies, 0.99), 2),
        "pooled_runs": len(latencies),
        "pooled_async_run_p50_ms": round(statistics.median(async_latencies), 2),
        "fresh_over_pooled_ratio": round(fresh_ms / p50, 1),
        "isolated_runs_per_s": round(per_s, 1),
        "idle_kernel_rss_mib": round(rss, 1),
        "idle_kernel_tree_pss_mib": round(tree_pss, 1),
    }


async def _fresh_kernel_ms(env: Any) -> float:
    runtime = Path(tempfile.mkdtemp(prefix="gm-"))
    specs = runtime / "specs"
    name = write_kernelspec(specs, env)
    kernel = PooledKernel(env, runtime, KernelSpecManager(kernel_dirs=[str(specs)]), name)
    started = time.perf_counter()
    try:
        await kernel.start(timeout=120)
        from kernels.pool import KernelLease

        result = await execute(KernelLease(kernel), TRIVIAL)
        assert result.value == 1, result
        return (time.perf_counter() - started) * 1000
    finally:
        await kernel.kill()


async def _one(pool: KernelPool, env: Any, job: RunJob = TRIVIAL) -> None:
    async with pool.lease(env) as lease:
        result = await execute(lease, job)
    if result.value != 1:
        raise RuntimeError(f"benchmark run failed: {result}")


async def _timed(pool: KernelPool, env: Any, job: RunJob = TRIVIAL) -> float:
    started = time.perf_counter()
    await _one(pool, env, job)
    return (time.perf_counter() - started) * 1000


async def _throughput(pool: KernelPool, env: Any, seconds: float, clients: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await _one(pool, env)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started)


def _idle_memory(pool: KernelPool) -> tuple[float, float]:
    kernel = next(k for s in pool._sets.values() for k in s.idle)
    assert kernel.pid is not None
    rss = _status_kib(kernel.pid, "VmRSS") / 1024
    tree = [kernel.pid, *_descendants(kernel.pid)]
    pss = sum(_pss_kib(pid) for pid in tree) / 1024
    return rss, pss


def _status_kib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def _pss_kib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            children += [kid, *_descendants(kid)]
    return children


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]
