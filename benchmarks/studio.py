"""Studio figures, against a real `gristmill serve` on a loopback port.

- webhook_p50_ms / webhook_p99_ms: a sync webhook (`POST /api/run_wait/script/...`) of
  a trivial script, one client, warm server.
- webhook_runs_per_s / webhook_errors: 50 concurrent webhook clients in a closed loop
  for 30 s (5 s with --quick), each on its own keep-alive connection.
- home_interactive_ms: signed-in studio home page in Chromium, navigation start to the
  search box being usable (median of five loads).
- session_mib: server memory (PSS) per open studio page, over ten pages held open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

SCRIPT = "def main(x: int = 1):\n    return x + 1\n"
SCRIPT_PATH = "u/admin/bench_trivial"
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-password-1"


@contextlib.contextmanager
def server(data: Path, token: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A `gristmill serve` on a free port; yields its base URL and process."""
    env = {
        **os.environ,
        "GRISTMILL_ADMIN_TOKEN": token,
        "GRISTMILL_ADMIN_PASSWORD": PASSWORD,
    }
    command = [sys.executable, "-m", "studio.cli", "serve", "--port", "0", "--data", str(data)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                raise RuntimeError(f"gristmill serve exited with {process.wait()}")
            if match := re.search(r"serving on (http://\S+?)/? ", line + " "):
                url = match.group(1).rstrip("/")
        if url is None:
            raise RuntimeError("gristmill serve did not say where it listens within 120 s")
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _call(
    client: AsyncHTTPClient, url: str, token: str, method: str, body: Any = None
) -> Any:
    request = HTTPRequest(
        url,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body=None if body is None else json.dumps(body),
        request_timeout=60,
    )
    response = await client.fetch(request)
    return json.loads(response.body or b"null")


class _Connection:
    """One HTTP/1.1 keep-alive connection, requests one after another (as a partner
    system's connection pool or `wrk` sends them): the figures are the server's, not
    those of a new TCP connection per call."""

    def __init__(self, base: str, token: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port, self.token = host, int(port), token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        return int(status_line.split()[1]), json.loads(data or b"null")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _webhook_figures(base: str, token: str, quick: bool) -> dict[str, Any]:
    client = AsyncHTTPClient()
    await _call(client, f"{base}/api/scripts/{SCRIPT_PATH}", token, "PUT", {"content": SCRIPT})
    client.close()
    hook = f"/api/run_wait/script/{SCRIPT_PATH}"
    one = _Connection(base, token)
    for _ in range(20):  # warm: kernels, parse caches, token cache
        await one.call("POST", hook, {"x": 1})
    latencies = []
    for i in range(100 if quick else 400):
        began = time.perf_counter()
        status, reply = await one.call("POST", hook, {"x": i})
        latencies.append((time.perf_counter() - began) * 1000)
        assert status == 200 and reply["result"] == i + 1, reply
    one.close()
    latencies.sort()

    duration = 5.0 if quick else 30.0
    done = errors = 0
    stop_at = time.monotonic() + duration

    async def client_loop(n: int) -> None:
        nonlocal done, errors
        connection = _Connection(base, token)
        while time.monotonic() < stop_at:
            try:
                status, reply = await connection.call("POST", hook, {"x": n})
                if status == 200 and reply.get("result") == n + 1:
                    done += 1
                else:
                    errors += 1
            except (OSError, ValueError, asyncio.IncompleteReadError):
                errors += 1
                connection.close()
                connection = _Connection(base, token)
        connection.close()

    began = time.monotonic()
    await asyncio.gather(*(client_loop(n) for n in range(50)))
    elapsed = time.monotonic() - began
    return {
        "webhook_p50_ms": round(statistics.median(latencies), 2),
        "webhook_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "webhook_runs_per_s": round(done / elapsed, 1),
        "webhook_errors": errors,
    }


def _pss_mib(pid: int) -> float:
    """Proportional set size of the process, MiB (what it really costs the machine)."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kib = int(re.search(r"^Pss:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]
    return kib / 1024


def _page_figures(base: str, pid: int, quick: bool) -> dict[str, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"home_interactive_ms": None, "session_mib": None, "page_note": "no playwright"}
    if not Path(CHROMIUM).exists():
        return {"home_interactive_ms": None, "session_mib": None, "page_note": "no chromium"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{base}/login")
        page.fill("input[name=name]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/(\?.*)?$"))
        timings = []
        for _ in range(3 if quick else 5):
            began = time.perf_counter()
            page.goto(f"{base}/")
            page.get_by_placeholder(re.compile("search", re.I)).first.wait_for(state="visible")
            timings.append((time.perf_counter() - began) * 1000)
        page.close()
        before = _pss_mib(pid)
        pages = []
        for _ in range(10):
            held = context.new_page()
            held.goto(f"{base}/")
            held.get_by_placeholder(re.compile("search", re.I)).first.wait_for(state="visible")
            pages.append(held)
        time.sleep(1.0)  # let the server settle the sessions' documents before reading
        after = _pss_mib(pid)
        browser.close()
    return {
        "home_interactive_ms": round(statistics.median(timings), 1),
        "session_mib": round((after - before) / 10, 2),
    }


async def run(quick: bool = False) -> dict[str, Any]:
    token = "gm_" + secrets.token_urlsafe(32)
    data = Path(tempfile.mkdtemp(prefix="gristmill-bench-studio-"))
    try:
        with server(data, token) as (base, process):
            figures = await _webhook_figures(base, token, quick)
            figures |= await asyncio.to_thread(_page_figures, base, process.pid, quick)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return figures
