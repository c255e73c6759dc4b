"""Scripts and flows over HTTP, sign-in with cookies and XSRF, tokens, users, folders,
schedules, audit; errors and security headers."""

from __future__ import annotations

import http.client
import itertools
import json
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from studio.api.base import SECURITY_HEADERS
from tests.studio.api.conftest import APPROVAL_FLOW, HELLO, Api

HELLO_V2 = HELLO.replace("hello {name}", "hi {name}")


def test_deploy_versions_diff_and_unchanged(api: Api) -> None:
    first = api.call(
        "PUT", "/api/scripts/f/team/greet", {"content": HELLO, "summary": "v1"}, role="dev"
    )
    assert first.status == 201 and first.body["version"] == 1 and first.body["author"] == "dev"
    same = api.call("PUT", "/api/scripts/f/team/greet", {"content": HELLO}, role="dev")
    assert same.status == 200 and same.body["version"] == 1
    second = api.call("PUT", "/api/scripts/f/team/greet", {"content": HELLO_V2}, role="dev")
    assert second.status == 201 and second.body["version"] == 2
    assert api.call("GET", "/api/scripts/f/team/greet").body["content"] == HELLO_V2
    assert api.call("GET", "/api/scripts/f/team/greet?version=1").body["content"] == HELLO
    versions = api.call("GET", "/api/scripts/f/team/greet/versions").body
    assert [v["version"] for v in versions["items"]] == [1, 2]
    assert "content" not in versions["items"][0]
    diff = api.call("GET", "/api/scripts/f/team/greet/diff?a=1&b=2").body["diff"]
    assert '-    print(f"hello {name}")' in diff and '+    print(f"hi {name}")' in diff
    schema = api.call("GET", "/api/scripts/f/team/greet/schema").body["schema"]
    assert set(schema["properties"]) == {"name", "times"}
    listed = api.call("GET", "/api/scripts?prefix=f/team/gr").body["items"]
    assert [i["path"] for i in listed] == ["f/team/greet"]
    audit = api.call("GET", "/api/audit?action=script.deploy").body["items"]
    assert sum(1 for e in audit if e["target"] == "f/team/greet") == 2  # unchanged is not a deploy


def test_bad_deploys_say_what_is_wrong(api: Api) -> None:
    no_main = api.call("PUT", "/api/scripts/f/team/bad", {"content": "x = 1\n"})
    assert no_main.status == 400 and "main" in no_main.body["error"]["message"]
    empty = api.call("PUT", "/api/scripts/f/team/bad", {})
    assert empty.status == 400 and empty.body["error"]["field"] == "content"
    language = api.call("PUT", "/api/scripts/f/team/bad", {"content": HELLO, "language": "cobol"})
    assert language.status == 400 and language.body["error"]["field"] == "language"
    path = api.call("PUT", "/api/scripts/f/Team/Bad", {"content": HELLO})
    assert path.status == 400 and "Team" in path.body["error"]["message"]
    not_json = api.call("PUT", "/api/scripts/f/team/bad", raw=b"{nope")
    assert not_json.status == 400 and "JSON" in not_json.body["error"]["message"]
    flow = api.call("PUT", "/api/flows/f/team/badflow", {"content": "steps: 3\n"})
    assert flow.status == 400
    assert api.call("GET", "/api/scripts/f/team/bad").status == 404


def test_flows_drafts_schema_and_delete(api: Api) -> None:
    created = api.call("PUT", "/api/flows/f/team/flow2", {"content": APPROVAL_FLOW})
    assert created.status == 201 and created.body["kind"] == "flow"
    schema = api.call("GET", "/api/flows/f/team/flow2/schema").body["schema"]
    assert schema["properties"]["who"]["default"] == "x"
    assert api.call("GET", "/api/flows/f/team/flow2/draft").status == 404
    saved = api.call("PUT", "/api/flows/f/team/flow2/draft", {"content": "draft: text"}, role="dev")
    assert saved.status == 200 and saved.body["author"] == "dev"
    assert api.call("GET", "/api/flows/f/team/flow2/draft").body["content"] == "draft: text"
    assert api.call("DELETE", "/api/flows/f/team/flow2").status == 200
    assert api.call("GET", "/api/flows/f/team/flow2").status == 404
    assert api.call("DELETE", "/api/flows/f/team/flow2").status == 404


