"""End-to-end tests: real `gristmill serve` processes, real HTTP on 127.0.0.1, real kernels.

`launch(data)` starts a server on a data dir and waits until it answers and has a warm
kernel; a test may stop it (SIGTERM), kill it (SIGKILL) and launch another on the same
data dir, which is what restart tests are about. Each server's stdout and stderr go to
files beside (never inside) the data dir, so that a test can read what the server said
and scan it for secrets. Every process a test started, and the kernels under it, is
ended at teardown, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT, wait_for

SERVING = re.compile(r"Gristmill serving on (http://127\.0\.0\.1:\d+)/")


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]
    seconds: float = 0.0


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Response:
    """One HTTP request; the body is parsed as JSON when it is JSON."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, payload, got = error.code, error.read(), error.headers
    seconds = time.perf_counter() - started
    text = payload.decode(errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Response(status, parsed, {k.lower(): v for k, v in got.items()}, seconds)


@dataclass
class Server:
    """One `gristmill serve` process and how to talk to it (as admin by default)."""

    base: str
    data: Path
    token: str
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    kernels: dict[int, psutil.Process] = field(default_factory=dict)

    def api(self, method: str, path: str, body: Any = None, **options: Any) -> Response:
        options.setdefault("token", self.token)
        return call(self.base, method, path, body, **options)

    def ok(self, method: str, path: str, body: Any = None, **options: Any) -> Any:
        """The parsed body of a call that must succeed (2xx)."""
        response = self.api(method, path, body, **options)
        assert 200 <= response.status < 300, (method, path, response.status, response.body)
        return response.body

    def job(self, job_id: str, **options: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.ok("GET", f"/api/jobs/{job_id}", **options)
        return body

    def wait_job(
        self, job_id: str, statuses: tuple[str, ...], timeout: float = 60, **options: Any
    ) -> dict[str, Any]:
        """The job once its status is one of `statuses` (polled, with a deadline)."""
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.job(job_id, **options))
            return seen["status"] in statuses

        wait_for(reached, timeout=timeout, interval=0.1, what=f"job {job_id} to be {statuses}")
        return seen

    def deploy(self, kind: str, path: str, content: str, **options: Any) -> dict[str, Any]:
        plural = {"script": "scripts", "flow": "flows"}[kind]
        body: dict[str, Any] = self.ok(
            "PUT", f"/api/{plural}/{path}", {"content": content}, **options
        )
        return body

    def add_user(self, name: str, role: str, **token_options: Any) -> str:
        """Creates the user; returns a fresh API token of theirs."""
        self.ok("POST", "/api/users", {"name": name, "password": f"pw-{name}-0123", "role": role})
        created = self.ok("POST", "/api/tokens", {"label": "e2e", "owner": name, **token_options})
        return str(created["token"])

    def add_folder(self, name: str, rights: dict[str, str]) -> None:
        self.ok("POST", "/api/folders", {"name": name})
        for principal, right in rights.items():
            self.ok("PUT", f"/api/folders/{name}/rights", {"principal": principal, "right": right})

    def output(self) -> bytes:
        return self.stdout.read_bytes() + self.stderr.read_bytes()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the process to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (a crash, an OOM kill, a power cut)."""
        self.kernels |= self.children()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def children(self) -> dict[int, psutil.Process]:
        """The server's descendants (kernels and their helpers), as psutil handles: a
        handle refuses to signal a pid that was reused by another process."""
        try:
            return {p.pid: p for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return {}


def _wait_serving(proc: subprocess.Popen[bytes], stderr: Path, timeout: float) -> str:
    found: list[str] = []

    def serving() -> bool:
        match = SERVING.search(stderr.read_text(errors="replace"))
        if match:
            found.append(match.group(1))
            return True
        if proc.poll() is not None:
            raise AssertionError(
                f"the server exited with {proc.returncode} before serving:\n"
                + stderr.read_text(errors="replace")[-3000:]
            )
        return False

    wait_for(serving, timeout=timeout, interval=0.05, what="'Gristmill serving on' on stderr")
    return found[0]


class Launcher:
    """Starts servers whose logs go to `logs`; `close()` ends them all, and the kernels
    under them, by pid."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.token = "gm_" + secrets.token_urlsafe(32)
        self.started: list[Server] = []

    def __call__(self, data: Path, name: str = "server", pool_size: int = 2) -> Server:
        """A started server on `data`, answering and with a warm kernel."""
        self.logs.mkdir(parents=True, exist_ok=True)
        stdout, stderr = self.logs / f"{name}.out", self.logs / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "studio.cli", "serve", "--port", "0", "--data", str(data)],
                stdout=out,
                stderr=err,
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "GRISTMILL_POOL_SIZE": str(pool_size),
                    "GRISTMILL_ADMIN_PASSWORD": "e2e-admin-password",
                    "GRISTMILL_ADMIN_TOKEN": self.token,
                },
            )
        server = Server("", data, self.token, proc, stdout, stderr)
        self.started.append(server)
        server.base = _wait_serving(proc, stderr, timeout=60)

        def warm() -> bool:
            try:
                health = call(server.base, "GET", "/api/health", timeout=5).body
            except OSError:
                return False
            return bool(health["kernels"].get("default", {}).get("idle"))

        wait_for(warm, timeout=90, interval=0.1, what=f"{name}: health and a warm kernel")
        server.kernels |= server.children()
        return server

    def close(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.kernels |= server.children()
                server.proc.send_signal(signal.SIGTERM)
                try:
                    server.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait(timeout=10)
            for process in server.kernels.values():
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """`launch(data, name)` -> a started, healthy server; all are ended at teardown."""
    launcher = Launcher(tmp_path / "logs")
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def module_launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """`launch` for a module-scoped scenario that several tests look at."""
    launcher = Launcher(tmp_path_factory.mktemp("logs"))
    yield launcher
    launcher.close()


def lines(path: Path) -> list[str]:
    """The lines of a side-effect file ([] when nothing wrote it yet)."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
