"""Sign-in through an OAuth 2 / OpenID Connect provider: authorization code with PKCE.

    /oauth/login?next=/runs   -> the provider's sign-in page
    /oauth/callback?code&state -> the workspace user, our session cookie, then `next`

Configured by `GRISTMILL_OAUTH_PROVIDER` (generic, github, gitlab, google, azure),
`GRISTMILL_OAUTH_KEY` / `_SECRET` (the client), `GRISTMILL_OAUTH_EXTRA` (JSON: endpoints
or an `issuer` for generic OIDC, `tenant` for azure, `url` for a self-hosted gitlab,
`scope`, `redirect_uri`, `label`) and `GRISTMILL_OAUTH_DEFAULT_ROLE`.

Why our own handlers rather than Panel's `panel.auth` providers: those read the client
and endpoints from Panel's process-wide `config`, keep the provider's tokens in cookies
of their own and put the user into Bokeh's auth flow; Gristmill needs the opposite — no
global configuration, no provider token kept anywhere, and the same `gristmill_session`
cookie as a password sign-in, so that permissions, sign-out and the API behave exactly
as for local users. The provider presets follow Panel's (same endpoints).

The provider's answer is mapped to a workspace user: the user whose e-mail is the
provider's (verified) e-mail, else a new user named after it, with the default role and
an unusable random password (they sign in through the provider only). A local account is
never taken over by name: a user named like the newcomer but with another e-mail makes
the newcomer `name-2`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("gristmill.oauth")

STATE_COOKIE = "gristmill_oauth"
STATE_TTL_S = 600  # a sign-in at the provider must finish within ten minutes
HTTP_TIMEOUT_S = 15.0
SESSION_DAYS = 7

PROVIDERS = ("generic", "github", "gitlab", "google", "azure")
_LABELS = {
    "generic": "single sign-on",
    "github": "GitHub",
    "gitlab": "GitLab",
    "google": "Google",
    "azure": "Microsoft",
}


class OAuthError(Exception):
    """The sign-in cannot go on; the message is for the person signing in (or the admin)."""


@dataclass(frozen=True)
class OAuthProvider:
    """Where to send the user and how to read who they are. `issuer` set: endpoints not
    given are read from its OpenID discovery document at sign-in."""

    name: str
    label: str
    client_id: str
    client_secret: str
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    issuer: str = ""
    scope: str = "openid email profile"
    redirect_uri: str = ""  # empty: this server's /oauth/callback as the browser reached it
    extra_authorize: tuple[tuple[str, str], ...] = ()


def _get(extra: dict[str, Any], *names: str) -> str:
    """The first of `names` in `extra`, any case (Panel spells them AUTHORIZE_URL, ...)."""
    lowered = {str(k).lower(): v for k, v in extra.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value:
            return str(value)
    return ""


def provider_from_settings(settings: Any) -> OAuthProvider | None:
    """The configured provider, None when OAuth is off; OAuthError naming the setting at
    fault when it is configured but incomplete."""
    name = getattr(settings, "oauth_provider", None)
    if not name:
        return None
    if name not in PROVIDERS:
        raise OAuthError(
            f"GRISTMILL_OAUTH_PROVIDER is {name!r}; expected one of {', '.join(PROVIDERS)}"
        )
    key, secret = settings.oauth_key or "", settings.oauth_secret or ""
    if not key:
        raise OAuthError(f"GRISTMILL_OAUTH_KEY (the client id) is required for {name} sign-in")
    extra: dict[str, Any] = dict(settings.oauth_extra or {})
    params = extra.get("authorize_params") or {}
    if not isinstance(params, dict):
        raise OAuthError(
            "GRISTMILL_OAUTH_EXTRA 'authorize_params' must be a JSON object of extra "
            f"query parameters for the provider's sign-in page, got {params!r}"
        )
    common = {
        "name": name,
        "extra_authorize": tuple((str(k), str(v)) for k, v in params.items()),
        "label": _get(extra, "label") or _LABELS[name],
        "client_id": key,
        "client_secret": secret,
        "redirect_uri": _get(extra, "redirect_uri"),
    }
    scope = _get(extra, "scope")
    if name == "github":
        return OAuthProvider(
            **common,
            authorize_url="https://github.com/login/oauth/authorize",
            token_url="https://github.com/login/oauth/access_token",
            userinfo_url="https://api.github.com/user",
            scope=scope or "read:user user:email",
        )
    if name == "gitlab":
        host = _get(extra, "url") or "gitlab.com"
        return OAuthProvider(
            **common, issuer=f"https://{host}", scope=scope or "openid email profile"
        )
    if name == "google":
        return OAuthProvider(
            **common, issuer="https://accounts.google.com", scope=scope or "openid email profile"
        )
    if name == "azure":
        tenant = _get(extra, "tenant") or "common"
        return OAuthProvider(
            **common,
            issuer=f"https://login.microsoftonline.com/{tenant}/v2.0",
            scope=scope or "openid email profile",
        )
    provider = OAuthProvider(
        **common,
        authorize_url=_get(extra, "authorize_url"),
        token_url=_get(extra, "token_url", "access_token_url"),
        userinfo_url=_get(extra, "userinfo_url", "user_url"),
        issuer=_get(extra, "issuer").rstrip("/"),
        scope=scope or "openid email profile",
    )
    if not provider.issuer and not (provider.authorize_url and provider.token_url):
        raise OAuthError(
            "generic OAuth needs GRISTMILL_OAUTH_EXTRA with an 'issuer' (OpenID discovery) "
            "or 'authorize_url', 'token_url' and 'userinfo_url'; got keys "
            f"{sorted(extra) or 'none'}"
        )
    return provider


# ----------------------------------------------------------------- pure parts


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) as RFC 7636 defines them."""
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def user_name_for(identity: dict[str, Any]) -> str:
    """A workspace user name (`[a-z0-9_][a-z0-9_.-]*`) from what the provider said."""
    raw = str(
        identity.get("preferred_username")
        or identity.get("login")
        or (str(identity.get("email") or "").split("@", 1)[0])
        or identity.get("sub")
        or identity.get("id")
        or "user"
    )
    raw = raw.split("@", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_.-]+", "-", raw).strip("-.") or "user"
    if not re.match(r"[a-z0-9_]", name):
        name = f"u{name}"
    return name[:60]


