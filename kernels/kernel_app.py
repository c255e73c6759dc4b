"""Entry point of a pooled kernel process: `python -m kernels.kernel_app --run-socket P -f F`.

Before ipykernel starts (and with it its threads and ZeroMQ sockets) this imports what
runs need, binds the run socket (owner-only) and forks the zygote that serves it
(`zygote.py`). Then it becomes an ordinary ipykernel on the connection file `-f F`,
which the pool uses for health checks and which notebooks can use as any kernel.

Runs inside the kernel's environment: standard library and ipykernel only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
import threading
import time

from kernels import zygote

# What most runs need, imported once here and shared by every fork. Not IPython nor
# ipykernel: every fork copies the page tables of all that is loaded, and with them the
# zygote cost twice as much per run (measured: 290 vs 460 isolated runs/s); the launcher
# imports ipykernel after forking the zygote, and a run that imports IPython pays for it.
PRELOAD = (
    "asyncio",
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run-socket", required=True)
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    _preload()
    listener = _bind(ours.run_socket)
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
