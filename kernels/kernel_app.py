"""Entry point of a pooled kernel process: `python -m kernels.kernel_app --run-socket P -f F`.

Before ipykernel starts (and with it its threads and ZeroMQ sockets) this imports what
runs need, binds the run socket (owner-only) and forks the zygote that serves it
(`zygote.py`). Then it becomes an ordinary ipykernel on the connection file `-f F`,
which the pool uses for health checks and which notebooks can use as any kernel.

Runs inside the kernel's environment: standard library and ipykernel only.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
import time

from kernels import zygote

# What most runs need, imported once here and shared by every fork. Every page and every
# mapping the zygote holds is paid for in each run process (copied page tables at fork,
# torn down at exit, refaulted here: this VM shadows page tables), so what is rarely
# needed stays out. Not IPython nor ipykernel: with them the zygote cost twice as much
# per run (290 vs 460 isolated runs/s); the launcher imports ipykernel after forking the
# zygote. Not asyncio: it brings ssl and 4.6 MiB of heap, and without it a three-step
# flow costs 16 % less CPU (5.7 vs 6.9 ms); a script that imports asyncio (or has an
# async `main`) pays about 30 ms for the import in its run. `kernels.child` and what it
# imports keep to this list too (tests/kernels/test_kernel_app.py checks).
PRELOAD = (
    "base64",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "json",
    "subprocess",
    "typing",
    "uuid",
    "kernels.child",
)


def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)


def _bind(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket file is created owner-only
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    return listener


def _trim_after_settling(delay: float) -> None:
    # Start-up leaves tens of MiB of freed but still mapped heap; give it back once idle.
    time.sleep(delay)
    zygote.release_free_memory()


def _exit_when_zygote_dies(pid: int) -> None:
    # A kernel without its zygote cannot run anything: die so the pool replaces us.
    os.waitpid(pid, 0)
    os._exit(70)


def _split_args(argv: list[str]) -> tuple[str, list[str]]:
    """`--run-socket P` (or `--run-socket=P`) and the arguments left for ipykernel."""
    rest: list[str] = []
    run_socket = None
    args = iter(argv)
    for arg in args:
        if arg == "--run-socket":
            run_socket = next(args, None)
        elif arg.startswith("--run-socket="):
            run_socket = arg.partition("=")[2]
        else:
            rest.append(arg)
    if not run_socket:
        raise SystemExit("kernel_app: --run-socket PATH is required")
    return run_socket, rest


def main(argv: list[str] | None = None) -> None:
    run_socket, rest = _split_args(sys.argv[1:] if argv is None else argv)
    _preload()
    listener = _bind(run_socket)
    zygote_pid = zygote.fork_zygote(listener)
    listener.close()
    threading.Thread(target=_exit_when_zygote_dies, args=(zygote_pid,), daemon=True).start()

    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(rest)
    threading.Thread(target=_trim_after_settling, args=(1.0,), daemon=True).start()
    app.start()


if __name__ == "__main__":
    main()