def test_percent_encoded_paths_work(api: Api) -> None:
    assert api.call("GET", "/api/scripts/f%2Fteam%2Fhello").body["path"] == "f/team/hello"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/health"),
        ("GET", "/api/scripts/f/team/hello"),
        ("GET", "/api/scripts/f/team/missing"),
        ("GET", "/api/nothing/here"),
        ("PATCH", "/api/scripts/f/team/hello"),
        ("POST", "/api/run_wait/script/f/team/boom"),
    ],
)
def test_security_headers_and_json_errors_everywhere(api: Api, method: str, url: str) -> None:
    response = api.call(method, url, {} if method != "GET" else None)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name.lower()] == value
    assert response.headers["content-type"].startswith("application/json")
    if response.status >= 400:
        assert isinstance(response.body["error"]["message"], str)
        assert str(api.services.settings.data) not in json.dumps(response.body)
        assert "Traceback (most recent call last)" not in response.body["error"]["message"]


def test_unauthenticated_is_401_and_unknown_token_too(api: Api) -> None:
    assert api.call("GET", "/api/scripts", role="anon").status == 401
    api.tokens["bogus"] = "gm_not_a_real_token"
    try:
        response = api.call("GET", "/api/scripts", role="bogus")
        assert response.status == 401 and "unknown" in response.body["error"]["message"]
    finally:
        del api.tokens["bogus"]
    basic = api.call("GET", "/api/scripts", role="anon", headers={"Authorization": "Basic eDp5"})
    assert basic.status == 401


