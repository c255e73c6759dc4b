"""`POST /api/complete` on a real server with real kernels: what it offers, who may ask,
and how a signed-in page (cookie + XSRF header) asks."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from typing import Any

from studio.api.complete import script_requirements
from tests.studio.api.conftest import Api


def completion(api: Api, body: dict[str, Any], role: str = "admin") -> Any:
    return api.call("POST", "/api/complete", body, role=role)


def test_module_members_from_a_live_kernel(api: Api) -> None:
    code = "import json\njson.du"
    response = completion(api, {"code": code, "cursor": len(code), "language": "python"})
    assert response.status == 200, response.body
    # IPython gives up on a match's type when jedi is slow (a busy machine): "" then.
    types = response.body.pop("types")
    assert len(types) == 2 and set(types) <= {"function", ""}
    assert response.body == {
        "matches": ["dump", "dumps"],
        "cursor_start": len(code) - 2,
        "cursor_end": len(code),
        "environment": "default",
    }


def test_names_and_keywords_of_the_script_itself(api: Api) -> None:
    code = "def fetch(limit_rows=10):\n    return limit_rows\n\nfetch(limit_"
    response = completion(api, {"code": code, "cursor": len(code)})
    assert response.status == 200, response.body
    assert "limit_rows=" in response.body["matches"]
    # The cursor may sit anywhere, not only at the end.
    code = "import json\njson.lo\nx = 1\n"
    response = completion(api, {"code": code, "cursor": code.index("lo") + 2})
    assert response.body["matches"] == ["load", "loads"]


def test_third_party_imports_never_build_an_environment(api: Api) -> None:
    # No warm kernel has these packages: the default environment answers at once,
    # still knowing the script's own names.
    code = "import nonexistent_pkg_abc\nvalue_one = 1\nvalue_"
    response = completion(api, {"code": code, "cursor": len(code)})
    assert response.status == 200, response.body
    assert response.body["environment"] == "default"
    assert response.body["matches"] == ["value_one"]
    assert not (api.services.settings.data / "envs" / "locks").exists()


def test_roles_that_may_run_get_completions_others_are_refused(api: Api) -> None:
    body = {"code": "pri", "cursor": 3}
    for role in ("admin", "dev", "op"):
        response = completion(api, body, role=role)
        assert response.status == 200, (role, response.body)
        assert response.body["matches"] == ["print"]
    response = completion(api, body, role="viewer")
    assert response.status == 403
    assert "viewer (viewer) may not run" in response.body["error"]["message"]
    assert completion(api, body, role="anon").status == 401


def test_the_path_being_edited_must_be_runnable_by_the_caller(api: Api) -> None:
    body = {"code": "pri", "cursor": 3, "path": "f/team/hello"}
    assert completion(api, body, role="op").status == 200
    # Another user's private script does not exist for a non-admin.
    response = completion(api, {**body, "path": "u/bob/private"}, role="dev")
    assert response.status == 404
    response = completion(api, {**body, "path": "not a path"}, role="dev")
    assert response.status == 400
    assert response.body["error"]["field"] == "path"


def test_bad_requests_name_the_field(api: Api) -> None:
    cases = [
        ({"cursor": 1}, "code"),
        ({"code": "abc", "cursor": 4}, "cursor"),
        ({"code": "abc", "cursor": "1"}, "cursor"),
        ({"code": "abc", "cursor": True}, "cursor"),
        ({"code": "abc", "language": "cobol"}, "language"),
        ({"code": "x" * 250_000, "cursor": 1}, "code"),
    ]
    for body, field in cases:
        response = completion(api, body)
        assert response.status == 400, (body, response.body)
        assert response.body["error"]["field"] == field
    assert "from 0 to 3" in completion(api, cases[1][0]).body["error"]["message"]


def test_languages_without_a_kernel_get_no_matches(api: Api) -> None:
    response = completion(api, {"code": "ec", "cursor": 2, "language": "bash"})
    assert response.status == 200
    assert response.body["matches"] == []


def test_a_signed_in_page_must_echo_the_xsrf_cookie(api: Api) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            api.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, _ = post("/api/auth/login", {"name": "op", "password": "password-op"})
    assert status == 200
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    body = {"code": "import json\njson.du", "cursor": 19}
    status, answer = post("/api/complete", body)
    assert status == 403 and "X-XSRF-Token" in answer["error"]["message"]
    status, answer = post("/api/complete", body, {"X-XSRF-Token": xsrf})
    assert status == 200, answer
    assert answer["matches"] == ["dump", "dumps"]


def test_requirements_are_read_from_code_being_typed() -> None:
    # `json.` alone is a syntax error: the line under the cursor is left out.
    code = "import requests\nrequests.\n"
    assert script_requirements(code, code.index(".") + 1) == ["requests"]
    assert script_requirements("import json\njson.", 17) == []
    broken = "def (:\nimport requests\n"
    assert script_requirements(broken, 3) == ["requests"]  # the broken line is the cursor's
    assert script_requirements(broken, len(broken)) == []  # still broken without the cursor's
