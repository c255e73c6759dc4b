"""Script runs through the engine: recorded in the history like one-step flows."""

from __future__ import annotations

import time

import pytest

from flows.errors import ApprovalError
from kernels.errors import ArgumentError, ScriptError
from tests.conftest import wait_for


def _submit_script(flows, source, args, **options):
    async def go():
        run = await flows.dispatcher.submit_script(source, args, **options)
        return await flows.dispatcher.wait(run.id)

    return flows.portal.run(go())


def test_python_script_run_is_recorded_with_result_logs_and_step(flows):
    source = (
        "def main(name: str, times: int = 2):\n    print('hi', name)\n    return name * times\n"
    )
    outcome = _submit_script(
        flows, source, {"name": "ab"}, path="u/alice/greet", trigger="webhook", actor="alice"
    )
    run = outcome.run
    assert (run.status, run.result, run.kind, run.language) == (
        "success",
        "abab",
        "script",
        "python",
    )
    assert run.args == {"name": "ab", "times": 2}  # defaults are part of the record
    stored = flows.portal.run(flows.store.get_run(run.id))
    assert (stored.trigger, stored.actor, stored.result) == ("webhook", "alice", "abab")
    steps = flows.steps(run.id)
    assert [(s.key, s.status, s.result) for s in steps] == [("main", "success", "abab")]
    logs = flows.portal.run(flows.store.logs(run.id))
    assert "".join(log.text for log in logs) == "hi ab\n"


def test_argument_that_looks_like_an_expression_is_data_not_code(flows):
    source = "def main(text: str):\n    return text\n"
    outcome = _submit_script(flows, source, {"text": "${{ flow_input }}"}, path="u/a/echo")
    assert outcome.run.result == "${{ flow_input }}"


def test_failed_script_run_keeps_the_error(flows):
    source = "def main():\n    raise ValueError('no stock')\n"
    run = _submit_script(flows, source, {}, path="u/a/fail").run
    assert run.status == "failure"
    assert run.error["message"] == "no stock" and run.error["name"] == "ValueError"


def test_bash_and_sql_script_runs(flows):
    bash = 'name="$1"\necho "hello $name"\n'
    run = _submit_script(flows, bash, {"name": "bob"}, path="u/a/sh", language="bash").run
    assert run.status == "success" and "hello bob" in str(run.result)
    sql = "-- $n (integer) = 3\nselect range as i from range($n)\n"
    run = _submit_script(flows, sql, {}, path="u/a/q", language="sql").run
    assert (run.status, run.result) == ("success", [{"i": 0}, {"i": 1}, {"i": 2}])


def test_bad_arguments_and_broken_scripts_are_refused_before_anything_is_stored(flows):
    before = flows.portal.run(flows.store.count_runs())
    with pytest.raises(ArgumentError, match="times"):
        _submit_script(flows, "def main(times: int):\n    return times\n", {"times": "x"})
    with pytest.raises(ScriptError):
        _submit_script(flows, "x = 1\n", {})
    assert flows.portal.run(flows.store.count_runs()) == before


def test_cancel_stops_a_running_script_and_records_it(flows):
    source = "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(60)\n"

    async def start():
        return await flows.dispatcher.submit_script(source, {}, path="u/a/slow")

    run = flows.portal.run(start())
    wait_for(
        lambda: flows.portal.run(flows.store.logs(run.id)), what="the script to start printing"
    )
    began = time.monotonic()
    cancelled = flows.portal.run(flows.dispatcher.cancel(run.id, reason="stopped by alice"))
    assert time.monotonic() - began < 10
    assert cancelled.status == "cancelled"
    assert cancelled.error == {"message": "stopped by alice", "name": "Cancelled"}
    with pytest.raises(ApprovalError, match="already ended"):
        flows.portal.run(flows.dispatcher.cancel(run.id))


def test_dedupe_key_gives_one_run_per_key(flows):
    async def twice():
        a = await flows.engine.submit_script("def main():\n    return 1\n", {}, dedupe_key="k:1")
        b = await flows.engine.submit_script("def main():\n    return 1\n", {}, dedupe_key="k:1")
        return a, b, await flows.store.run_for_key("k:1")

    a, b, found = flows.portal.run(twice())
    assert a.id == b.id == found.id


def test_list_and_count_runs_with_filters(flows):
    for i in range(3):
        _submit_script(
            flows, "def main():\n    return 1\n", {}, path=f"f/filters/s{i}", trigger="schedule:x"
        )
    _submit_script(flows, "def main():\n    raise ValueError()\n", {}, path="f/filters/bad")
    store = flows.store
    run = flows.portal.run
    assert run(store.count_runs(path="f/filters/")) == 4
    assert run(store.count_runs(path="f/filters/", status="failure")) == 1
    assert run(store.count_runs(trigger="schedule:")) >= 3
    page = run(store.list_runs(path="f/filters/", limit=2, offset=1))
    assert [r.path for r in page] == ["f/filters/s2", "f/filters/s1"]
    newest = run(store.list_runs(path="f/filters/", limit=1))[0]
    assert run(store.count_runs(path="f/filters/", since=newest.created_at)) == 1
    assert run(store.count_runs(path="f/filters/", until=newest.created_at)) == 3
    assert run(store.count_runs(path="f/filters/", kind="flow")) == 0


def test_overlapped_run_is_durable_by_its_end(flows):
    outcome = _submit_script(flows, "def main():\n    return 7\n", {}, path="u/a/o", overlap=True)
    stored = flows.portal.run(flows.store.get_run(outcome.run.id))
    assert (stored.status, stored.result) == ("success", 7)
    assert [s.status for s in flows.steps(outcome.run.id)] == ["success"]


def test_flow_steps_and_the_run_end_share_commits(flows):
    """A run of three steps costs a commit per step boundary, not two per step."""
    text = "steps:\n" + "".join(
        f"  - id: s{i}\n    python: 'def main(): return {i}'\n" for i in range(3)
    )
    before = flows.store.commits
    outcome = flows.run(text)
    assert outcome.run.result == 2
    # create, s0 (at s1's start), s1 (at s2's start), s2 + the run's end: 4 at most
    assert flows.store.commits - before <= 4
    assert [s.status for s in flows.steps(outcome.run.id)] == ["success"] * 3


def test_a_longer_overlapped_run_gets_its_record_while_it_runs(flows, tmp_path):
    release = tmp_path / "release"
    source = (
        "import pathlib, time\n"
        "def main():\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.01)\n"
        "    return 'done'\n"
    )

    async def start():
        return await flows.dispatcher.submit_script(source, {}, path="u/a/long", overlap=True)

    run = flows.portal.run(start())
    wait_for(
        lambda: flows.portal.run(flows.store.get_run(run.id)) is not None,
        what="the record of a run still going",
    )
    assert flows.portal.run(flows.store.get_run(run.id)).status == "running"
    release.write_text("go")
    outcome = flows.wait(run.id)
    assert outcome.run.result == "done"
    assert flows.portal.run(flows.store.get_run(run.id)).status == "success"
