"""`script:` and `flow:` steps in the server name workspace items, as the run's starter
may run them; never files on the server's disk."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
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


RESOURCE_SCRIPT = """
postgresql = dict

def main(db: postgresql, table: str = "orders"):
    return f"{db['host']}/{table}"
"""


def test_a_resource_argument_is_a_path_that_reaches_main_as_the_resource(api: Api) -> None:
    ws = api.workspace
    ws.set_resource_type(
        "postgresql", {"type": "object", "properties": {"host": {"type": "string"}}}
    )
    ws.set_resource_type("smtp", {"type": "object"})
    ws.set_resource("f/team/warehouse", "postgresql", {"host": "db.internal"})
    ws.set_resource("f/team/mail", "smtp", {"host": "mail.internal"})
    ws.set_resource("u/bob/own_db", "postgresql", {"host": "bob.internal"})
    deployed = api.call(
        "PUT", "/api/scripts/f/team/report", {"content": RESOURCE_SCRIPT}, role="dev"
    )
    assert deployed.status in (200, 201), deployed.body
    schema = api.call("GET", "/api/scripts/f/team/report/schema", role="dev").body["schema"]
    assert schema["properties"]["db"] == {"type": "string", "format": "resource-postgresql"}

    def run(db: str):
        return api.call("POST", "/api/run_wait/script/f/team/report", {"db": db}, role="dev")

    assert run("f/team/warehouse").body["result"] == "db.internal/orders"
    assert run("$res:f/team/warehouse").body["result"] == "db.internal/orders"  # Windmill's form
    wrong_type = run("f/team/mail")
    assert wrong_type.status == 500
    assert wrong_type.body["error"]["message"] == (
        "argument 'db': resource 'f/team/mail' is a smtp, expected a postgresql"
    )
    hidden = run("u/bob/own_db")  # dev may not read bob's resources
    assert hidden.body["error"]["message"] == (
        "argument 'db': no resource at 'u/bob/own_db' that dev may read"
    )
    # the run's stored arguments keep the path, not the resource's value
    job = api.call("GET", f"/api/jobs/{hidden.body['job_id']}", role="admin").body
    assert job["args"] == {"db": "u/bob/own_db", "table": "orders"}


def test_approvers_and_self_approval_are_enforced_by_the_api(api: Api) -> None:
    api.workspace.create_group("leads", ["viewer", "bob"])  # bob: a developer without f/team
    api.workspace.set_folder_right("team", "u/bob", "writer")
    flow = """
    steps:
      - id: ok
        approval: {approvers: ["g/leads"], self_approval: false}
      - id: done
        python: "def main(): return 'approved'"
    """
    deployed = api.call(
        "PUT", "/api/flows/f/team/gated", {"content": textwrap.dedent(flow)}, role="dev"
    )
    assert deployed.status in (200, 201), deployed.body
    started = api.call("POST", "/api/run/flow/f/team/gated", {}, role="op")
    job = started.body["job_id"]
    wait_for(
        lambda: api.call("GET", f"/api/jobs/{job}").body["status"] == "suspended",
        what="the approval",
    )
    own = api.call("POST", f"/api/jobs/{job}/approve", {}, role="op")
    assert own.status == 403
    assert own.body["error"]["message"] == (
        "op started this run and its approval step refuses self-approval"
    )
    outsider = api.call("POST", f"/api/jobs/{job}/reject", {}, role="dev")
    assert outsider.status == 403
    assert outsider.body["error"]["message"] == "dev is not among this step's approvers (g/leads)"
    assert api.call("POST", f"/api/jobs/{job}/approve", {}, role="bob").status == 200
    wait_for(
        lambda: api.call("GET", f"/api/jobs/{job}").body["status"] == "success",
        what="the flow's end",
    )


def test_approvers_must_be_principals() -> None:
    from flows.errors import FlowSpecError
    from flows.flow_files import load_flow

    with pytest.raises(FlowSpecError, match="approvers"):
        load_flow("steps:\n  - id: ok\n    approval: {approvers: [leads]}\n")
