"""Flow figures: Windmill's public benchmark shapes, on a warm pool and a real store.

- light40_s: 40 sequential python steps each computing fibo(10), submit to result (median).
- long10_overhead_pct: 10 sequential fibo(33) steps against the same 10 calls in one
  bare Python process, measured in the same run, interleaved (medians of three each).
- three_step_p50_ms / three_step_per_s: flows of three trivial steps, 16 clients in a
  closed loop (each sends its next flow when the last one's result is back);
  three_step_4_p50_ms / three_step_4_per_s: the same with 4 clients (Little's law: p50
  <= 15 ms at 300 flows/s means about 4.5 flows in flight).
  three_step_4_cpu_ms: the machine's busy CPU time per flow meanwhile (all processes:
  engine, kernels, run processes; /proc/stat). Steadier than the rate on a noisy machine,
  and what bounds it: two cores give at most 2000 / cpu_ms flows per second.
- three_step_dedicated_*: the same flow with `dedicated: true`, whose runs keep their
  run processes for the next run (kernels/dedicated.py) instead of forking one per run.
Every client waits for its flow's result, as a sync webhook caller does, so runs are
submitted with `overlap` (a run starts while its record commits; see FlowEngine._create).
- store_rows_per_s: durable run/step records per second through the store.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flows.dispatcher import Dispatcher
from flows.duckdb_store import DuckDbStore
from flows.engine import FlowEngine
from kernels.dedicated import DedicatedProcesses
from kernels.environments import EnvironmentStore
from kernels.pool import KernelPool, PoolConfig
from kernels.runner import ScriptRunner

FIBO = "def fibo(n):\n    return n if n < 2 else fibo(n - 1) + fibo(n - 2)\n"


def chain(steps: int, n: int) -> str:
    """A flow of `steps` sequential python steps, each returning fibo(n)."""
    code = FIBO + f"def main():\n    return fibo({n})\n"
    body = "".join(
        f"  - id: s{i}\n    python: |\n" + "".join(f"      {line}\n" for line in code.splitlines())
        for i in range(steps)
    )
    return "steps:\n" + body


THREE_STEPS = "steps:\n" + "".join(
    f"  - id: s{i}\n    python: 'def main(): return {i}'\n" for i in range(3)
)
THREE_STEPS_DEDICATED = "dedicated: true\n" + THREE_STEPS


async def run(quick: bool = False) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="gm-bench-flows-"))
    environments = EnvironmentStore(data / "envs")
    async with (
        KernelPool(PoolConfig(size=4, health_interval_s=3600)) as pool,
        DuckDbStore(data / "runs.duckdb") as store,
        DedicatedProcesses(ScriptRunner(pool, environments)) as dedicated,
    ):
        await pool.wait_warm(environments.default(), timeout=120)
        engine = FlowEngine(
            store, dedicated.runner, data_dir=data, key=b"k" * 32, dedicated=dedicated
        )
        async with Dispatcher(store, engine, max_parallel=64) as dispatcher:

            async def once(definition: str) -> float:
                started = time.perf_counter()
                run = await dispatcher.submit(definition, {}, path="bench.yaml", overlap=True)
                outcome = await dispatcher.wait(run.id)
                if outcome.run.status != "success":
                    raise RuntimeError(f"benchmark flow failed: {outcome.run.error}")
                return time.perf_counter() - started

            await once(chain(5, 10))  # warm-up
            light = [await once(chain(40, 10)) for _ in range(3 if quick else 7)]

            # Closed loop: `clients` submitters, each waiting for its flow's result before
            # sending the next, so that many flows are in flight all the time.
            seconds = 3.0 if quick else 10.0
            closed = {n: await _closed_loop(once, THREE_STEPS, n, seconds) for n in (16, 4)}
            dedicated_closed = {
                n: await _closed_loop(once, THREE_STEPS_DEDICATED, n, seconds) for n in (16, 4)
            }
            sequential_three = [await once(THREE_STEPS) for _ in range(50 if quick else 200)]

            # Interleaved, so that both sides see the same machine (it drifts by tens of %).
            long_n = 27 if quick else 33
            flows_long, bares = [], []
            for _ in range(2 if quick else 3):
                bares.append(await asyncio.to_thread(_bare_python, long_n))
                flows_long.append(await once(chain(10, long_n)))
            flow_long, bare = statistics.median(flows_long), statistics.median(bares)
    figures: dict[str, Any] = {
        "light40_s": round(statistics.median(light), 3),
        "three_step_p50_ms": closed[16][0],
        "three_step_per_s": closed[16][1],
        "three_step_in_flight": 16,
        "three_step_4_p50_ms": closed[4][0],
        "three_step_4_per_s": closed[4][1],
        "three_step_4_cpu_ms": closed[4][2],
        "three_step_alone_p50_ms": round(statistics.median(sequential_three) * 1000, 1),
        "three_step_dedicated_p50_ms": dedicated_closed[16][0],
        "three_step_dedicated_per_s": dedicated_closed[16][1],
        "three_step_dedicated_4_p50_ms": dedicated_closed[4][0],
        "three_step_dedicated_4_per_s": dedicated_closed[4][1],
        "three_step_dedicated_4_cpu_ms": dedicated_closed[4][2],
        "long10_s": round(flow_long, 2),
        "long10_bare_python_s": round(bare, 2),
        "long10_overhead_pct": round((flow_long - bare) / bare * 100, 2),
    }
    from benchmarks import store as store_benchmark

    figures.update(await store_benchmark.run(quick=quick))
    return figures


async def _closed_loop(
    once: Callable[[str], Awaitable[float]], flow: str, clients: int, seconds: float
) -> tuple[float, float, float]:
    """p50 latency (ms), flows per second and busy CPU ms per flow of `clients`
    submitters of `flow` in a closed loop."""
    await asyncio.gather(*(once(flow) for _ in range(clients)))  # warm-up
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await once(flow))

    busy_before = _busy_cpu_s()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    per_s = len(latencies) / (time.perf_counter() - started)
    cpu_ms = (_busy_cpu_s() - busy_before) * 1000 / len(latencies)
    return round(statistics.median(latencies) * 1000, 1), round(per_s, 1), round(cpu_ms, 2)


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting on I/O)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _bare_python(n: int) -> float:
    code = (
        FIBO
        + f"import time\nt = time.perf_counter()\nfor _ in range(10): fibo({n})\nprint(time.perf_counter() - t)\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - started
