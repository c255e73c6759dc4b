"""One pooled kernel process, seen from the host.

A `PooledKernel` is an ipykernel started by `kernel_app.py` in an environment's
interpreter, over IPC sockets in an owner-only runtime directory, with message signing
on (jupyter_client's default HMAC key). Next to its Jupyter channels it serves runs on
two unix sockets, where a pre-forked run process is always waiting: `run_socket`, whose
zygote is lean (its loaded modules are `lean_modules`), and `full_run_socket`, whose
zygote has more of the standard library loaded (kernel_app.FULL_PRELOAD).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from kernels import framing
from kernels.environments import EnvironmentSpec
from kernels.errors import KernelDiedError

# The directory holding the `kernels` package: kernels in other environments import
# their side of the protocol (kernel_app, zygote, child) from here.
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def write_kernelspec(specs_dir: Path, env: EnvironmentSpec) -> str:
    """Write the kernelspec for `env` under `specs_dir`; returns the kernel name."""
    name = f"gristmill-{env.id}"
    spec_dir = specs_dir / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    spec = {
        "argv": [
            str(env.python),
            "-m",
            "kernels.kernel_app",
            "--run-socket",
            "{connection_file}.run",
            "--full-run-socket",
            "{connection_file}.frun",
            "-f",
            "{connection_file}",
            # Runs never need IPython's history database; skipping it saves a thread and disk writes.
            "--HistoryManager.enabled=False",
        ],
        "display_name": f"Gristmill ({env.id})",
        "language": "python",
        "env": {"PYTHONPATH": pythonpath, "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        "metadata": {"gristmill_environment": env.id},
    }
    tmp = spec_dir / "kernel.json.tmp"
    tmp.write_text(json.dumps(spec, indent=2))
    tmp.replace(spec_dir / "kernel.json")
    return name


class PooledKernel:
    """A kernel process the pool owns: start it, check it, kill it."""

    _serial = itertools.count(1)

    def __init__(
        self, env: EnvironmentSpec, runtime_dir: Path, specs: KernelSpecManager, kernel_name: str
    ) -> None:
        n = next(self._serial)
        self.id = f"{env.id}-{n}"
        self.env = env
        self.runs = 0
        self.started_at = 0.0
        self.last_checked = 0.0
        base = runtime_dir / f"k{n}"
        self.connection_file = Path(f"{base}.json")
        self.run_socket = Path(f"{self.connection_file}.run")
        self.full_run_socket = Path(f"{self.connection_file}.frun")
        self.lean_modules: frozenset[str] = frozenset()  # learnt by `ping`
        self.log_file = Path(f"{base}.log")
        self._manager = AsyncKernelManager(
            kernel_name=kernel_name,
            kernel_spec_manager=specs,
            transport="ipc",
            ip=str(base),
            connection_file=str(self.connection_file),
        )
        self._client: AsyncKernelClient | None = None

    @property
    def pid(self) -> int | None:
        provisioner = self._manager.provisioner
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    async def start(self, timeout: float) -> None:
        """Start the process and return once both the Jupyter channels and the run socket answer."""
        deadline = time.monotonic() + timeout
        with open(self.log_file, "ab") as log:
            await self._manager.start_kernel(
                stdout=log, stderr=log, stdin=None, cwd=str(self.log_file.parent)
            )
        client = self._manager.client()
        assert isinstance(client, AsyncKernelClient)
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=True)
        self._client = client
        while not await self.kernel_info(max(0.1, min(2.0, deadline - time.monotonic()))):
            if not self.alive():
                raise KernelDiedError(
                    f"kernel {self.id} exited while starting; its log: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise KernelDiedError(
                    f"kernel {self.id} did not answer within {timeout:.0f} s; its log: {self.log_tail()}"
                )
        if not await self.ping(max(1.0, deadline - time.monotonic())):
            raise KernelDiedError(
                f"kernel {self.id} started but its run socket does not answer; its log: {self.log_tail()}"
            )
        self.started_at = self.last_checked = time.monotonic()

    def alive(self) -> bool:
        """Whether the process is still running (cheap: a non-blocking waitpid)."""
        process = getattr(self._manager.provisioner, "process", None)
        return process is not None and process.poll() is None

    async def kernel_info(self, timeout: float) -> bool:
        """A kernel_info round trip on the shell channel, within `timeout` seconds."""
        client = self._client
        if client is None:
            return False
        msg_id = client.kernel_info()
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reply: dict[str, Any] = await client.get_shell_msg(timeout=remaining)
            except Exception:  # queue.Empty on timeout; a closed channel
                return False
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    async def ping(self, timeout: float) -> bool:
        """Ask the waiting run processes to answer; proves both zygotes are serving, and
        learns which modules the lean one has loaded (`lean_modules`)."""
        pings = (_ping(self.run_socket), _ping(self.full_run_socket))
        try:
            async with asyncio.timeout(timeout):
                # Each answer or failure is kept: one failing must not leave the other behind.
                answers = await asyncio.gather(*pings, return_exceptions=True)
        except TimeoutError:
            return False
        lean, full = answers
        if not isinstance(lean, dict) or not isinstance(full, dict):
            return False
        self.lean_modules = frozenset(str(name) for name in lean.get("modules") or ())
        return True

    async def check(self, timeout: float) -> bool:
        """Full health check: process alive, Jupyter channel and run socket answering."""
        healthy = self.alive() and await self.kernel_info(timeout) and await self.ping(timeout)
        self.last_checked = time.monotonic()
        return healthy

    async def kill(self) -> None:
        """Kill the kernel's whole process group (kernel, zygote, runs) and clean up its files."""
        if self._client is not None:
            self._client.stop_channels()
            self._client = None
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await self._manager.shutdown_kernel(now=True)
        for path in (self.run_socket, self.full_run_socket, self.connection_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return "\n".join(tail) or "(empty)"


async def _ping(run_socket: Path) -> dict[str, Any]:
    """The `pong` frame of the run process waiting on `run_socket`."""
    reader, writer = await asyncio.open_unix_connection(str(run_socket))
    try:
        writer.write(framing.encode_frame({"kind": "ping"}))
        await writer.drain()
        reply = await framing.read_frame(reader)
    finally:
        writer.close()
    if reply is None or reply.get("t") != "pong":
        raise framing.FrameError(f"{run_socket} answered {reply!r} to a ping")
    return reply
