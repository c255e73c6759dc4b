"""Flows through the command line: run, exit 3 at an approval, resume, cancel, runs --sql."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

FLOWS = ROOT / "examples" / "flows"


def gristmill(
    *args: str | Path, data: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "studio.cli", "--data", str(data), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_nightly_import_example_runs(data):
    done = gristmill("run", FLOWS / "nightly_import.yaml", data=data)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["regions"][0] == {"region": "north", "orders": 2, "total": 140.49}
    assert result["approval"] == {"approved": "auto"}
    logs = gristmill("runs", "--sql", "select key, text from logs", data=data)
    assert {"key": "clean", "text": "kept 4 rows, skipped 1\n"} in [
        json.loads(line) for line in logs.stdout.splitlines()
    ]


def test_refund_example_waits_for_approval_then_resumes(data):
    done = gristmill(
        "run",
        FLOWS / "refund.yaml",
        "-a",
        "order_id=7",
        "-a",
        "amount=25",
        "-a",
        "reason=late",
        data=data,
    )
    assert done.returncode == 3, done.stderr
    match = re.search(r"gristmill resume ([0-9a-f]{32})", done.stderr)
    assert match, done.stderr
    assert "resume link:" in done.stderr and "cancel link:" in done.stderr
    run_id = match.group(1)
    resumed = gristmill("resume", run_id, "--payload", '{"note": "customer is right"}', data=data)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {
        "order_id": 7,
        "amount": 25.0,
        "reason": "late",
        "status": "refunded",
        "note": "customer is right",
    }


def test_cancel_a_suspended_run(data):
    done = gristmill(
        "run",
        FLOWS / "refund.yaml",
        "-a",
        "order_id=1",
        "-a",
        "amount=5",
        "-a",
        "reason=other",
        data=data,
    )
    run_id = re.search(r"gristmill resume ([0-9a-f]{32})", done.stderr).group(1)
    cancelled = gristmill("cancel", run_id, data=data)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"id": run_id, "status": "cancelled"}
    again = gristmill("resume", run_id, data=data)
    assert again.returncode == 2
    assert "cancelled" in again.stderr


def test_failed_flow_exits_1_and_recovered_flow_exits_0(tmp_path, data):
    failing = tmp_path / "fail.yaml"
    failing.write_text(
        "steps:\n  - id: boom\n    python: \"def main(): raise RuntimeError('nope')\"\n"
    )
    done = gristmill("run", failing, data=data)
    assert done.returncode == 1
    assert "step 'boom': RuntimeError: nope" in done.stderr
    recovering = tmp_path / "recover.yaml"
    recovering.write_text(
        failing.read_text()
        + "on_failure:\n  - id: r\n    python: \"def main(e): return {'handled': e['message']}\"\n    args: {e: '${{ error }}'}\n"
    )
    done = gristmill("run", recovering, data=data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"handled": "nope"}


def test_bad_flow_file_exits_2_with_line_and_key(tmp_path, data):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "steps:\n  - id: a\n    python: 'def main(): return 1'\n    retyr: {attempts: 2}\n"
    )
    done = gristmill("run", bad, data=data)
    assert done.returncode == 2
    assert "bad.yaml:4" in done.stderr and "retyr" in done.stderr and "retry" in done.stderr


def test_runs_sql_is_read_only(tmp_path, data):
    flow = tmp_path / "one.yaml"
    flow.write_text("steps:\n  - id: a\n    python: 'def main(): return 1'\n")
    assert gristmill("run", flow, data=data).returncode == 0
    done = gristmill(
        "runs", "--sql", "select step_id, status from steps where status = 'success'", data=data
    )
    assert done.returncode == 0, done.stderr
    assert {"step_id": "a", "status": "success"} in [
        json.loads(line) for line in done.stdout.splitlines()
    ]
    refused = gristmill("runs", "--sql", "delete from runs", data=data)
    assert refused.returncode == 2
    assert "refused" in refused.stderr.lower()


def test_sql_script_runs_with_typed_arguments(tmp_path, data):
    script = tmp_path / "squares.sql"
    script.write_text("-- $n (int) = 3\nselect i, i * i as sq from range($n) t(i) order by i\n")
    done = gristmill("run", script, "-a", "n=2", data=data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"i": 0, "sq": 0}, {"i": 1, "sq": 1}]


def test_every_example_flow_loads_and_benchmark_flows_match_the_benchmark():
    from benchmarks.flows import THREE_STEPS, THREE_STEPS_DEDICATED, chain
    from flows.flow_files import load_flow_file

    for path in sorted(FLOWS.glob("*.yaml")):
        assert load_flow_file(path).steps, path
    assert (FLOWS / "bench_light40.yaml").read_text().endswith(chain(40, 10))
    assert (FLOWS / "bench_three_steps.yaml").read_text().endswith(THREE_STEPS)
    dedicated = FLOWS / "bench_three_steps_dedicated.yaml"
    assert dedicated.read_text().endswith(THREE_STEPS_DEDICATED)


def test_a_dedicated_flow_runs_from_the_cli(data):
    done = gristmill("run", FLOWS / "bench_three_steps_dedicated.yaml", data=data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == 2
