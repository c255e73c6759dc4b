"""Which process runs a flow's code steps: one per run, shared by its steps, never by
runs; a `dedicated: true` flow's runs by one user keep theirs from run to run.

Real engine, real kernels, real DuckDB store (the `flows` fixture).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from flows.engine import Outcome
from flows.records import LogRecord
from kernels.dedicated import DedicatedProcesses
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


# ---------------------------------------------------------------- dedicated flows

DEDICATED = "dedicated: true\n" + THREE_STEPS


def run_as(flows: Flows, text: str, name: str, actor: str) -> set[Any]:
    """The pids of a run of `text` submitted by `actor`."""

    async def go() -> Outcome:
        path = flows.write(name, text)
        run = await flows.dispatcher.submit(path.read_text(), {}, path=str(path), actor=actor)
        return await flows.dispatcher.wait(run.id)

    return set(results(flows, flows.portal.run(go())).values())


@pytest.fixture
def dedicated(flows: Flows) -> Iterator[DedicatedProcesses]:
    """The engine's dedicated processes, let go after the test (they hold kernels)."""
    assert flows.engine.dedicated is not None
    yield flows.engine.dedicated
    flows.portal.run(flows.engine.dedicated.let_go())


def test_runs_of_a_dedicated_flow_by_one_user_keep_their_process(
    flows: Flows, dedicated: DedicatedProcesses
) -> None:
    first = run_as(flows, DEDICATED, "dedicated.yaml", "ann")
    second = run_as(flows, DEDICATED, "dedicated.yaml", "ann")
    assert len(first) == 1 and first == second, (first, second)
    assert dedicated.processes == 1  # waiting for the next run, on its kernel
    # (the processes of runs before this test may still be on their way out)
    wait_for(lambda: leased(flows) == 1, timeout=10, what="one kernel held")


def test_a_dedicated_flows_process_never_passes_to_another_user_or_version(
    flows: Flows, dedicated: DedicatedProcesses
) -> None:
    ann = run_as(flows, DEDICATED, "shared.yaml", "ann")
    bob = run_as(flows, DEDICATED, "shared.yaml", "bob")
    # The same file, edited: a new version starts in processes of its own.
    edited = run_as(flows, DEDICATED.replace("id: three", "id: third"), "shared.yaml", "ann")
    assert len(ann | bob | edited) == 3, (ann, bob, edited)


def test_a_dedicated_run_sees_no_environment_left_by_the_run_before(
    flows: Flows, dedicated: DedicatedProcesses
) -> None:
    text = """
        dedicated: true
        steps:
          - id: env
            python: |
              import os
              def main():
                  seen = os.environ.get("LEFT_BEHIND")
                  os.environ["LEFT_BEHIND"] = "by an earlier run"
                  return [os.getpid(), seen]
        """

    def run() -> list[Any]:
        outcome = flows.run(text, name="dedicated_env.yaml")
        return list(results(flows, outcome)["env"])

    first, second = run(), run()
    assert first[0] == second[0]  # the same process...
    assert second[1] is None  # ...restored between runs as between steps