def identity_email(provider: OAuthProvider, identity: dict[str, Any]) -> str:
    """The e-mail that links the identity to a workspace user.

    A provider e-mail counts only when the provider does not say it is unverified; with
    none, a stable address made from the provider's subject id stands in, so the same
    person finds the same user next time (it is never a deliverable address).
    """
    email = str(identity.get("email") or "")
    if email and "@" in email and identity.get("email_verified", True) is not False:
        return email.lower()
    subject = str(identity.get("sub") or identity.get("id") or "")
    if not subject:
        raise OAuthError(
            f"{provider.label} said neither a verified e-mail nor a subject id for this account"
        )
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "-", subject)
    return f"{safe}@{provider.name}.oauth.invalid"


# ----------------------------------------------------------------- handlers


class _OAuthHandler(tornado.web.RequestHandler):
    def initialize(self, services: Any, provider: OAuthProvider) -> None:
        self.services = services
        self.provider = provider

    def redirect_uri(self) -> str:
        if self.provider.redirect_uri:
            return self.provider.redirect_uri
        base = (getattr(self.services.settings, "base_url", "") or "").rstrip("/")
        if not base:
            base = f"{self.request.protocol}://{self.request.host}"
        return f"{base}/oauth/callback"

    async def endpoints(self) -> tuple[str, str, str]:
        """(authorize, token, userinfo) URLs, from the discovery document when needed."""
        p = self.provider
        if p.authorize_url and p.token_url:
            return p.authorize_url, p.token_url, p.userinfo_url
        url = f"{p.issuer}/.well-known/openid-configuration"
        doc = await _fetch_json(HTTPRequest(url, headers={"Accept": "application/json"}), url)
        try:
            return (
                p.authorize_url or str(doc["authorization_endpoint"]),
                p.token_url or str(doc["token_endpoint"]),
                p.userinfo_url or str(doc.get("userinfo_endpoint") or ""),
            )
        except KeyError as exc:
            raise OAuthError(f"the discovery document at {url} has no {exc.args[0]!r}") from None

    def fail(self, message: str, status: int = 400) -> None:
        from studio.pages.signin import _page  # the login page's look

        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(
            _page(
                "Sign-in failed",
                "<h1>Sign-in failed</h1>"
                f"<p class='error' role='alert'>{html.escape(message)}</p>"
                "<p><a href='/login'>Back to sign in</a></p>",
            )
        )


