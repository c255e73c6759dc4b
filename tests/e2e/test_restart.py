"""Day two (journey 7): the server restarts while flows wait on approvals and a schedule is
due — nothing is lost, nothing runs twice; and a server killed with SIGKILL mid-step
resumes its flow without running the steps that had completed.

Side effects are lines appended to files under tmp_path, so "exactly once" is counted
outside the server, not taken from its own records.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import Launcher, Server, call, lines

pytestmark = pytest.mark.xdist_group("e2e")

HOLD_FLOW = """
summary: wait for a person, then act once
schema:
  type: object
  properties: {out: {type: string}}
  required: [out]
steps:
  - id: links
    python: |
      import gristmill

      def main():
          return gristmill.get_resume_urls()
  - id: ok
    approval:
      timeout: 3600
      form: {type: object, properties: {note: {type: string}}}
  - id: act
    python: |
      def main(out: str, note: str):
          with open(out, "a") as f:
              f.write(note + "\\n")
          return note
    args: {out: "${{ flow_input.out }}", note: "${{ results.ok.note }}"}
"""

TICK = """
import os


def main(out: str):
    with open(out, "a") as f:
        f.write(os.environ["GRISTMILL_RUN_ID"] + "\\n")
    return "tick"
"""

SLOW_FLOW = """
summary: three steps, the middle one slow
schema:
  type: object
  properties: {dir: {type: string}}
  required: [dir]
steps:
  - id: first
    python: |
      def main(dir: str):
          with open(dir + "/first", "a") as f:
              f.write("first\\n")
          return 1
    args: {dir: "${{ flow_input.dir }}"}
  - id: slow
    python: |
      import time

      def main(dir: str):
          with open(dir + "/slow-start", "a") as f:
              f.write("start\\n")
          time.sleep(3)
          with open(dir + "/slow-end", "a") as f:
              f.write("end\\n")
          return 2
    args: {dir: "${{ flow_input.dir }}"}
  - id: last
    python: |
      def main(dir: str, before: int):
          with open(dir + "/last", "a") as f:
              f.write("last\\n")
          return before + 1
    args: {dir: "${{ flow_input.dir }}", before: "${{ results.slow }}"}
"""

SCHEDULE = "u/admin/tick"
TRIGGER = f"schedule:{SCHEDULE}"
EVERY_S = 2


def _schedule_runs(server: Server) -> list[dict[str, Any]]:
    body = server.ok("GET", f"/api/jobs?trigger={TRIGGER}&limit=500")
    assert body["total"] == len(body["items"]), "more scheduled runs than one page"
    items: list[dict[str, Any]] = body["items"]
    return items


def _step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    found = [s for s in job["steps"] if s["step_id"] == step_id]
    assert found, f"job {job['id']} has no step {step_id!r}: {job['steps']}"
    step: dict[str, Any] = found[-1]
    return step


def _fire_keys(data: Path) -> list[tuple[str, str]]:
    """(run id, dedupe key) of every scheduled run, read from the stopped server's store."""
    con = duckdb.connect(str(data / "runs.duckdb"), read_only=True)
    try:
        rows = con.execute(
            'select id, dedupe_key from runs where "trigger" = ? order by created_at', [TRIGGER]
        ).fetchall()
    finally:
        con.close()
    return [(str(r[0]), str(r[1])) for r in rows]


