"""`gristmill serve` as a real process on a loopback port: status page, health, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import psutil

from tests.conftest import ROOT, wait_for


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "serve", "--port", "0", "--data", str(data)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "GRISTMILL_POOL_SIZE": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"

        def health() -> dict:
            with urllib.request.urlopen(f"{base}/api/health", timeout=5) as response:
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                return json.loads(response.read())

        wait_for(
            lambda: health()["kernels"].get("default", {}).get("idle") == 1,
            timeout=60,
            what="a warm kernel",
        )
        assert health()["data"] == str(data)
        assert health()["flow_runs_in_progress"] == 0
        assert (data / "runs.duckdb").exists()  # the server owns the run store
        with urllib.request.urlopen(f"{base}/", timeout=5) as response:
            page = response.read().decode()
        assert "Gristmill is running" in page and "default" in page
        kernels = psutil.Process(proc.pid).children(recursive=True)
        assert kernels, "the server should own its kernel processes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_for(
            lambda: not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels),
            timeout=20,
            what="kernels to exit",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
