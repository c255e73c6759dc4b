"""Runs over HTTP: webhooks sync and async, non-object bodies, HMAC signatures, job
pages, logs, lists, cancel, approvals and signed links, redaction of secrets."""

from __future__ import annotations

import time

import pytest

from studio.api.webhooks import sign
from tests.conftest import wait_for
from tests.studio.api.conftest import Api

ECHO = "def main(body):\n    return body\n"
LOUD = "def main():\n    for i in range(3):\n        print(f'line {i}')\n    return 'done'\n"
LEAK = (
    "def main():\n    print('the password is s3cr3t-hunter2')\n    return {'v': 's3cr3t-hunter2'}\n"
)
SLOW = "import time\n\ndef main():\n    time.sleep(60)\n"


@pytest.fixture(scope="module", autouse=True)
def scripts(api: Api) -> None:
    for path, source in (
        ("f/team/echo", ECHO),
        ("f/team/loud", LOUD),
        ("f/team/leak", LEAK),
        ("f/team/signed", ECHO),
        ("f/team/slow", SLOW),
    ):
        api.workspace.deploy("script", path, source, author="dev")


def job(api: Api, job_id: str, role: str = "admin") -> dict:
    response = api.call("GET", f"/api/jobs/{job_id}", role=role)
    assert response.status == 200, response.body
    return response.body


def test_run_wait_returns_the_result(api: Api) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/hello", {"name": "ada", "times": 2})
    assert response.status == 200
    assert response.body["result"] == {"greeting": "hello ada", "times": 2}
    run = job(api, response.body["job_id"])
    assert run["status"] == "success"
    assert run["trigger"] == "webhook" and run["actor"] == "admin"
    assert [s["key"] for s in run["steps"]] == ["main"]
    assert run["duration_s"] is not None and run["duration_s"] >= 0


def test_run_wait_failure_is_500_with_the_error(api: Api) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/boom")
    assert response.status == 500
    assert response.body["error"]["message"] == "boom"
    assert response.body["status"] == "failure"
    assert job(api, response.body["job_id"])["status"] == "failure"


@pytest.mark.parametrize(("args", "field"), [({"times": "many"}, "times"), ({"nope": 1}, "nope")])
def test_bad_arguments_are_400_naming_the_field(api: Api, args: dict, field: str) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/hello", args)
    assert response.status == 400
    assert field in response.body["error"]["message"]


def test_async_run_gives_a_job_to_follow(api: Api) -> None:
    response = api.call("POST", "/api/run/script/f/team/hello", {"name": "bo"})
    assert response.status == 202
    job_id = response.body["job_id"]
    wait_for(lambda: job(api, job_id)["status"] == "success", what="the async run")
    assert job(api, job_id)["result"]["greeting"] == "hello bo"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[1, 2]", [1, 2]),
        (b"42", 42),
        (b'"text"', "text"),
        (b"plain words, not JSON", "plain words, not JSON"),
    ],
)
def test_non_object_bodies_arrive_as_body(api: Api, raw: bytes, expected: object) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/echo", raw=raw)
    assert response.status == 200, response.body
    assert response.body["result"] == expected


def test_object_body_is_the_arguments(api: Api) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/echo", {"body": {"a": 1}})
    assert response.body["result"] == {"a": 1}


SECRET = "partner-shared-secret"


@pytest.fixture(scope="module")
def signing(api: Api) -> None:
    response = api.call(
        "PUT", "/api/webhook_signing/script/f/team/signed", {"secret": SECRET, "tolerance_s": 60}
    )
    assert response.status == 200 and response.body["secret"] == SECRET
    shown = api.call("GET", "/api/webhook_signing/script/f/team/signed")
    assert shown.body == {"path": "f/team/signed", "kind": "script", "tolerance_s": 60}


