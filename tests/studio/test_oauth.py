"""OAuth / OpenID Connect sign-in against a fake provider (a small Tornado app on
127.0.0.1 with discovery, authorize, token and userinfo endpoints), driving a real
`gristmill serve` over plain HTTP with a cookie jar: the studio's redirects are followed
to the provider and back, as a browser would."""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from studio.pages.oauth import OAuthError, pkce_challenge, provider_from_settings, user_name_for
from tests.conftest import wait_for
from tests.portal import Portal
from tests.serving import serving

CLIENT_ID = "gristmill-test-client"
CLIENT_SECRET = "s3cret-" + secrets.token_hex(8)
ADMIN_TOKEN = "gm_" + secrets.token_urlsafe(32)


@dataclass
class FakeProvider:
    """An OpenID provider that signs in whoever `identity` says, checking what a real one
    checks: client, redirect URI, single-use codes and the PKCE verifier."""

    base: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    deny: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)


class _Discovery(tornado.web.RequestHandler):
    def initialize(self, fake: FakeProvider) -> None:
        self.fake = fake

    def get(self) -> None:
        self.write(
            {
                "issuer": self.fake.base,
                "authorization_endpoint": f"{self.fake.base}/authorize",
                "token_endpoint": f"{self.fake.base}/token",
                "userinfo_endpoint": f"{self.fake.base}/userinfo",
            }
        )


class _Authorize(_Discovery):
    def get(self) -> None:
        arg = self.get_argument
        redirect_uri = arg("redirect_uri")
        if self.fake.deny:
            query = {"error": "access_denied", "error_description": "the user said no"}
            self.redirect(
                f"{redirect_uri}?{urllib.parse.urlencode({**query, 'state': arg('state')})}"
            )
            return
        assert arg("response_type") == "code" and arg("client_id") == CLIENT_ID
        assert arg("code_challenge_method") == "S256" and "openid" in arg("scope")
        code = secrets.token_urlsafe(16)
        self.fake.codes[code] = {
            "challenge": arg("code_challenge"),
            "redirect_uri": redirect_uri,
            "identity": json.dumps(self.fake.identity),
        }
        query = urllib.parse.urlencode({"code": code, "state": arg("state")})
        self.redirect(f"{redirect_uri}?{query}")


class _Token(_Discovery):
    def post(self) -> None:
        form = {k: self.get_body_argument(k) for k in self.request.body_arguments}
        self.fake.token_requests.append(form)
        grant = self.fake.codes.pop(form.get("code", ""), None)  # single use
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if (
            grant is None
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
            or form.get("redirect_uri") != grant["redirect_uri"]
            or challenge != grant["challenge"]
        ):
            self.set_status(400)
            self.write({"error": "invalid_grant", "error_description": "bad code or verifier"})
            return
        token = secrets.token_urlsafe(16)
        self.fake.tokens[token] = json.loads(grant["identity"])
        self.write({"access_token": token, "token_type": "Bearer", "expires_in": 3600})


class _UserInfo(_Discovery):
    def get(self) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        identity = self.fake.tokens.get(token)
        if identity is None:
            self.set_status(401)
            self.write({"error": "invalid_token"})
            return
        self.write(identity)


@dataclass
class Setup:
    fake: FakeProvider
    base: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    portal = Portal()
    fake = FakeProvider()
    app = tornado.web.Application(
        [
            (r"/\.well-known/openid-configuration", _Discovery, {"fake": fake}),
            (r"/authorize", _Authorize, {"fake": fake}),
            (r"/token", _Token, {"fake": fake}),
            (r"/userinfo", _UserInfo, {"fake": fake}),
        ]
    )

    async def start() -> tuple[int, tornado.httpserver.HTTPServer]:
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        return sockets[0].getsockname()[1], server

    port, provider_server = portal.run(start())
    fake.base = f"http://127.0.0.1:{port}"
    data = tmp_path_factory.mktemp("oauth") / "data"
    env = {
        "GRISTMILL_ADMIN_PASSWORD": "correct horse battery",
        "GRISTMILL_ADMIN_TOKEN": ADMIN_TOKEN,
        "GRISTMILL_OAUTH_PROVIDER": "generic",
        "GRISTMILL_OAUTH_KEY": CLIENT_ID,
        "GRISTMILL_OAUTH_SECRET": CLIENT_SECRET,
        "GRISTMILL_OAUTH_EXTRA": json.dumps({"issuer": fake.base, "label": "Acme SSO"}),
    }
    try:
        with serving(data, env=env) as server:
            yield Setup(fake, server.base)
    finally:
        portal.run(_stop(provider_server))
        portal.close()


