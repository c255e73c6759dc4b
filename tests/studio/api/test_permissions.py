"""Every route x every role: no unexpected allow, and no unexpected refusal.

A case lists the roles that may do it. "Allowed" means the permission layer let the
request through (not 401/403/404); "refused" means 401 for anonymous callers, 404 for
another user's private `u/<other>/` items (their existence is not leaked), and
403 or 404 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.studio.api.conftest import HELLO, ROLES, Api

ALL = {"admin", "dev", "op", "viewer"}
READERS = ALL  # everyone with a right in f/team
RUNNERS = {"admin", "dev", "op"}
WRITERS = {"admin", "dev"}
ADMIN = {"admin"}
PUBLIC = {*ALL, "anon"}


@dataclass(frozen=True)
class Case:
    method: str
    url: str
    allowed: set[str]
    body: Any = None
    private: bool = False  # another user's u/ tree: refusals must be 404

    def body_for(self, role: str) -> Any:
        return self.body(role) if callable(self.body) else self.body


def item_cases(
    base: str,
    allowed_read: set[str],
    allowed_run: set[str],
    allowed_write: set[str],
    private: bool = False,
) -> list[Case]:
    path = base.split("/api/scripts/")[1]
    return [
        Case("GET", base, allowed_read, private=private),
        Case("GET", f"{base}/versions", allowed_read, private=private),
        Case("GET", f"{base}/schema", allowed_read, private=private),
        Case("GET", f"{base}/diff?a=1&b=1", allowed_read, private=private),
        Case("GET", f"{base}/draft", allowed_read, private=private),
        Case("PUT", base, allowed_write, {"content": HELLO}, private=private),
        Case(
            "PUT",
            f"{base}/draft",
            allowed_write,
            {"content": HELLO + "\n# draft\n"},
            private=private,
        ),
        Case("POST", f"/api/run_wait/script/{path}", allowed_run, {}, private=private),
        Case("POST", f"/api/run/script/{path}", allowed_run, {}, private=private),
    ]


CASES: list[Case] = [
    Case("GET", "/api/health", PUBLIC),
    Case("GET", "/api/auth/me", ALL),
    Case("GET", "/api/scripts", ALL),
    Case("GET", "/api/flows", ALL),
    *item_cases("/api/scripts/f/team/hello", READERS, RUNNERS, WRITERS),
    *item_cases("/api/scripts/u/dev/mine", {"admin", "dev"}, {"admin", "dev"}, {"admin", "dev"}),
    *item_cases("/api/scripts/u/bob/private", ADMIN, ADMIN, ADMIN, private=True),
    Case("GET", "/api/flows/f/team/approve", READERS),
    Case("GET", "/api/flows/f/team/approve/schema", READERS),
    Case("PUT", "/api/flows/f/team/approve/draft", WRITERS, {"content": "steps: []\n"}),
    Case("GET", "/api/jobs", ALL),
    Case("GET", "/api/jobs/{team_job}", READERS),
    Case("GET", "/api/jobs/{team_job}/logs", READERS),
    Case("GET", "/api/jobs/{bob_job}", ADMIN),
    Case("GET", "/api/jobs/{bob_job}/logs", ADMIN),
    Case("POST", "/api/jobs/{bob_job}/cancel", ADMIN),  # ended: 409 for admin
    Case("POST", "/api/jobs/{team_job}/cancel", RUNNERS),  # ended: 409 when allowed
    Case("POST", "/api/jobs/{team_job}/approve", RUNNERS, {}),  # not waiting: 409
    Case("GET", "/api/approvals", ALL),
    Case("GET", "/api/users", ADMIN),
    Case(
        "POST",
        "/api/users",
        ADMIN,
        lambda role: {"name": f"made-by-{role}", "password": "long-enough-1", "role": "viewer"},
    ),
    Case("GET", "/api/users/viewer", {"admin", "viewer"}),
    Case("PATCH", "/api/users/bob", ADMIN, {"disabled": False}),
    Case("PATCH", "/api/users/viewer", {"admin", "viewer"}, {"password": "password-viewer"}),
    Case("GET", "/api/groups", ALL),
    Case("POST", "/api/groups", ADMIN, lambda role: {"name": f"g-{role}", "members": []}),
    Case("PUT", "/api/groups/ops", ADMIN, {"members": ["op"]}),
    Case("GET", "/api/folders", ALL),
    Case("GET", "/api/folders/team", READERS),
    Case("POST", "/api/folders", WRITERS, lambda role: {"name": f"fold-{role}"}),
    Case("PUT", "/api/folders/team/rights", WRITERS, {"principal": "u/viewer", "right": "viewer"}),
    Case("GET", "/api/tokens", ALL),
    Case("POST", "/api/tokens", ALL, {"label": "matrix"}),
    Case("GET", "/api/tokens?owner=bob", ADMIN),
    Case("GET", "/api/audit", ADMIN),
    Case("GET", "/api/variables", ALL),
    Case("GET", "/api/variables/f/team/plain", READERS),
    Case(
        "PUT",
        "/api/variables/f/team/plain",
        WRITERS,
        {"value": "visible value", "description": "plain"},
    ),
    Case("GET", "/api/variables/f/team/password?reveal=true", WRITERS),
    Case("GET", "/api/variables/u/bob/token", ADMIN, private=True),  # admin: 200
    Case("GET", "/api/resource_types", ALL),
    Case("PUT", "/api/resource_types/matrix", WRITERS, {"schema": {"type": "object"}}),
    Case("GET", "/api/resources", ALL),
    Case("PUT", "/api/resources/f/team/db", WRITERS, {"resource_type": "matrix", "value": {}}),
    Case("GET", "/api/schedules", ALL),
    Case(
        "PUT",
        "/api/schedules/f/team/nightly",
        WRITERS,
        {"cron": "0 2 * * *", "target_path": "f/team/hello"},
    ),
    Case(
        "PUT",
        "/api/schedules/u/bob/nightly",
        ADMIN,
        {"cron": "0 2 * * *", "target_path": "u/bob/private"},
        private=True,
    ),
    Case("GET", "/api/webhook_signing/script/f/team/sig", READERS),
    Case("PUT", "/api/webhook_signing/script/f/team/sig", WRITERS, {"tolerance_s": 30}),
    Case("POST", "/api/history/sql", ADMIN, {"sql": "select count(*) from runs"}),
    Case("POST", "/api/secrets/rotate", ADMIN),
    Case("GET", "/api/runtime/variables/f/team/plain", READERS),
    Case("GET", "/api/runtime/variables/u/bob/token", ADMIN, private=True),
    Case("GET", "/api/runtime/resources/f/team/db", READERS),
    # about "this run": a user's token is refused with 400, never allowed (see test_runtime)
    Case("GET", "/api/runtime/state", set()),
    Case("POST", "/api/runtime/progress", set(), {"progress": 5}),
    Case("GET", "/api/runtime/resume_urls", set()),
    Case("POST", "/api/auth/logout", ALL),
]


@pytest.fixture(scope="module")
def ids(api: Api) -> dict[str, str]:
    ws = api.workspace
    ws.save_draft("script", "f/team/hello", HELLO, author="dev")
    ws.save_draft("script", "u/dev/mine", HELLO, author="dev")
    ws.save_draft("script", "u/bob/private", HELLO, author="bob")
    ws.deploy("script", "f/team/sig", HELLO, author="dev")
    ws.set_webhook_signing("script", "f/team/sig", secret="sig-secret-long-enough", tolerance_s=300)
    ws.set_variable("u/bob/token", "bobs value")
    ws.set_resource_type("matrix", {"type": "object"})
    ws.set_resource("f/team/db", "matrix", {})
    team = api.call("POST", "/api/run_wait/script/f/team/hello", role="dev").body["job_id"]
    bob = api.call("POST", "/api/run_wait/script/u/bob/private", role="bob").body["job_id"]
    return {"team_job": team, "bob_job": bob}


def _case_id(case: Case) -> str:
    return f"{case.method} {case.url}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_route_role(api: Api, ids: dict[str, str], case: Case, role: str) -> None:
    url = case.url.format(**ids)
    if case.method == "PUT" and url.endswith("/api/webhook_signing/script/f/team/sig"):
        pass  # idempotent: re-enables signing on an item nobody runs
    response = api.call(case.method, url, case.body_for(role), role=role)
    if role in case.allowed:
        assert response.status not in (401, 403, 404), (role, url, response.status, response.body)
        assert response.status < 500 or "run_wait" in url, response.body
    elif role == "anon":
        assert response.status == 401, (url, response.status, response.body)
    elif case.private:
        assert response.status == 404, (role, url, response.status, response.body)
    elif "/api/runtime/" in url and not case.allowed:
        assert response.status == 400, (role, url, response.status, response.body)
    else:
        assert response.status in (403, 404), (role, url, response.status, response.body)
    assert "Traceback" not in str(response.body) or "run_wait" in url


@pytest.mark.parametrize("role", ROLES)
def test_delete_needs_write(api: Api, role: str) -> None:
    path = f"f/team/doomed-{role}"
    api.workspace.deploy("script", path, HELLO, author="dev")
    response = api.call("DELETE", f"/api/scripts/{path}", role=role)
    if role in WRITERS:
        assert response.status == 200
        assert api.call("GET", f"/api/scripts/{path}").status == 404
    else:
        assert response.status == (401 if role == "anon" else 403)
        assert api.call("GET", f"/api/scripts/{path}").status == 200


def test_delete_of_another_users_item_is_404(api: Api) -> None:
    assert api.call("DELETE", "/api/scripts/u/bob/private", role="dev").status == 404
    assert api.call("GET", "/api/scripts/u/bob/private").status == 200


def test_lists_show_only_what_the_caller_may_read(api: Api, ids: dict[str, str]) -> None:
    def paths(role: str) -> set[str]:
        return {i["path"] for i in api.call("GET", "/api/scripts", role=role).body["items"]}

    assert {"u/bob/private", "u/dev/mine", "f/team/hello"} <= paths("admin")
    assert "u/bob/private" not in paths("dev") and "u/dev/mine" in paths("dev")
    assert not {p for p in paths("viewer") if p.startswith("u/")}
    assert not {p for p in paths("op") if p.startswith("f/examples/")}


Token = Callable[..., str]


@pytest.mark.parametrize(
    ("scopes", "run_team", "run_mine", "read", "write"),
    [
        (["read"], False, False, True, False),
        (["run:f/team"], True, False, False, False),
        (["run"], True, True, False, False),  # a run token cannot read the code
        (["write"], False, False, True, True),
    ],
)
def test_scoped_tokens(
    api: Api, scopes: list[str], run_team: bool, run_mine: bool, read: bool, write: bool
) -> None:
    created = api.call("POST", "/api/tokens", {"label": "scoped", "scopes": scopes}, role="dev")
    assert created.status == 201, created.body
    api.tokens["scoped"] = created.body["token"]
    try:

        def ok(method: str, url: str, body: Any = None) -> bool:
            status = api.call(method, url, body, role="scoped").status
            assert status != 500
            return status not in (401, 403, 404)

        assert ok("POST", "/api/run_wait/script/f/team/hello", {}) == run_team
        assert ok("POST", "/api/run_wait/script/u/dev/mine", {}) == run_mine
        assert ok("GET", "/api/scripts/u/dev/mine") == read
        assert ok("PUT", "/api/scripts/u/dev/mine", {"content": HELLO}) == write
        # A scoped token cannot mint a wider one.
        assert (
            api.call(
                "POST", "/api/tokens", {"label": "x", "scopes": ["admin"]}, role="scoped"
            ).status
            == 403
        )
    finally:
        del api.tokens["scoped"]
        api.call("DELETE", f"/api/tokens/{created.body['id']}", role="dev")