class OAuthLoginHandler(_OAuthHandler):
    """`GET /oauth/login?next=...`: to the provider, with state and a PKCE challenge."""

    async def get(self) -> None:
        from studio.pages.signin import _safe_next

        try:
            authorize_url, _, _ = await self.endpoints()
        except OAuthError as exc:
            log.warning("OAuth sign-in unavailable: %s", exc)
            self.fail(f"{self.provider.label} sign-in is unavailable right now: {exc}", 502)
            return
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        next_url = _safe_next(self.get_argument("next", None))
        payload = {"state": state, "verifier": verifier, "next": next_url, "at": time.time()}
        # Signed with the server's cookie secret and HttpOnly: nobody can plant a state
        # (login CSRF) nor read the verifier. SameSite=Lax still comes back on the
        # provider's top-level redirect to the callback.
        self.set_signed_cookie(
            STATE_COOKIE,
            json.dumps(payload),
            expires_days=STATE_TTL_S / 86400,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            path="/oauth/",
        )
        query = {
            "response_type": "code",
            "client_id": self.provider.client_id,
            "redirect_uri": self.redirect_uri(),
            "scope": self.provider.scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **dict(self.provider.extra_authorize),
        }
        separator = "&" if urlsplit(authorize_url).query else "?"
        self.redirect(f"{authorize_url}{separator}{urlencode(query)}")


