"""A process running a flow is killed with SIGKILL mid-step; a new process finishes it.

A side-effect log proves completed steps ran once and the interrupted step ran again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT, wait_for


def gristmill(*args: str, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "--data", str(data), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )


def test_killed_run_resumes_where_it_stopped(tmp_path):
    data = tmp_path / "data"
    effects = tmp_path / "effects.log"
    marker = tmp_path / "second-started"
    flow = tmp_path / "durable.yaml"
    flow.write_text(
        textwrap.dedent(
            f"""
            steps:
              - id: first
                python: |
                  def main():
                      with open({str(effects)!r}, "a") as f:
                          f.write("first\\n")
                      return 1
              - id: second
                python: |
                  import os, time
                  def main():
                      with open({str(effects)!r}, "a") as f:
                          f.write("second\\n")
                      if not os.path.exists({str(marker)!r}):
                          open({str(marker)!r}, "w").close()
                          time.sleep(120)  # killed here the first time
                      return 2
              - id: third
                python: |
                  def main(a, b):
                      with open({str(effects)!r}, "a") as f:
                          f.write("third\\n")
                      return a + b
                args: {{a: "${{{{ results.first }}}}", b: "${{{{ results.second }}}}"}}
            """
        )
    )
    first = gristmill("run", str(flow), data=data)
    wait_for(marker.exists, timeout=60, what="the second step to start")
    os.killpg(first.pid, signal.SIGKILL)  # the CLI and everything it started
    first.wait(timeout=10)
    assert effects.read_text() == "first\nsecond\n"

    # Any process that opens the store resumes interrupted runs: here another `run`.
    trivial = tmp_path / "trivial.yaml"
    trivial.write_text("steps:\n  - id: t\n    identity: true\n    args: {x: 1}\n")
    second = gristmill("run", str(trivial), data=data)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert effects.read_text() == "first\nsecond\nsecond\nthird\n"

    query = gristmill(
        "runs", "--sql", "select path, status, result from runs order by created_at", data=data
    )
    out, err = query.communicate(timeout=60)
    assert query.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [
        ("durable.yaml", "success"),
        ("trivial.yaml", "success"),
    ]
    assert rows[0]["result"] == 3  # JSON columns come back parsed
