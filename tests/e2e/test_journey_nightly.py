"""Journey 2, nightly import: a scheduled flow produces rows in Python, survives a step
that fails twice and succeeds on its third attempt, aggregates the rows with a SQL step;
then the analyst asks the run history, in SQL, which steps were slowest, with
`gristmill runs --sql`: while the server runs (DuckDB lets no other process open the
store, so the CLI asks the server, given --url and --token; without them it must say
so), and after the server stopped (the CLI opens the file).

One scenario (module fixture) records what happened; the tests look at it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, wait_for
from tests.e2e.conftest import Launcher, lines

pytestmark = pytest.mark.xdist_group("e2e")

NIGHTLY = """
summary: Nightly import
schema:
  type: object
  properties:
    counter: {type: string}
    n: {type: integer, default: 6}
  required: [counter]
steps:
  - id: extract
    python: |
      def main(n: int):
          return [{"region": ["north", "south"][i % 2], "amount": i * 10} for i in range(n)]
    args: {n: "${{ flow_input.n }}"}
  - id: flaky
    python: |
      def main(counter: str):
          with open(counter, "a") as f:
              f.write("attempt\\n")
          with open(counter) as f:
              attempt = len(f.read().splitlines())
          if attempt < 3:
              raise RuntimeError(f"the upstream export is not there yet (attempt {attempt})")
          return attempt
    args: {counter: "${{ flow_input.counter }}"}
    retry: {attempts: 5, backoff: constant, delay: 0.2}
  - id: summary
    sql: select region, sum(amount) as total, count(*) as n from rows group by region order by region
    args: {rows: "${{ results.extract }}"}
"""

FLOW = "f/analytics/nightly"
SCHEDULE = "f/analytics/nightly_schedule"
SLOWEST = "select key, max(duration_ms) as slowest_ms from steps group by 1 order by 2 desc"


@dataclass
class Nightly:
    run: dict[str, Any]
    attempts: list[str]
    while_serving: subprocess.CompletedProcess[str]
    while_serving_no_token: subprocess.CompletedProcess[str]
    after_stop: subprocess.CompletedProcess[str]


def _runs_sql(data: Path, *options: str) -> subprocess.CompletedProcess[str]:
    gristmill = Path(sys.executable).with_name("gristmill")
    command = [str(gristmill)] if gristmill.exists() else [sys.executable, "-m", "studio.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("GRISTMILL_TOKEN", "GRISTMILL_URL")}
    return subprocess.run(
        [*command, "runs", "--sql", SLOWEST, "--data", str(data), *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


@pytest.fixture(scope="module")
def nightly(module_launch: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nightly]:
    root = tmp_path_factory.mktemp("nightly")
    data, counter = root / "data", root / "attempts.txt"
    server = module_launch(data, "nightly")
    server.add_folder("analytics", {})
    server.deploy("flow", FLOW, NIGHTLY)
    schedule = {
        "cron": "*/2 * * * * *",
        "timezone": "Europe/Paris",
        "target_kind": "flow",
        "target_path": FLOW,
        "args": {"counter": str(counter)},
        "no_overlap": True,  # the nights share the attempts file
    }
    server.ok("PUT", f"/api/schedules/{SCHEDULE}", schedule)
    trigger = f"/api/jobs?trigger=schedule:{SCHEDULE}&limit=50"
    first: list[dict[str, Any]] = []

    def first_night_ended() -> bool:
        runs = server.ok("GET", trigger)["items"]
        first[:] = sorted(runs, key=lambda r: r["created_at"])[:1]
        return bool(first) and first[0]["status"] in ("success", "failure", "cancelled")

    wait_for(first_night_ended, timeout=60, interval=0.2, what="the first scheduled night to end")
    server.ok("PUT", f"/api/schedules/{SCHEDULE}", {**schedule, "enabled": False})
    run = server.job(first[0]["id"])
    # Let any night started meanwhile end: then the history stays as it is until the stop.
    wait_for(
        lambda: all(
            r["status"] in ("success", "failure", "cancelled")
            for r in server.ok("GET", trigger)["items"]
        ),
        timeout=60,
        what="the scheduled runs to end",
    )
    while_serving = _runs_sql(data, "--url", server.base, "--token", server.token)
    no_token = _runs_sql(data)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 30
    yield Nightly(run, lines(counter), while_serving, no_token, _runs_sql(data))


def test_the_scheduled_night_retries_and_aggregates(nightly: Nightly) -> None:
    run = nightly.run
    assert run["status"] == "success", run
    assert run["trigger"] == f"schedule:{SCHEDULE}" and run["path"] == FLOW
    totals = {row["region"]: (int(row["total"]), int(row["n"])) for row in run["result"]}
    assert totals == {"north": (60, 3), "south": (90, 3)}, run["result"]
    flaky = [s for s in run["steps"] if s["step_id"] == "flaky"]
    assert [s["status"] for s in flaky] == ["failure", "failure", "success"], flaky
    assert [s["attempt"] for s in flaky] == [1, 2, 3]
    assert "not there yet (attempt 1)" in flaky[0]["error"]["message"]
    assert flaky[-1]["result"] == 3
    assert len(nightly.attempts) >= 3  # a later night may have run the step once more


def _rows(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, (result.returncode, result.stderr)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {row["key"]: row["slowest_ms"] for row in rows}


def test_history_in_sql_after_the_server_stopped(nightly: Nightly) -> None:
    slowest = _rows(nightly.after_stop)
    assert {"extract", "flaky", "summary"} <= set(slowest), slowest
    assert all(ms is None or ms >= 0 for ms in slowest.values())


def test_history_in_sql_while_the_server_runs(nightly: Nightly) -> None:
    slowest = _rows(nightly.while_serving)
    assert {"extract", "flaky", "summary"} <= set(slowest), slowest
    assert slowest == _rows(nightly.after_stop)  # the same history, asked two ways


def test_history_without_a_token_while_serving_says_what_to_do(nightly: Nightly) -> None:
    refused = nightly.while_serving_no_token
    assert refused.returncode == 2, (refused.returncode, refused.stdout, refused.stderr)
    assert refused.stdout == ""
    assert "in use" in refused.stderr and "--token" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
