"""`script:` and `flow:` steps in the server name workspace items, as the run's starter
may run them; never files on the server's disk."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from tests.studio.api.conftest import Api, seed, start_api, stop_api


@pytest.fixture(scope="module")
def api(portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    harness, server = start_api(portal, tmp_path_factory.mktemp("flow-items") / "data")
    seed(harness)
    yield harness
    stop_api(harness, server)


def run_flow(api: Api, path: str, text: str, role: str = "dev"):
    deployed = api.call("PUT", f"/api/flows/{path}", {"content": textwrap.dedent(text)}, role=role)
    assert deployed.status in (200, 201), deployed.body
    return api.call("POST", f"/api/run_wait/flow/{path}", {}, role=role)


def test_script_and_subflow_steps_run_workspace_items(api: Api) -> None:
    run_flow(
        api,
        "f/team/inner",
        """
        steps:
          - id: greet
            script: f/team/hello
            args: {name: inner}
        """,
    )
    reply = run_flow(
        api,
        "f/team/outer",
        """
        steps:
          - id: direct
            script: f/team/hello
            args: {name: direct}
          - id: sub
            flow: f/team/inner
        output: "${{ [results.direct.greeting, results.sub.greeting] }}"
        """,
    )
    assert reply.status == 200, reply.body
    assert reply.body["result"] == ["hello direct", "hello inner"]


@pytest.mark.parametrize(
    "target",
    [
        "u/bob/private",  # exists, but dev may not run it
        "f/team/missing",
        "../../examples/scripts/hello.py",  # a file on the server's disk: never
        "/etc/passwd",
    ],
)
def test_steps_cannot_reach_what_the_starter_may_not_run(api: Api, target: str) -> None:
    reply = run_flow(
        api,
        "f/team/reach",
        f"""
        steps:
          - id: reach
            script: "{target}"
        """,
    )
    assert reply.status == 500, reply.body
    message = reply.body["error"]["message"]
    assert message.startswith(f"no script at '{target}' that dev may run"), message
