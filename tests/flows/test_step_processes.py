"""Which process runs a flow's code steps: one per run, shared by its steps, never by runs.

Real engine, real kernels, real DuckDB store (the `flows` fixture).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from flows.engine import Outcome
from flows.records import LogRecord
from tests.conftest import wait_for
from tests.flows.conftest import Flows

THREE_STEPS = """
steps:
  - id: one
    python: "import os\\ndef main(): return os.getpid()"
  - id: two
    python: "import os\\ndef main(): return os.getpid()"
  - id: three
    python: "import os\\ndef main(): return os.getpid()"
"""


def results(flows: Flows, outcome: Outcome) -> dict[str, Any]:
    assert outcome.run.status == "success", outcome.run.error
    return {s.key: s.result for s in flows.steps(outcome.run.id) if s.status == "success"}


def leased(flows: Flows) -> int:
    return sum(s["leased"] for s in flows.engine.runner.pool.stats().values())


def test_the_steps_of_one_run_share_a_process(flows: Flows) -> None:
    pids = results(flows, flows.run(THREE_STEPS, name="three.yaml"))
    assert pids["one"] == pids["two"] == pids["three"], pids


def test_two_runs_never_share_a_process(flows: Flows) -> None:
    async def both() -> list[Outcome]:
        path = flows.write("two_runs.yaml", THREE_STEPS)
        runs = [
            await flows.dispatcher.submit(path.read_text(), {}, path=str(path)) for _ in range(2)
        ]
        return [await flows.dispatcher.wait(run.id) for run in runs]

    first, second = (set(results(flows, o).values()) for o in flows.portal.run(both()))
    assert len(first) == 1 and len(second) == 1, (first, second)
    assert not first & second
    assert leased(flows) == 0  # a finished run holds no kernel


@pytest.mark.parametrize("seconds", [1, 1.5], ids=["awaited", "suspended"])
def test_a_sleeping_run_holds_no_kernel(flows: Flows, seconds: float) -> None:
    # A sleep of at most a second is awaited by the engine; a longer one suspends the
    # run (tests/flows/test_engine.py). Either way no run process waits through it.
    path = flows.write(
        "nap.yaml",
        textwrap.dedent(
            f"""
            steps:
              - id: before
                python: "import os\\ndef main(): return os.getpid()"
              - id: nap
                sleep: {seconds}
              - id: after
                python: "import os\\ndef main(): return os.getpid()"
            """
        ),
    )
    run = flows.portal.run(flows.dispatcher.submit(path.read_text(), {}, path=str(path)))

    async def sleeping() -> int | None:
        """Kernels leased while the run sleeps; None when it is not sleeping now."""
        statuses = [s.status for s in await flows.store.steps(run.id) if s.key == "nap"]
        if statuses != ["waiting"]:
            return None
        return leased(flows)

    seen: list[int | None] = [None]

    def asleep() -> bool:
        seen[0] = flows.portal.run(sleeping())
        return seen[0] is not None

    wait_for(asleep, timeout=10, what="the run to sleep")
    assert seen[0] == 0
    pids = results(flows, flows.wait(run.id))
    assert pids["before"] != pids["after"]  # the process went before the sleep


def test_a_steps_environment_changes_are_not_seen_by_the_next_step(flows: Flows) -> None:
    outcome = flows.run(
        """
        steps:
          - id: set
            python: |
              import os
              def main():
                  os.environ["LEAKED"] = "from the first step"
                  return os.getpid()
          - id: get
            python: |
              import os
              def main():
                  return [os.getpid(), os.environ.get("LEAKED")]
        """,
        name="environ.yaml",
    )
    steps = results(flows, outcome)
    assert steps["get"] == [steps["set"], None]


def test_output_of_a_step_is_logged_under_that_step(flows: Flows) -> None:
    outcome = flows.run(
        """
        steps:
          - id: loud
            python: |
              import os, subprocess
              def main():
                  print("printed")
                  os.write(1, b"written\\n")
                  subprocess.run(["echo", "echoed"], check=True)
                  return os.getpid()
          - id: quiet
            python: "import os\\ndef main(): return os.getpid()"
        """,
        name="logs.yaml",
    )
    steps = results(flows, outcome)
    assert steps["loud"] == steps["quiet"]

    async def logs() -> list[LogRecord]:
        return await flows.store.logs(outcome.run.id)

    by_step: dict[str, str] = {}
    for log in flows.portal.run(logs()):
        if log.stream == "stdout":
            by_step[log.key] = by_step.get(log.key, "") + log.text
    assert by_step.get("loud", "").split() == ["printed", "written", "echoed"]
    assert "quiet" not in by_step