def raw_request(
    api: Api, method: str, url: str, body: dict | None = None, headers: dict | None = None
) -> http.client.HTTPResponse:
    parts = urlsplit(api.base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, url, body=payload, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response


def test_login_session_cookie_xsrf_and_logout(api: Api) -> None:
    bad = api.call(
        "POST", "/api/auth/login", {"name": "dev", "password": "wrong-password"}, role="anon"
    )
    assert bad.status == 401
    response = raw_request(
        api, "POST", "/api/auth/login", {"name": "dev", "password": "password-dev"}
    )
    assert response.status == 200
    cookies = response.headers.get_all("Set-Cookie") or []
    session_cookie = next(c for c in cookies if c.startswith("gristmill_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert "Secure" not in session_cookie  # plain http here
    xsrf_cookie = next(c for c in cookies if c.startswith("_xsrf="))
    session = session_cookie.split(";")[0]
    xsrf = xsrf_cookie.split(";")[0].split("=", 1)[1]
    jar = {"Cookie": f"{session}; _xsrf={xsrf}"}
    me = api.call("GET", "/api/auth/me", role="anon", headers=jar)
    assert me.status == 200 and me.body["name"] == "dev" and me.body["via"] == "session"
    unsafe = api.call(
        "PUT", "/api/scripts/u/dev/cookie", {"content": HELLO}, role="anon", headers=jar
    )
    assert unsafe.status == 403 and "X-XSRF-Token" in unsafe.body["error"]["message"]
    forged = {**jar, "X-XSRF-Token": "something-else"}
    assert (
        api.call(
            "PUT", "/api/scripts/u/dev/cookie", {"content": HELLO}, role="anon", headers=forged
        ).status
        == 403
    )
    good = {**jar, "X-XSRF-Token": xsrf}
    assert (
        api.call(
            "PUT", "/api/scripts/u/dev/cookie", {"content": HELLO}, role="anon", headers=good
        ).status
        == 201
    )
    out = api.call("POST", "/api/auth/logout", role="anon", headers=good)
    assert out.status == 200 and out.body["signed_out"] is True
    assert api.call("GET", "/api/auth/me", role="anon", headers=jar).status == 401
    actions = [e["action"] for e in api.call("GET", "/api/audit?actor=dev").body["items"]]
    assert {"auth.login", "auth.logout"} <= set(actions)
    failed = api.call("GET", "/api/audit?action=auth.login_failed").body["items"]
    assert any(e["target"] == "dev" for e in failed)


def test_tokens_are_shown_once_listed_and_revocable(api: Api) -> None:
    created = api.call("POST", "/api/tokens", {"label": "ci", "scopes": ["run"]}, role="op")
    assert created.status == 201 and created.body["token"].startswith("gm_")
    assert len(created.body["token"]) >= 3 + 22  # >= 128 random bits, urlsafe base64
    listed = api.call("GET", "/api/tokens", role="op").body["items"]
    mine = next(t for t in listed if t["id"] == created.body["id"])
    assert "token" not in mine and mine["scopes"] == ["run"] and mine["owner"] == "op"
    api.tokens["ci"] = created.body["token"]
    try:
        assert api.call("POST", "/api/run_wait/script/f/team/hello", role="ci").status == 200
        assert api.call("DELETE", f"/api/tokens/{created.body['id']}", role="viewer").status == 404
        assert api.call("DELETE", f"/api/tokens/{created.body['id']}", role="op").status == 200
        assert api.call("GET", "/api/auth/me", role="ci").status == 401
    finally:
        del api.tokens["ci"]
    audit = [e["action"] for e in api.call("GET", "/api/audit?actor=op").body["items"]]
    assert {"token.create", "token.revoke"} <= set(audit)
    bad = api.call("POST", "/api/tokens", {"label": "x", "scopes": ["sudo"]}, role="op")
    assert bad.status == 400 and "sudo" in bad.body["error"]["message"]


def test_users_groups_folders(api: Api) -> None:
    made = api.call(
        "POST", "/api/users", {"name": "carol", "password": "password-carol", "role": "operator"}
    )
    assert made.status == 201 and made.body == {**made.body, "name": "carol", "role": "operator"}
    assert "password" not in json.dumps(made.body)
    assert (
        api.call("POST", "/api/users", {"name": "carol", "password": "password-carol"}).status
        == 409
    )
    short = api.call("POST", "/api/users", {"name": "dave", "password": "x"})
    assert short.status == 400 and short.body["error"]["field"] == "password"
    promoted = api.call("PATCH", "/api/users/carol", {"role": "developer"})
    assert promoted.body["role"] == "developer"
    assert any(
        e["target"] == "carol" and e["detail"].get("role") == "developer"
        for e in api.call("GET", "/api/audit?action=user.update").body["items"]
    )
    group = api.call("POST", "/api/groups", {"name": "support", "members": ["carol"]})
    assert group.status == 201 and group.body["members"] == ["carol"]
    folder = api.call("POST", "/api/folders", {"name": "support"}, role="dev")
    assert folder.status == 201 and folder.body["rights"] == {"u/dev": "owner"}
    right = api.call(
        "PUT",
        "/api/folders/support/rights",
        {"principal": "g/support", "right": "writer"},
        role="dev",
    )
    assert right.body["rights"] == {"u/dev": "owner", "g/support": "writer"}
    bad = api.call(
        "PUT", "/api/folders/support/rights", {"principal": "g/support", "right": "god"}, role="dev"
    )
    assert bad.status == 400 and bad.body["error"]["field"] == "right"
    assert "support" not in [
        f["name"] for f in api.call("GET", "/api/folders", role="viewer").body["items"]
    ]


def test_schedules_with_next_fires_seconds_first(api: Api) -> None:
    saved = api.call(
        "PUT",
        "/api/schedules/f/team/every15s",
        {
            "cron": "*/15 * * * * *",
            "timezone": "Europe/Paris",
            "target_path": "f/team/hello",
            "args": {"name": "cron"},
        },
        role="dev",
    )
    assert saved.status == 200, saved.body
    fires = [datetime.fromisoformat(t) for t in saved.body["next_fires"]]
    assert len(fires) == 5 and all(f.second % 15 == 0 for f in fires)
    assert all((b - a).total_seconds() == 15 for a, b in itertools.pairwise(fires))
    assert fires[0].utcoffset() is not None and str(fires[0].tzinfo) != "UTC"
    nightly = api.call(
        "PUT",
        "/api/schedules/f/team/nightly2",
        {"cron": "0 2 * * *", "timezone": "Europe/Paris", "target_path": "f/team/hello"},
    ).body
    assert all(datetime.fromisoformat(t).hour == 2 for t in nightly["next_fires"])
    listed = api.call("GET", "/api/schedules").body["items"]
    assert {"f/team/every15s", "f/team/nightly2"} <= {s["path"] for s in listed}
    paused = api.call(
        "PUT",
        "/api/schedules/f/team/every15s",
        {"cron": "*/15 * * * * *", "target_path": "f/team/hello", "enabled": False},
    )
    assert paused.body["enabled"] is False
    bad = api.call(
        "PUT", "/api/schedules/f/team/bad", {"cron": "61 * * * *", "target_path": "f/team/hello"}
    )
    assert bad.status == 400 and bad.body["error"].get("field") == "cron"
    bad_zone = api.call(
        "PUT",
        "/api/schedules/f/team/bad",
        {"cron": "0 * * * *", "timezone": "Mars/Base", "target_path": "f/team/hello"},
    )
    assert bad_zone.status == 400
    op_target = api.call(
        "PUT",
        "/api/schedules/u/dev/mine-sched",
        {"cron": "0 * * * *", "target_path": "u/bob/private"},
        role="dev",
    )
    assert op_target.status == 404
    assert api.call("DELETE", "/api/schedules/f/team/nightly2").status == 200


def test_resources_typed_by_their_schema(api: Api) -> None:
    schema = {
        "type": "object",
        "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
        "required": ["host"],
    }
    assert (
        api.call("PUT", "/api/resource_types/postgres", {"schema": schema}, role="dev").status
        == 200
    )
    ok = api.call(
        "PUT",
        "/api/resources/f/team/pg",
        {"resource_type": "postgres", "value": {"host": "db", "port": 5432}},
    )
    assert ok.status == 200 and ok.body["value"]["host"] == "db"
    bad = api.call(
        "PUT", "/api/resources/f/team/pg", {"resource_type": "postgres", "value": {"port": "x"}}
    )
    assert bad.status == 400
    assert (
        api.call("GET", "/api/resources/f/team/pg", role="viewer").body["resource_type"]
        == "postgres"
    )
    assert api.call("DELETE", "/api/resources/f/team/pg").status == 200
    assert api.call("GET", "/api/resources/f/team/pg").status == 404


def test_variables_set_and_secret_never_echoed(api: Api) -> None:
    saved = api.call(
        "PUT",
        "/api/variables/f/team/apikey",
        {"value": "key-0123456789", "secret": True},
        role="dev",
    )
    assert saved.status == 200 and saved.body["value"] is None and saved.body["secret"] is True
    assert "key-0123456789" not in json.dumps(api.call("GET", "/api/variables").body)
    db = (api.services.settings.data / "workspace.db").read_bytes()
    assert b"key-0123456789" not in db
    assert api.call("DELETE", "/api/variables/f/team/apikey", role="dev").status == 200


def test_health_keeps_the_server_fields(api: Api) -> None:
    body = api.call("GET", "/api/health", role="anon").body
    assert set(body) == {"status", "uptime_s", "kernels", "flow_runs_in_progress"}


def test_openapi_document_is_served(api: Api) -> None:
    doc = api.call("GET", "/api/openapi.json", role="anon").body
    assert doc["openapi"] == "3.1.0"
    assert "/api/run_wait/script/{path}" in doc["paths"]