@pytest.mark.usefixtures("signing")
class TestSignedWebhook:
    SECRET = SECRET

    def post(self, api: Api, body: bytes, header: str | None) -> int:
        headers = {"X-Gristmill-Signature": header} if header else {}
        return api.call(
            "POST", "/api/run_wait/script/f/team/signed", raw=body, headers=headers
        ).status

    def test_valid_signature_runs_once_and_a_replay_is_refused(self, api: Api) -> None:
        body = b'{"body": "order 7"}'
        header = sign(self.SECRET, body, int(time.time()))
        assert self.post(api, body, header) == 200
        replay = api.call(
            "POST",
            "/api/run_wait/script/f/team/signed",
            raw=body,
            headers={"X-Gristmill-Signature": header},
        )
        assert replay.status == 401
        assert "replay" in replay.body["error"]["message"]

    def test_forged_stale_and_missing_signatures_are_refused(self, api: Api) -> None:
        body = b'{"body": 1}'
        now = int(time.time())
        assert self.post(api, body, sign("not-the-secret", body, now)) == 401
        assert self.post(api, body, sign(self.SECRET, b'{"body": 2}', now)) == 401
        assert self.post(api, body, sign(self.SECRET, body, now - 3600)) == 401
        assert self.post(api, body, None) == 401
        assert self.post(api, body, "t=abc,v1=00") == 401

    def test_unsigned_items_need_no_signature(self, api: Api) -> None:
        assert api.call("POST", "/api/run_wait/script/f/team/echo", raw=b"x").status == 200


def test_logs_from_an_offset(api: Api) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/loud")
    job_id = response.body["job_id"]
    first = api.call("GET", f"/api/jobs/{job_id}/logs").body
    text = "".join(piece["text"] for piece in first["items"])
    assert "line 0" in text and "line 2" in text
    assert first["status"] == "success"
    seqs = [piece["seq"] for piece in first["items"]]
    assert seqs == sorted(seqs) and first["next_offset"] == seqs[-1] + 1
    later = api.call("GET", f"/api/jobs/{job_id}/logs?offset={seqs[-1]}").body
    assert [p["seq"] for p in later["items"]] == [seqs[-1]]
    assert (
        api.call("GET", f"/api/jobs/{job_id}/logs?offset={first['next_offset']}").body["items"]
        == []
    )
    assert api.call("GET", f"/api/jobs/{job_id}/logs?offset=-1").status == 400


def test_jobs_list_filters_and_pages(api: Api) -> None:
    since = time.time()
    ids = [
        api.call("POST", "/api/run_wait/script/f/team/hello", {"name": str(i)}).body["job_id"]
        for i in range(3)
    ]
    failed = api.call("POST", "/api/run_wait/script/f/team/boom").body["job_id"]
    page = api.call("GET", f"/api/jobs?path=f/team/hello&since={since}&limit=2").body
    assert page["total"] == 3
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]  # newest first
    rest = api.call("GET", f"/api/jobs?path=f/team/hello&since={since}&limit=2&offset=2").body
    assert [j["id"] for j in rest["items"]] == [ids[0]]
    failures = api.call("GET", f"/api/jobs?status=failure&since={since}").body
    assert [j["id"] for j in failures["items"]] == [failed]
    assert api.call("GET", f"/api/jobs?trigger=cron&since={since}").body["total"] == 0
    assert api.call("GET", "/api/jobs?status=bogus").status == 400
    assert api.call("GET", "/api/jobs?limit=0").status == 400


def test_operator_sees_only_jobs_they_may_read(api: Api) -> None:
    since = time.time()
    api.call("POST", "/api/run_wait/script/u/bob/private", role="bob")
    mine = api.call("POST", "/api/run_wait/script/f/team/hello", role="op").body["job_id"]
    listed = api.call("GET", f"/api/jobs?since={since}", role="op").body
    assert [j["id"] for j in listed["items"]] == [mine] and listed["total"] == 1


def test_secrets_are_redacted_in_results_and_logs(api: Api) -> None:
    response = api.call("POST", "/api/run_wait/script/f/team/leak")
    assert response.body["result"] == {"v": "********"}
    job_id = response.body["job_id"]
    logs = api.call("GET", f"/api/jobs/{job_id}/logs").body
    text = "".join(piece["text"] for piece in logs["items"])
    assert "s3cr3t-hunter2" not in text and "********" in text
    assert "s3cr3t-hunter2" not in str(job(api, job_id))


def test_secret_values_only_when_revealed_by_a_writer(api: Api) -> None:
    listed = api.call("GET", "/api/variables?prefix=f/team/").body["items"]
    assert {v["path"]: v["value"] for v in listed} == {
        "f/team/password": None,
        "f/team/plain": "visible value",
    }
    assert api.call("GET", "/api/variables/f/team/password").body["value"] is None
    assert (
        api.call("GET", "/api/variables/f/team/password?reveal=true", role="viewer").status == 403
    )
    revealed = api.call("GET", "/api/variables/f/team/password?reveal=true", role="dev")
    assert revealed.body["value"] == "s3cr3t-hunter2"
    audit = api.call("GET", "/api/audit?action=secret.reveal").body["items"]
    assert any(e["actor"] == "dev" and e["target"] == "f/team/password" for e in audit)