class OAuthCallbackHandler(_OAuthHandler):
    """`GET /oauth/callback?code=...&state=...`: the code for a token, the token for who
    the user is, that for a workspace user and our session cookie."""

    async def get(self) -> None:
        from studio.pages.signin import SESSION_COOKIE

        workspace = getattr(self.services, "workspace", None)
        try:
            pending = self._pending()
            if workspace is None:
                raise OAuthError("the workspace is not available yet; try again soon")
            identity = await self._identity(pending["verifier"])
            user = self._user(workspace, identity)
        except OAuthError as exc:
            self.fail(str(exc))
            return
        self.clear_cookie(STATE_COOKIE, path="/oauth/")
        session = workspace.create_session(user.name)
        workspace.audit(
            user.name, "login", "", ip=self.request.remote_ip, via=f"oauth:{self.provider.name}"
        )
        self.set_cookie(
            SESSION_COOKIE,
            session,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            path="/",
            expires_days=SESSION_DAYS,
        )
        # The pages echo `_xsrf` in API calls (completions, ...); a password sign-in got
        # it from the login form, this one gets it here.
        if not self.get_cookie("_xsrf"):
            self.set_cookie(
                "_xsrf",
                secrets.token_urlsafe(32),
                samesite="Lax",
                secure=self.request.protocol == "https",
                path="/",
            )
        self.redirect(pending["next"])

    def _pending(self) -> dict[str, Any]:
        error = self.get_argument("error", None)
        if error:
            detail = self.get_argument("error_description", "") or error
            raise OAuthError(f"{self.provider.label} did not sign you in: {detail}")
        raw = self.get_signed_cookie(STATE_COOKIE, max_age_days=STATE_TTL_S / 86400)
        if raw is None:
            raise OAuthError(
                "this sign-in was not started here or took too long; start again from the sign-in page"
            )
        pending: dict[str, Any] = json.loads(raw)
        given = self.get_argument("state", "")
        if not given or not hmac.compare_digest(given.encode(), str(pending["state"]).encode()):
            raise OAuthError("the sign-in answer does not match the sign-in that was started here")
        if time.time() - float(pending["at"]) > STATE_TTL_S:
            raise OAuthError("the sign-in took too long; start again from the sign-in page")
        if not self.get_argument("code", ""):
            raise OAuthError(f"{self.provider.label} sent no authorization code")
        return pending

    async def _identity(self, verifier: str) -> dict[str, Any]:
        _, token_url, userinfo_url = await self.endpoints()
        form = {
            "grant_type": "authorization_code",
            "code": self.get_argument("code"),
            "redirect_uri": self.redirect_uri(),
            "client_id": self.provider.client_id,
            "code_verifier": verifier,
        }
        if self.provider.client_secret:
            form["client_secret"] = self.provider.client_secret
        tokens = await _fetch_json(
            HTTPRequest(
                token_url,
                method="POST",
                body=urlencode(form),
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            ),
            "the token endpoint",
        )
        access = tokens.get("access_token")
        if not access:
            detail = tokens.get("error_description") or tokens.get("error") or "no access token"
            raise OAuthError(f"{self.provider.label} refused the sign-in: {detail}")
        if not userinfo_url:
            raise OAuthError(f"{self.provider.label} has no user-info endpoint configured")
        identity = await _fetch_json(
            HTTPRequest(
                userinfo_url,
                headers={"Authorization": f"Bearer {access}", "Accept": "application/json"},
            ),
            "the user-info endpoint",
        )
        if self.provider.name == "github" and not identity.get("email"):
            identity["email"] = await self._github_email(str(access))
        return identity

    async def _github_email(self, access: str) -> str:
        # A private GitHub e-mail is only in /user/emails (scope user:email).
        try:
            emails = await _fetch_json(
                HTTPRequest(
                    "https://api.github.com/user/emails",
                    headers={"Authorization": f"Bearer {access}", "Accept": "application/json"},
                ),
                "GitHub's e-mail list",
            )
        except OAuthError:
            return ""
        for entry in emails if isinstance(emails, list) else []:
            if entry.get("primary") and entry.get("verified"):
                return str(entry.get("email") or "")
        return ""

    def _user(self, workspace: Any, identity: dict[str, Any]) -> Any:
        email = identity_email(self.provider, identity)
        for user in workspace.list_users():
            if user.email.lower() == email:
                if user.disabled:
                    raise OAuthError(f"the account {user.name!r} is disabled; ask an admin")
                return user
        base = user_name_for(identity)
        name = base
        n = 1
        while workspace.get_user(name) is not None:
            n += 1
            name = f"{base}-{n}"
        role = getattr(self.services.settings, "oauth_default_role", "viewer")
        # Nobody knows this password: the user signs in through the provider only.
        user = workspace.create_user(
            name, password=secrets.token_urlsafe(32), role=role, email=email
        )
        workspace.audit(name, "user.created", name, role=role, via=f"oauth:{self.provider.name}")
        return user


async def _fetch_json(request: HTTPRequest, what: str) -> Any:
    request.request_timeout = HTTP_TIMEOUT_S
    request.connect_timeout = HTTP_TIMEOUT_S
    try:
        response = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as exc:
        body = exc.response.body.decode(errors="replace")[:300] if exc.response else ""
        log.warning("OAuth call to %s failed: %s %s", what, exc.code, body)
        detail = ""
        try:
            parsed = json.loads(body)
            detail = str(parsed.get("error_description") or parsed.get("error") or "")
        except (ValueError, AttributeError):
            pass
        raise OAuthError(
            f"the provider's {what} answered HTTP {exc.code}" + (f": {detail}" if detail else "")
        ) from None
    except OSError as exc:
        raise OAuthError(f"cannot reach the provider's {what}: {exc}") from None
    try:
        return json.loads(response.body or b"null")
    except ValueError:
        raise OAuthError(f"the provider's {what} did not answer JSON") from None


def oauth_routes(
    services: Any,
) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The two routes when OAuth is configured, none otherwise."""
    provider = provider_from_settings(services.settings)
    if provider is None:
        return []
    context = {"services": services, "provider": provider}
    return [
        (r"/oauth/login", OAuthLoginHandler, context),
        (r"/oauth/callback", OAuthCallbackHandler, context),
    ]