async def _stop(server: tornado.httpserver.HTTPServer) -> None:
    server.stop()
    await server.close_all_connections()


class Browser:
    """Cookies and redirects, like a browser; `last_url` is where the redirects ended."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.last_url = ""

    def open(
        self, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=60) as response:
                self.last_url = response.url
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            self.last_url = error.url
            return error.code, error.read().decode()

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((c for c in self.jar if c.name == name), None)


def _admin(setup: Setup, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        setup.base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def sign_in(setup: Setup, identity: dict[str, Any]) -> tuple[Browser, int, Any]:
    """The whole flow, ending on `/api/auth/me` (the `next` page) as that session."""
    setup.fake.identity = identity
    browser = Browser()
    status, text = browser.open(f"{setup.base}/oauth/login?next=/api/auth/me")
    try:
        return browser, status, json.loads(text)
    except ValueError:
        return browser, status, text


def test_the_login_page_offers_the_provider(setup: Setup) -> None:
    status, page = Browser().open(f"{setup.base}/login?next=/runs")
    assert status == 200
    assert "Sign in with Acme SSO" in page
    assert "href='/oauth/login?next=%2Fruns'" in page


def test_first_sign_in_creates_a_viewer_with_our_session_cookie(setup: Setup) -> None:
    identity = {"sub": "s-erin", "email": "Erin.Smith@Example.com", "email_verified": True}
    browser, status, me = sign_in(setup, {**identity, "preferred_username": "erin"})
    assert status == 200, me
    assert browser.last_url == f"{setup.base}/api/auth/me"
    assert me["name"] == "erin" and me["role"] == "viewer" and me["via"] == "session"
    assert me["email"] == "erin.smith@example.com"
    session = browser.cookie("gristmill_session")
    assert session is not None and session.has_nonstandard_attr("HttpOnly")
    # The PKCE verifier went to the token endpoint (the fake checked it against the challenge).
    assert setup.fake.token_requests[-1]["code_verifier"]
    # Permissions are the local ones: a viewer may not run, so no completions...
    xsrf = browser.cookie("_xsrf")
    assert xsrf is not None
    complete = {"code": "pri", "cursor": 3}
    headers = {"X-XSRF-Token": xsrf.value}
    status, text = browser.open(f"{setup.base}/api/complete", complete, headers)
    assert status == 403, text
    # ...until an admin makes them an operator.
    assert _admin(setup, "PATCH", "/api/users/erin", {"role": "operator"})[0] == 200
    wait_for(
        lambda: browser.open(f"{setup.base}/api/complete", complete, headers)[0] == 200,
        timeout=60,
        what="completions for the operator (a warm kernel)",
    )
    # The next sign-in finds the same user, with the role the admin gave.
    _, status, again = sign_in(setup, {**identity, "preferred_username": "erin"})
    assert (again["name"], again["role"]) == ("erin", "operator")


def test_a_user_with_the_same_email_is_linked(setup: Setup) -> None:
    status, _ = _admin(
        setup,
        "POST",
        "/api/users",
        {
            "name": "frank",
            "password": "a-long-password-1",
            "role": "developer",
            "email": "frank@corp.example",
        },
    )
    assert status in (200, 201)
    _, status, me = sign_in(
        setup, {"sub": "s-frank", "email": "frank@corp.example", "preferred_username": "fj"}
    )
    assert status == 200, me
    assert (me["name"], me["role"]) == ("frank", "developer")


def test_a_local_account_is_never_taken_over_by_name(setup: Setup) -> None:
    identity = {"sub": "s-evil", "email": "admin@evil.example", "preferred_username": "admin"}
    _, status, me = sign_in(setup, identity)
    assert status == 200, me
    assert (me["name"], me["role"]) == ("admin-2", "viewer")
    # An unverified e-mail links nothing either: the subject id stands in for it.
    status, _ = _admin(
        setup,
        "POST",
        "/api/users",
        {
            "name": "grace",
            "password": "a-long-password-1",
            "role": "developer",
            "email": "grace@corp.example",
        },
    )
    assert status in (200, 201)
    identity = {"sub": "s-unverified", "email": "grace@corp.example", "email_verified": False}
    _, status, me = sign_in(setup, {**identity, "preferred_username": "grace"})
    assert status == 200, me
    assert me["name"] == "grace-2" and me["email"] == "s-unverified@generic.oauth.invalid"


def test_a_forged_or_unstarted_callback_is_refused(setup: Setup) -> None:
    browser = Browser()
    status, page = browser.open(f"{setup.base}/oauth/callback?code=abc&state=forged")
    assert status == 400 and "not started here" in page
    # Started here, but the state in the answer is not the one sent to the provider.
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(browser.jar), _NoRedirect()
    )
    try:
        opener.open(f"{setup.base}/oauth/login?next=/", timeout=30)
    except urllib.error.HTTPError as error:
        assert error.code == 302
        assert error.headers["Location"].startswith(f"{setup.fake.base}/authorize?")
    status, page = browser.open(f"{setup.base}/oauth/callback?code=abc&state=forged")
    assert status == 400 and "does not match" in page
    assert browser.cookie("gristmill_session") is None


def test_a_refusal_at_the_provider_is_explained(setup: Setup) -> None:
    setup.fake.deny = True
    try:
        browser, status, page = sign_in(setup, {"sub": "s-no"})
    finally:
        setup.fake.deny = False
    assert status == 400
    assert "Acme SSO did not sign you in: the user said no" in page
    assert browser.cookie("gristmill_session") is None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_settings_to_provider() -> None:
    def settings(provider: str | None, extra: dict[str, Any] | None = None, key: str = "id") -> Any:
        return SimpleNamespace(
            oauth_provider=provider, oauth_key=key, oauth_secret="s", oauth_extra=extra or {}
        )

    assert provider_from_settings(settings(None)) is None
    github = provider_from_settings(settings("github"))
    assert github is not None and github.label == "GitHub"
    assert github.token_url == "https://github.com/login/oauth/access_token"
    azure = provider_from_settings(settings("azure", {"tenant": "contoso"}))
    assert azure is not None and azure.issuer == "https://login.microsoftonline.com/contoso/v2.0"
    # Panel's spelling of the generic endpoints works too.
    generic = provider_from_settings(
        settings(
            "generic",
            {"AUTHORIZE_URL": "https://a", "TOKEN_URL": "https://t", "USER_URL": "https://u"},
        )
    )
    assert generic is not None and generic.userinfo_url == "https://u"
    with pytest.raises(OAuthError, match="needs GRISTMILL_OAUTH_EXTRA with an 'issuer'"):
        provider_from_settings(settings("generic"))
    with pytest.raises(OAuthError, match="GRISTMILL_OAUTH_KEY"):
        provider_from_settings(settings("google", key=""))


def test_pkce_and_user_names() -> None:
    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert user_name_for({"preferred_username": "Ana.Lopez@corp"}) == "ana.lopez"
    assert user_name_for({"login": "Octo Cat"}) == "octo-cat"
    assert user_name_for({"email": "-x@y.z"}) == "x"
    assert user_name_for({"sub": "12345"}) == "12345"
    assert user_name_for({}) == "user"
