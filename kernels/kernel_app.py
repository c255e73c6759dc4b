"""Entry point of a pooled kernel process:
`python -m kernels.kernel_app --run-socket P [--full-run-socket Q] -f F`.

Before ipykernel starts (and with it its threads and ZeroMQ sockets) this imports what
runs need, binds the run socket (owner-only) and forks the zygote that serves it
(`zygote.py`); then, with more of the standard library imported (`FULL_PRELOAD`), the
same for the full run socket, whose zygote serves the scripts that import more than the
lean one has. Then it becomes an ordinary ipykernel on the
connection file `-f F`, which the pool uses for health checks and which notebooks can
use as any kernel.

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
# zygotes. `kernels.child` and what it imports keep to this list too (a test checks).
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
# The second zygote has these too, for the scripts that import something the lean one
# has not loaded (`execution.fits_lean`): asyncio (with ssl: 4.6 MiB, which in every
# run process made a three-step flow cost 16 % more CPU), urllib.request (http, email),
# tempfile and shutil (and the compression modules), logging, csv. There they start in
# about 2.5 ms instead of paying for those imports in each run (urllib.request: 21 ms).
FULL_PRELOAD = ("asyncio", "csv", "importlib.abc", "logging", "tempfile", "urllib.request")

_OPTIONS = ("--run-socket", "--full-run-socket")


def _preload(names: tuple[str, ...]) -> None:
    for name in names:
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
    # A kernel without one of its zygotes cannot run everything: die so the pool
    # replaces us.
    os.waitpid(pid, 0)
    os._exit(70)


def _split_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Our options (`--run-socket P`, `--full-run-socket P`, also with `=`) and the
    arguments left for ipykernel, in order."""
    ours: dict[str, str] = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name, equals, value = arg.partition("=")
        if name not in _OPTIONS:
            rest.append(arg)
            continue
        ours[name] = value if equals else next(args, "")
        if not ours[name]:
            raise SystemExit(f"kernel_app: {name} needs a socket path")
    if "--run-socket" not in ours:
        raise SystemExit("kernel_app: --run-socket PATH is required")
    return ours, rest


def _start_zygote(path: str) -> int:
    listener = _bind(path)
    try:
        return zygote.fork_zygote(listener)
    finally:
        listener.close()


def main(argv: list[str] | None = None) -> None:
    sockets, rest = _split_args(sys.argv[1:] if argv is None else argv)
    _preload(PRELOAD)
    zygotes = [_start_zygote(sockets["--run-socket"])]
    if "--full-run-socket" in sockets:  # forked after the lean one, which stays lean
        _preload(FULL_PRELOAD)
        zygotes.append(_start_zygote(sockets["--full-run-socket"]))
    for pid in zygotes:  # threads only after the forks: never fork a threaded process
        threading.Thread(target=_exit_when_zygote_dies, args=(pid,), daemon=True).start()

    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(rest)
    threading.Thread(target=_trim_after_settling, args=(1.0,), daemon=True).start()
    app.start()


if __name__ == "__main__":
    main()
