"""A running script's client (`import gristmill`) against a real server: variables,
secrets, resources, state, nested runs, progress, resume links, and its permissions."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from tests.studio.api.conftest import Api, seed, start_api, stop_api


@pytest.fixture(scope="module")
def api(portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    harness, server = start_api(portal, tmp_path_factory.mktemp("runtime") / "data")
    seed(harness)
    harness.services.set_public_url(harness.base)
    yield harness
    stop_api(harness, server)


def deploy(api: Api, path: str, code: str, role: str = "dev") -> None:
    reply = api.call("PUT", f"/api/scripts/{path}", {"content": textwrap.dedent(code)}, role=role)
    assert reply.status in (200, 201), reply.body


def run(api: Api, path: str, args: dict | None = None, role: str = "dev"):
    return api.call("POST", f"/api/run_wait/script/{path}", args or {}, role=role)


def test_variables_secrets_and_resources_inside_a_run(api: Api) -> None:
    api.workspace.set_resource_type(
        "pg", {"type": "object", "properties": {"host": {"type": "string"}}}
    )
    api.workspace.set_resource("f/team/db", "pg", {"host": "db.internal"})
    deploy(
        api,
        "f/team/reads",
        """
        import gristmill
        def main():
            secret = gristmill.get_variable("f/team/password")
            print("the secret is", secret)
            return {
                "plain": gristmill.get_variable("f/team/plain"),
                "secret_length": len(secret),
                "db": gristmill.get_resource("f/team/db")["host"],
            }
        """,
    )
    reply = run(api, "f/team/reads")
    assert reply.status == 200, reply.body
    assert reply.body["result"] == {
        "plain": "visible value",
        "secret_length": 14,
        "db": "db.internal",
    }
    logs = api.call("GET", f"/api/jobs/{reply.body['job_id']}/logs", role="dev").body
    text = "".join(piece["text"] for piece in logs["items"])
    assert "the secret is ********" in text and "s3cr3t" not in text
    # the log line was redacted before it was stored, not only in the response
    stored = api.portal.run(api.services.store.logs(reply.body["job_id"]))
    assert all("s3cr3t" not in log.text for log in stored)
    assert any(e.action == "secret.read" for e in api.workspace.audit_log(actor="dev"))


def test_a_run_has_the_permissions_of_whoever_started_it(api: Api) -> None:
    deploy(
        api,
        "f/team/peek_bob",
        """
        import gristmill
        def main():
            return gristmill.run_script("u/bob/private", {"name": "x"})
        """,
    )
    # dev may not see bob's private tree, so dev's run may not either...
    refused = run(api, "f/team/peek_bob", role="dev")
    assert refused.status == 500
    assert refused.body["error"]["message"] == "no script at 'u/bob/private' (HTTP 404)"
    # ...while the same script started by an admin may
    allowed = run(api, "f/team/peek_bob", role="admin")
    assert allowed.status == 200 and allowed.body["result"]["greeting"] == "hello x"


def test_state_persists_between_runs_of_the_same_script(api: Api) -> None:
    deploy(
        api,
        "f/team/counter",
        """
        import gristmill
        def main():
            count = (gristmill.get_state() or 0) + 1
            gristmill.set_state(count)
            gristmill.set_progress(100)
            return count
        """,
    )
    replies = [run(api, "f/team/counter") for _ in range(3)]
    assert [reply.body["result"] for reply in replies] == [1, 2, 3]
    job = api.call("GET", f"/api/jobs/{replies[-1].body['job_id']}", role="dev").body
    assert job["progress"] == 100


def test_nested_script_run_is_recorded_as_a_child(api: Api) -> None:
    deploy(
        api,
        "f/team/parent",
        """
        import gristmill
        def main():
            return gristmill.run_script("f/team/hello", {"name": "child"})
        """,
    )
    reply = run(api, "f/team/parent")
    assert reply.body["result"]["greeting"] == "hello child"
    children = api.portal.run(api.services.store.list_runs(path="f/team/hello", trigger="script"))
    assert children and children[0].parent_run_id == reply.body["job_id"]


def test_runtime_calls_about_this_run_need_a_run_token(api: Api) -> None:
    reply = api.call("GET", "/api/runtime/state", role="dev")
    assert reply.status == 400 and "run token" in reply.body["error"]["message"]
    forged = api.call(
        "GET", "/api/runtime/state", headers={"Authorization": "Bearer gmrun_e30.bad"}, role="anon"
    )
    assert forged.status == 401


def test_resume_urls_approve_the_next_approval_of_the_flow(api: Api) -> None:
    flow = textwrap.dedent(
        """
        steps:
          - id: links
            python: |
              import gristmill
              def main():
                  return gristmill.get_resume_urls()
          - id: wait
            approval: {}
          - id: done
            python: "def main(): return 'approved'"
        """
    )
    assert api.call("PUT", "/api/flows/f/team/links", {"content": flow}, role="dev").status in (
        200,
        201,
    )
    started = api.call("POST", "/api/run_wait/flow/f/team/links", {}, role="dev")
    assert started.status == 202, started.body
    job = api.call("GET", f"/api/jobs/{started.body['job_id']}", role="dev").body
    links = next(s for s in job["steps"] if s["key"] == "links")["result"]
    assert links["resume"].startswith(api.base + "/api/resume/")
    resume_path = links["resume"][len(api.base) :]
    assert api.call("POST", resume_path, {}, role="anon").status == 200

    def finished():
        body = api.call("GET", f"/api/jobs/{started.body['job_id']}", role="dev").body
        return body["status"] == "success" and body["result"] == "approved"

    from tests.conftest import wait_for

    wait_for(finished, what="the flow to finish after its resume link")


def test_a_secret_returned_by_a_run_is_hidden_in_the_stored_result(api: Api) -> None:
    deploy(
        api,
        "f/team/leak",
        """
        import gristmill
        def main():
            secret = gristmill.get_variable("f/team/password")
            return {"value": secret, "note": f"was {secret}"}
        """,
    )
    reply = run(api, "f/team/leak")
    assert reply.body["result"] == {"value": "********", "note": "was ********"}
    stored = api.portal.run(api.services.store.get_run(reply.body["job_id"]))
    steps = api.portal.run(api.services.store.steps(reply.body["job_id"]))
    assert "s3cr3t" not in repr(stored) and "s3cr3t" not in repr(steps)


def test_rotating_the_secrets_key_keeps_secrets_readable_by_runs(api: Api) -> None:
    before = api.workspace.vault.current_key_id
    rotated = api.call("POST", "/api/secrets/rotate", role="admin")
    assert rotated.status == 200 and rotated.body["key_id"] != before
    assert api.call("POST", "/api/secrets/rotate", role="dev").status == 403
    deploy(
        api,
        "f/team/after_rotation",
        """
        import gristmill
        def main():
            return len(gristmill.get_variable("f/team/password"))
        """,
    )
    assert run(api, "f/team/after_rotation").body["result"] == 14
    assert any(e.action == "secrets.rotate" for e in api.workspace.audit_log(actor="admin"))
