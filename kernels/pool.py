"""A pool of warm kernels, one warm set per environment.

Kernels are started ahead of time to each set's target size, refilled in the
background (outside any lock) when one is poisoned or dies, and health-checked while
idle. A lease hands out one live kernel for one run; releasing it returns the kernel
(isolated runs leave nothing behind in it) or, when the lease was poisoned (timeout,
crash, cancellation that did not stop), kills it and starts a replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from jupyter_client.kernelspec import KernelSpecManager

from kernels.closing import AsyncClosing
from kernels.environments import EnvironmentSpec
from kernels.errors import PoolError
from kernels.kernel import PooledKernel, write_kernelspec


@dataclass(frozen=True)
class PoolConfig:
    """How many kernels to keep warm and how patient to be with them."""

    size: int = 2  # warm kernels per environment in use
    # A set grows up to this when every kernel is busy and runs wait. Each kernel start
    # costs about a second of CPU, and CPU-bound runs gain nothing past two per core.
    max_size: int = field(default_factory=lambda: max(4, 2 * (os.cpu_count() or 1)))
    grow_after_s: float = 0.5  # ...for this long: starting a kernel costs ~1 s of CPU
    start_timeout_s: float = 60.0
    health_interval_s: float = 15.0
    health_timeout_s: float = 5.0
    max_runs_per_kernel: int | None = None  # recycle a kernel after this many runs
    max_start_failures: int = 3  # consecutive failures before leases get the error


@dataclass
class _WarmSet:
    env: EnvironmentSpec
    kernel_name: str
    target: int
    idle: deque[PooledKernel] = field(default_factory=deque)
    leased: set[PooledKernel] = field(default_factory=set)
    starting: int = 0
    waiting: int = 0  # leases waiting for a kernel
    failures: int = 0
    last_failure: str = ""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def count(self) -> int:
        return len(self.idle) + len(self.leased) + self.starting


class KernelLease:
    """One kernel, held for one run. Poison it when the kernel must not be reused."""

    def __init__(self, kernel: PooledKernel) -> None:
        self.kernel = kernel
        self.poisoned: str | None = None

    def poison(self, reason: str) -> None:
        self.poisoned = reason


class KernelPool(AsyncClosing):
    """Warm kernels per environment. Use as `async with KernelPool(config) as pool:`."""

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self._sets: dict[str, _WarmSet] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runtime_dir: Path | None = None
        self._specs: KernelSpecManager | None = None
        self._closed = False
        self.replaced = 0  # kernels killed and replaced (dead, wedged or poisoned)
        # Holders of idle leases (run processes kept for their owner's next run) that
        # give one back when a lease of that environment would otherwise wait.
        self._reclaimers: list[Callable[[str], bool]] = []

    async def __aenter__(self) -> Self:
        # Short, owner-only directory: unix socket paths are limited to ~108 bytes.
        self._runtime_dir = Path(tempfile.mkdtemp(prefix="gm-"))
        self._runtime_dir.chmod(0o700)
        (self._runtime_dir / "specs").mkdir()
        self._specs = KernelSpecManager(
            kernel_dirs=[str(self._runtime_dir / "specs")], ensure_native_kernel=False
        )
        self._spawn(self._health_loop())
        return self

    async def close(self) -> None:
        """Stop every kernel and remove the runtime directory; no process is left behind."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        kernels = [k for s in self._sets.values() for k in (*s.idle, *s.leased)]
        await asyncio.gather(*(k.kill() for k in kernels), return_exceptions=True)
        for s in self._sets.values():
            s.idle.clear()
            s.leased.clear()
            async with s.changed:
                s.changed.notify_all()
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)

    # ------------------------------------------------------------ warm sets

    def warm(self, env: EnvironmentSpec, size: int | None = None) -> None:
        """Keep `size` kernels (default: the configured size) warm for `env`."""
        wset = self._warm_set(env)
        if size is not None:
            wset.target = max(1, size)
        self._refill(wset)

    async def wait_warm(self, env: EnvironmentSpec, timeout: float | None = None) -> None:
        """Wait until `env`'s warm set is full of idle kernels (start-up, benchmarks)."""
        wset = self._warm_set(env)
        self._refill(wset)
        async with asyncio.timeout(timeout), wset.changed:
            while len(wset.idle) < wset.target:
                self._raise_if_failing(wset)
                await wset.changed.wait()

    def live_kernels(self, env: EnvironmentSpec) -> list[PooledKernel]:
        """The kernels of `env`, without leasing any: idle ones (most recently used
        first), then those running something. For requests that run no user code and go
        through the shell channel (completions), which runs do not use."""
        wset = self._sets.get(env.id)
        if wset is None:
            return []
        return [k for k in (*reversed(wset.idle), *wset.leased) if k.alive()]

    def environments(self) -> list[EnvironmentSpec]:
        """The environments this pool keeps warm kernels for."""
        return [wset.env for wset in self._sets.values()]

    def stats(self) -> dict[str, dict[str, int]]:
        """Idle, leased and starting kernels per environment."""
        return {
            env_id: {
                "idle": len(s.idle),
                "leased": len(s.leased),
                "starting": s.starting,
                "target": s.target,
            }
            for env_id, s in self._sets.items()
        }

    def _warm_set(self, env: EnvironmentSpec) -> _WarmSet:
        if self._closed or self._specs is None or self._runtime_dir is None:
            raise PoolError("the kernel pool is closed (or was never started with `async with`)")
        wset = self._sets.get(env.id)
        if wset is None:
            name = write_kernelspec(self._runtime_dir / "specs", env)
            wset = self._sets[env.id] = _WarmSet(
                env=env, kernel_name=name, target=max(1, self.config.size)
            )
        return wset

    def _refill(self, wset: _WarmSet) -> None:
        while (
            not self._closed
            and wset.count < wset.target
            and wset.failures < self.config.max_start_failures
        ):
            wset.starting += 1
            self._spawn(self._start_kernel(wset))

    async def _start_kernel(self, wset: _WarmSet) -> None:
        assert self._runtime_dir is not None and self._specs is not None
        kernel = PooledKernel(wset.env, self._runtime_dir, self._specs, wset.kernel_name)
        try:
            await kernel.start(self.config.start_timeout_s)
        except BaseException as exc:
            await kernel.kill()
            wset.failures += 1
            wset.last_failure = str(exc) or type(exc).__name__
            async with wset.changed:
                wset.starting -= 1
                wset.changed.notify_all()
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._refill(wset)
            return
        async with wset.changed:
            wset.starting -= 1
            wset.failures = 0
            if self._closed:
                self._spawn(kernel.kill())
                return
            wset.idle.append(kernel)
            wset.changed.notify_all()

    def _raise_if_failing(self, wset: _WarmSet) -> None:
        if self._closed:
            raise PoolError("the kernel pool is closed")
        if wset.failures >= self.config.max_start_failures and not wset.idle and not wset.starting:
            raise PoolError(
                f"kernels for environment {wset.env.id} keep failing to start "
                f"({wset.failures} times in a row); the last error: {wset.last_failure}"
            )

    # ------------------------------------------------------------ leases

    def add_reclaimer(self, reclaim: Callable[[str], bool]) -> None:
        """`reclaim(env_id)` is called when a lease of that environment finds no idle
        kernel: it lets one lease it holds idle go (True) or has none (False)."""
        self._reclaimers.append(reclaim)

    def remove_reclaimer(self, reclaim: Callable[[str], bool]) -> None:
        with contextlib.suppress(ValueError):
            self._reclaimers.remove(reclaim)

    @contextlib.asynccontextmanager
    async def lease(
        self, env: EnvironmentSpec, timeout: float | None = None
    ) -> AsyncIterator[KernelLease]:
        """Hold one live kernel of `env` for the block; it is released (or replaced) after."""
        wset = self._warm_set(env)
        self._refill(wset)
        kernel = await self._acquire(wset, timeout)
        lease = KernelLease(kernel)
        try:
            yield lease
        except BaseException:
            if lease.poisoned is None and not kernel.alive():
                lease.poison("the kernel died during the run")
            raise
        finally:
            await self._release(wset, lease)

    async def _acquire(self, wset: _WarmSet, timeout: float | None) -> PooledKernel:
        waiting_since: float | None = None
        async with asyncio.timeout(timeout), wset.changed:
            while True:
                # Sweep out every dead idle kernel (a non-blocking waitpid each), not just
                # the one on top, so a death anywhere in the set is replaced at once.
                for kernel in [k for k in wset.idle if not k.alive()]:
                    wset.idle.remove(kernel)
                    self._discard(wset, kernel)
                if wset.idle:
                    kernel = wset.idle.pop()  # the most recently used: its pages are warm
                    wset.leased.add(kernel)
                    return kernel
                self._raise_if_failing(wset)
                # A kernel held idle elsewhere comes back when its holder lets it go
                # (its run process exits), and `changed` wakes this wait.
                any(reclaim(wset.env.id) for reclaim in list(self._reclaimers))
                now = time.monotonic()
                if waiting_since is None:
                    waiting_since = now
                elif now - waiting_since >= self.config.grow_after_s:
                    # Busy for a while, not a burst that ends in a few ms: grow by the
                    # leases waiting beyond the kernels on their way. The set keeps its
                    # size, since such demand tends to return.
                    shortfall = wset.waiting + 1 - wset.starting
                    if shortfall > 0:
                        wset.target = min(self.config.max_size, wset.target + shortfall)
                self._refill(wset)
                wset.waiting += 1
                try:
                    async with asyncio.timeout(self.config.grow_after_s):
                        await wset.changed.wait()
                except TimeoutError:
                    pass
                finally:
                    wset.waiting -= 1

    async def _release(self, wset: _WarmSet, lease: KernelLease) -> None:
        kernel = lease.kernel
        kernel.runs += 1
        limit = self.config.max_runs_per_kernel
        async with wset.changed:
            wset.leased.discard(kernel)
            if (
                lease.poisoned is None
                and kernel.alive()
                and not self._closed
                and (limit is None or kernel.runs < limit)
            ):
                wset.idle.append(kernel)
                wset.changed.notify()  # one kernel back: one waiter can have it
            else:
                self._discard(wset, kernel)
                wset.changed.notify_all()

    def _discard(self, wset: _WarmSet, kernel: PooledKernel) -> None:
        self.replaced += 1
        self._spawn(kernel.kill())
        self._refill(wset)

    # ------------------------------------------------------------ health

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            for wset in list(self._sets.values()):
                await self.check_idle(wset.env)

    async def check_idle(self, env: EnvironmentSpec) -> int:
        """Health-check `env`'s idle kernels one at a time; returns how many were replaced."""
        wset = self._warm_set(env)
        replaced = 0
        # Each idle kernel once, the least recently used first. (Taking the first of the
        # queue each time checked the same healthy kernel over and over: it goes back
        # to the front, and the others were never looked at.)
        for kernel in list(wset.idle):
            async with wset.changed:
                if kernel not in wset.idle:  # leased since
                    continue
                wset.idle.remove(kernel)
                wset.leased.add(kernel)
            healthy = await kernel.check(self.config.health_timeout_s)
            async with wset.changed:
                wset.leased.discard(kernel)
                if healthy and not self._closed:
                    wset.idle.appendleft(kernel)
                else:
                    replaced += 1
                    self._discard(wset, kernel)
                wset.changed.notify_all()
        return replaced

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