def test_restart_keeps_approvals_and_schedule_fires_exactly_once(
    launch: Launcher, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ticks = tmp_path / "ticks.txt"
    a = launch(data, "A")
    a.deploy("flow", "u/admin/hold", HOLD_FLOW)
    a.deploy("script", "u/admin/tick", TICK)

    effects = [tmp_path / f"effect-{i}.txt" for i in range(3)]
    jobs = [
        a.ok("POST", "/api/run/flow/u/admin/hold", {"out": str(out)})["job_id"] for out in effects
    ]
    held = [a.wait_job(job, ("suspended",)) for job in jobs]
    links = [_step(job, "links")["result"] for job in held]
    assert all(link["resume"].startswith(a.base + "/api/resume/") for link in links), links

    schedule = a.ok("PUT", f"/api/schedules/{SCHEDULE}", _schedule_body(ticks))
    assert schedule["catch_up"] == "all" and len(schedule["next_fires"]) == 5
    wait_for(lambda: len(lines(ticks)) >= 2, timeout=30, what="two fires on server A")

    # Stop A just before a fire is due (fires fall on even seconds).
    wait_for(lambda: time.time() % EVERY_S >= EVERY_S - 0.15, timeout=5, interval=0.005)
    stopped_at = time.time()
    assert a.stop() == 0, a.stderr.read_text()[-2000:]
    a_exited = time.time()
    # Stay down long enough to miss at least two fires (the clock is what is tested here).
    wait_for(lambda: time.time() >= stopped_at + 5.5, timeout=10, what="5 s of downtime")
    down_until = time.time()

    b = launch(data, "B")
    for job in jobs:
        assert b.job(job)["status"] == "suspended", b.job(job)
    pending = {item["job_id"] for item in b.ok("GET", "/api/approvals")["items"]}
    assert set(jobs) <= pending

    # Run 0: its signed link (issued by A, verified by B: the key is in the data dir).
    token = links[0]["resume"].split("/api/resume/", 1)[1]
    used = call(b.base, "POST", f"/api/resume/{token}", {"note": "by-link"})
    assert used.status == 200, used.body
    again = call(b.base, "POST", f"/api/resume/{token}", {"note": "twice"})
    assert again.status == 400, again.body  # single use
    # Runs 1 and 2: the approval API.
    for job in jobs[1:]:
        b.ok("POST", f"/api/jobs/{job}/approve", {"note": "by-api"})
    assert b.api("POST", f"/api/jobs/{jobs[1]}/approve", {"note": "twice"}).status == 409

    for job in jobs:
        done = b.wait_job(job, ("success", "failure", "cancelled"))
        assert done["status"] == "success", done
    assert [lines(out) for out in effects] == [["by-link"], ["by-api"], ["by-api"]]
    # The cancel link of an approved run no longer does anything.
    cancel = links[2]["cancel"].split("/api/cancel/", 1)[1]
    assert call(b.base, "POST", f"/api/cancel/{cancel}").status == 400
    assert b.job(jobs[2])["status"] == "success"

    # The schedule resumed: wait for a regular fire of B (after the catch-up).
    def fired_on_b() -> bool:
        return any(r["created_at"] >= down_until + 2 * EVERY_S for r in _schedule_runs(b))

    wait_for(fired_on_b, timeout=30, interval=0.2, what="a regular fire on server B")
    b.ok("PUT", f"/api/schedules/{SCHEDULE}", {**_schedule_body(ticks), "enabled": False})
    wait_for(
        lambda: all(r["status"] in ("success", "failure", "cancelled") for r in _schedule_runs(b)),
        timeout=30,
        what="the scheduled runs to end",
    )
    runs = _schedule_runs(b)
    assert {r["status"] for r in runs} == {"success"}, runs
    assert b.stop() == 0

    keyed = _fire_keys(data)
    assert {run_id for run_id, _ in keyed} == {r["id"] for r in runs}
    fire_keys = [key for _, key in keyed]
    assert len(fire_keys) == len(set(fire_keys)), f"a fire ran twice: {fire_keys}"
    fires = sorted(int(key.rsplit(":", 1)[1]) for key in fire_keys)
    expected = list(range(fires[0], fires[-1] + 1, EVERY_S))
    assert fires == expected, f"missing fires: {sorted(set(expected) - set(fires))}"
    missed = [f for f in fires if stopped_at < f < down_until]
    assert len(missed) >= 2, (stopped_at, down_until, fires)  # caught up: catch_up "all"
    created = {r["id"]: r["created_at"] for r in runs}
    by_fire = {int(key.rsplit(":", 1)[1]): created[run_id] for run_id, key in keyed}
    assert all(by_fire[f] >= down_until for f in fires if a_exited < f < down_until), by_fire
    assert any(f > down_until for f in fires)
    # Each run's side effect happened exactly once.
    counted = collections.Counter(lines(ticks))
    assert counted == collections.Counter({run_id: 1 for run_id, _ in keyed})


def _schedule_body(ticks: Path) -> dict[str, Any]:
    return {
        "cron": f"*/{EVERY_S} * * * * *",
        "target_kind": "script",
        "target_path": "u/admin/tick",
        "args": {"out": str(ticks)},
        "catch_up": "all",
    }


def test_sigkill_mid_step_resumes_without_rerunning_completed_steps(
    launch: Launcher, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    marks = tmp_path / "marks"
    marks.mkdir()
    a = launch(data, "A")
    a.deploy("flow", "u/admin/slow", SLOW_FLOW)
    job = a.ok("POST", "/api/run/flow/u/admin/slow", {"dir": str(marks)})["job_id"]
    wait_for(lambda: lines(marks / "slow-start"), timeout=30, what="the slow step to start")
    a.kill()
    # A killed server's kernels must not finish the step behind the next server's back.
    wait_for(
        lambda: not any(p.is_running() for p in a.kernels.values()),
        timeout=15,
        what="the killed server's kernels to exit",
    )

    b = launch(data, "B")
    done = b.wait_job(job, ("success", "failure", "cancelled"))
    assert done["status"] == "success" and done["result"] == 3, done
    assert lines(marks / "first") == ["first"]  # completed before the kill: not run again
    assert lines(marks / "last") == ["last"]
    assert lines(marks / "slow-end") == ["end"]  # interrupted, so it ran again, to its end once
    assert len(lines(marks / "slow-start")) == 2
    first_attempts = [s for s in done["steps"] if s["step_id"] == "first"]
    assert [s["status"] for s in first_attempts] == ["success"], done["steps"]
