"""`gristmill serve` as a real process on a free loopback port, for tests.

`serving(data, env=...)` starts it, reads the URL it prints ("Gristmill serving on
http://127.0.0.1:PORT/") and, with `warm=True`, waits for a warm kernel; on leaving the
block the server gets SIGTERM (SIGKILL if it does not stop). Its stderr goes on to
`log` when given (the start-up line included), else it is read and dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.conftest import ROOT, wait_for

_SERVING = re.compile(r"Gristmill serving on (http://127\.0\.0\.1:\d+)/")


@dataclass
class ServerProcess:
    base: str
    proc: subprocess.Popen[str]
    data: Path


def health(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/health", timeout=5) as response:
        return dict(json.loads(response.read()))


def has_warm_kernel(base: str) -> bool:
    try:
        return bool(health(base)["kernels"].get("default", {}).get("idle"))
    except OSError:
        return False


def _drain(stream: IO[str], log: IO[str] | None) -> None:
    for line in stream:
        if log is not None:
            with contextlib.suppress(ValueError):  # the log was closed first
                log.write(line)


@contextlib.contextmanager
def serving(
    data: Path,
    *,
    env: dict[str, str] | None = None,
    pool_size: int = 1,
    warm: bool = False,
    log: IO[str] | None = None,
) -> Iterator[ServerProcess]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "serve", "--port", "0", "--data", str(data)],
        stderr=subprocess.PIPE,
        stdout=log or subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GRISTMILL_POOL_SIZE": str(pool_size),
            **(env or {}),
        },
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        base = ""
        for line in proc.stderr:
            seen.append(line)
            if log is not None:
                log.write(line)
            if match := _SERVING.search(line):
                base = match.group(1)
                break
        assert base, "gristmill serve did not start:\n" + "".join(seen)[-3000:]
        # Keep reading: a server whose stderr pipe fills up blocks on its next log line.
        threading.Thread(target=_drain, args=(proc.stderr, log), daemon=True).start()
        if warm:
            wait_for(lambda: has_warm_kernel(base), timeout=90, what="a warm kernel")
        yield ServerProcess(base, proc, data)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
