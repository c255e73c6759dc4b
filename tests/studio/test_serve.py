"""`gristmill serve` as a real process on a loopback port: health, sign-in redirect,
security headers on every kind of response, signed-session key, clean stop."""

from __future__ import annotations

import http.client
import json
import signal
import stat
import urllib.request

import psutil
import pytest

from studio.server import CONTENT_SECURITY_POLICY
from tests.conftest import wait_for
from tests.serving import serving


def _get(base: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One GET without following redirects."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _assert_security_headers(response: http.client.HTTPResponse, what: str) -> None:
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, what
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff", what
    assert response.headers["Referrer-Policy"] == "same-origin", what


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "data"
    with serving(data, env={"GRISTMILL_ADMIN_PASSWORD": "correct horse battery"}) as served:
        yield served.proc, served.base, data


def test_serve_answers_and_stops_cleanly_on_sigterm(server):
    proc, base, data = server

    def health() -> dict:
        with urllib.request.urlopen(f"{base}/api/health", timeout=5) as response:
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            return json.loads(response.read())

    wait_for(
        lambda: health()["kernels"].get("default", {}).get("idle") == 1,
        timeout=60,
        what="a warm kernel",
    )
    assert "data" not in health()  # no server paths to anonymous callers
    assert health()["flow_runs_in_progress"] == 0
    assert (data / "runs.duckdb").exists()  # the server owns the run store
    kernels = psutil.Process(proc.pid).children(recursive=True)
    assert kernels, "the server should own its kernel processes"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    wait_for(
        lambda: not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels),
        timeout=20,
        what="kernels to exit",
    )


def test_pages_need_a_session_and_every_response_has_security_headers(server):
    _, base, data = server
    home = _get(base, "/")
    assert home.status == 302
    assert home.headers["Location"].endswith("login?next=%2F")
    _assert_security_headers(home, "a redirect from a Panel page")

    login = _get(base, "/login")
    assert login.status == 200
    _assert_security_headers(login, "the sign-in page")
    cookies = login.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("_xsrf=") for c in cookies), cookies

    static = _get(base, "/static/js/bokeh.min.js")
    assert static.status == 200
    _assert_security_headers(static, "a Bokeh static file")

    missing = _get(base, "/no/such/page")
    assert missing.status == 404
    _assert_security_headers(missing, "a 404")

    # A page's websocket needs a signed-in session, whatever its origin.
    ws = _get(
        base,
        "/ws",
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Origin": "http://evil.example",
        },
    )
    assert ws.status in (401, 403)

    key = data / "keys" / "sessions.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes().strip()) >= 32


def test_login_refuses_a_post_without_the_xsrf_token(server):
    _, base, _ = server
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "POST",
        "/login",
        body="name=admin&password=correct+horse+battery",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 403
    assert "Traceback" not in body and 'File "' not in body
    assert not any(
        c.startswith("gristmill_session=") for c in response.headers.get_all("Set-Cookie") or []
    )
