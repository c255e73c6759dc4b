"""The zygote: a single-threaded process that forks run processes ahead of time.

A kernel's launcher (`kernel_app.py`) imports what runs need, binds the run socket and
forks the zygote *before* ipykernel starts its threads and ZeroMQ sockets. Forking a
small single-threaded process is cheap (about 1 ms here), where forking a running
ipykernel costs about 20 ms in copy-on-write faults. The zygote keeps exactly one
child waiting in `accept()` on the run socket; when that child takes a job it says so
on a pipe and the zygote forks the next one, so a run never waits for a fork.

Imported inside kernels: standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import select
import signal
import socket
import sys
from collections.abc import Callable

from kernels import child, run_output

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


# Looked up once, before any fork: loading it in each run process cost a third of a
# millisecond of CPU there.
_PRCTL = _prctl()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans left behind)."""
    parent = os.getppid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (see kernel_app)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def fork_zygote(listener: socket.socket) -> int:
    """Fork the zygote serving `listener`; returns its pid in the caller."""
    pid = os.fork()
    if pid == 0:
        try:
            _serve(listener)
        finally:
            os._exit(0)
    return pid


def _serve(listener: socket.socket) -> None:
    die_with_parent()
    # Interrupts aimed at the kernel's process group are for runs, not for the zygote.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    child.warm_up()
    release_free_memory()
    # Move everything imported so far out of the collector's reach, so children do not
    # touch (and copy) those pages when they collect.
    gc.freeze()
    while True:
        took_job, tell_zygote = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(took_job)
            _child(listener, tell_zygote)
        os.close(tell_zygote)
        # Wait until the child has accepted a job (a byte) or died (end of file).
        while True:
            ready, _, _ = select.select([took_job], [], [], 5.0)
            _reap()
            if ready:
                break
        os.close(took_job)


def _child(listener: socket.socket, tell_zygote: int) -> None:
    code = 0
    try:
        die_with_parent()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pipes = run_output.FdPipes()  # set up while waiting, off the run's critical path
        conn, _ = listener.accept()
        listener.close()
        os.write(tell_zygote, b"1")
        os.close(tell_zygote)
        with conn:
            child.run_connection(conn, pipes)
    except BaseException:
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(code)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