def links_of(api: Api, job_id: str, step_key: str, expires_at: float) -> dict[str, str]:
    engine = api.services.engine
    assert engine is not None
    return engine.approval_links(job_id, step_key, expires_at)


def run_to_approval(api: Api, role: str = "admin") -> str:
    response = api.call("POST", "/api/run_wait/flow/f/team/approve", {"who": "ann"}, role=role)
    assert response.status == 202 and response.body["status"] == "suspended", response.body
    return response.body["job_id"]


def test_approve_through_the_api(api: Api) -> None:
    job_id = run_to_approval(api)
    waiting = api.call("GET", "/api/approvals", role="op").body["items"]
    item = next(i for i in waiting if i["job_id"] == job_id)
    assert item["step_id"] == "ask" and item["form"]["properties"] == {"note": {"type": "string"}}
    assert (
        api.call("POST", f"/api/jobs/{job_id}/approve", {"note": "ok"}, role="viewer").status == 403
    )
    assert api.call("POST", f"/api/jobs/{job_id}/approve", {"note": 5}, role="op").status == 400
    approved = api.call("POST", f"/api/jobs/{job_id}/approve", {"note": "fine"}, role="op")
    assert approved.status == 200, approved.body
    wait_for(lambda: job(api, job_id)["status"] == "success", what="the approved flow to finish")
    assert job(api, job_id)["result"] == "ann:fine"
    assert api.call("POST", f"/api/jobs/{job_id}/approve", {"note": "again"}).status == 409
    audit = api.call("GET", "/api/audit?action=job.approve").body["items"]
    assert any(e["actor"] == "op" and e["detail"]["job_id"] == job_id for e in audit)


def test_reject_cancels_the_run(api: Api) -> None:
    job_id = run_to_approval(api)
    assert api.call("POST", f"/api/jobs/{job_id}/reject", role="dev").status == 200
    assert job(api, job_id)["status"] == "cancelled"
    assert job_id not in [i["job_id"] for i in api.call("GET", "/api/approvals").body["items"]]


def test_signed_links_need_no_sign_in_and_work_once(api: Api) -> None:
    job_id = run_to_approval(api)
    links = links_of(api, job_id, "ask", time.time() + 600)
    wrong = api.call("POST", f"/api/cancel/{links['resume']}", role="anon")
    assert wrong.status == 400 and job(api, job_id)["status"] == "suspended"
    resumed = api.call("POST", f"/api/resume/{links['resume']}", {"note": "link"}, role="anon")
    assert resumed.status == 200 and resumed.body["action"] == "resume", resumed.body
    wait_for(lambda: job(api, job_id)["status"] == "success", what="the resumed flow")
    again = api.call("POST", f"/api/resume/{links['resume']}", {"note": "x"}, role="anon")
    assert again.status == 400 and "already" in again.body["error"]["message"]
    forged = api.call("POST", f"/api/resume/{links['resume'][:-3]}abc", role="anon")
    assert forged.status == 400


def test_cancel_link_and_cancel_endpoint(api: Api) -> None:
    job_id = run_to_approval(api)
    links = links_of(api, job_id, "ask", time.time() + 600)
    assert api.call("POST", f"/api/cancel/{links['cancel']}", role="anon").status == 200
    assert job(api, job_id)["status"] == "cancelled"
    other = run_to_approval(api)
    assert api.call("POST", f"/api/jobs/{other}/cancel", role="viewer").status == 403
    assert api.call("POST", f"/api/jobs/{other}/cancel", role="op").status == 200
    assert job(api, other)["status"] == "cancelled"
    assert api.call("POST", f"/api/jobs/{other}/cancel").status == 409


def test_cancel_a_running_script(api: Api) -> None:
    job_id = api.call("POST", "/api/run/script/f/team/slow").body["job_id"]
    wait_for(lambda: job(api, job_id)["status"] == "running", what="the slow run to start")
    cancelled = api.call("POST", f"/api/jobs/{job_id}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    # the kernel is free again for the next run
    assert api.call("POST", "/api/run_wait/script/f/team/hello").status == 200
