"""Sign-in for the pages: the `/login` form, `/logout`, and how a request becomes a user.

The session cookie (`gristmill_session`, HttpOnly, SameSite=Lax) holds a plaintext session
id that only the workspace can resolve (it keeps its hash). Bokeh copies request cookies
into the session token it embeds in the page, where scripts could read them, so the
server excludes our cookies from that token; instead `UserHandler` resolves the cookie on
the server and puts only the user *name* into the (signed) token payload, where
`studio.pages.session` reads it back.
"""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import urlencode

import tornado.web
from bokeh.application.handlers.handler import Handler
from bokeh.document import Document
from bokeh.server.auth_provider import AuthProvider

from studio.pages.oauth import OAuthError, provider_from_settings

SESSION_COOKIE = "gristmill_session"
USER_KEY = "gristmill_user"  # key of the signed-in user's name in the Bokeh token payload


def resolve_user(services: Any, request: Any) -> Any:
    """The workspace user the request's session cookie belongs to, or None."""
    workspace = getattr(services, "workspace", None)
    if workspace is None:
        return None
    morsel = request.cookies.get(SESSION_COOKIE)
    if morsel is None:
        return None
    value = morsel if isinstance(morsel, str) else morsel.value
    if not value:
        return None
    return workspace.resolve_session(value, time.time())


class PageAuth(AuthProvider):
    """Bokeh's hook: page and websocket requests without a valid session go to /login."""

    def __init__(self, services: Any) -> None:
        self._services = services
        super().__init__()

    @property
    def get_user(self) -> Any:
        def get_user(handler: tornado.web.RequestHandler) -> str | None:
            user = resolve_user(self._services, handler.request)
            return user.name if user is not None else None

        return get_user

    @property
    def login_url(self) -> str:
        return "/login"


class UserHandler(Handler):
    """Adds the signed-in user's name to each page session's (signed) token payload."""

    def __init__(self, services: Any) -> None:
        super().__init__()
        self._services = services

    def modify_document(self, doc: Document) -> None:
        pass  # the page functions build the document; this handler only reads the request

    def process_request(self, request: Any) -> dict[str, Any]:
        user = resolve_user(self._services, request)
        return {USER_KEY: user.name if user is not None else None}


def _safe_next(target: str | None) -> str:
    """Only same-site paths: `next=//evil.example` or `https://...` would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


_STYLE = """
:root { color-scheme: light dark; }
body { font-family: system-ui, sans-serif; margin: 0; min-height: 100vh; display: grid;
       place-items: center; background: Canvas; color: CanvasText; }
main { width: min(22rem, 100% - 2rem); }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
label { display: block; margin: .75rem 0 .25rem; }
input { width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }
button { margin-top: 1rem; width: 100%; padding: .6rem; font-size: 1rem; cursor: pointer; }
.oauth { display: block; box-sizing: border-box; text-align: center; padding: .6rem;
         border: 1px solid currentColor; border-radius: 4px; text-decoration: none;
         color: inherit; margin-bottom: 1rem; }
.or { text-align: center; opacity: .7; margin: 0; }
.error { color: #b00020; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · Gristmill</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
    )


class _Handler(tornado.web.RequestHandler):
    def initialize(self, services: Any) -> None:
        self.services = services

    def _set_session_cookie(self, value: str, *, expires_days: float | None) -> None:
        self.set_cookie(
            SESSION_COOKIE,
            value,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            path="/",
            expires_days=expires_days,
        )


class LoginHandler(_Handler):
    """GET shows the form; POST checks the XSRF token and the password, then sets the cookie."""

    def get(self) -> None:
        self._form()

    def _form(self, error: str = "", name: str = "") -> None:
        workspace = getattr(self.services, "workspace", None)
        message = error or (
            "" if workspace is not None else "The workspace is not available yet; try again soon."
        )
        next_url = _safe_next(self.get_argument("next", None))
        self.set_header("Cache-Control", "no-store")
        self.write(
            _page(
                "Sign in",
                "<h1>Sign in to Gristmill</h1>"
                + (f"<p class='error' role='alert'>{html.escape(message)}</p>" if message else "")
                + self._oauth_link(next_url)
                + "<form method='post' action='/login?"
                + html.escape(urlencode({"next": next_url}))
                + "'>"
                + self.xsrf_form_html()
                + "<label for='name'>User name</label>"
                f"<input id='name' name='name' autocomplete='username' required autofocus value='{html.escape(name)}'>"
                "<label for='password'>Password</label>"
                "<input id='password' name='password' type='password' autocomplete='current-password' required>"
                "<button type='submit'>Sign in</button></form>",
            )
        )

    def _oauth_link(self, next_url: str) -> str:
        """'Sign in with <provider>' when OAuth is configured (`studio.pages.oauth`)."""
        try:
            provider = provider_from_settings(getattr(self.services, "settings", None))
        except OAuthError:
            return ""  # the server refused to start its routes with the same error
        if provider is None:
            return ""
        href = "/oauth/login?" + urlencode({"next": next_url})
        return (
            f"<a class='oauth' href='{html.escape(href)}'>Sign in with {html.escape(provider.label)}</a>"
            "<p class='or'>or with a password</p>"
        )

    def post(self) -> None:
        self.check_xsrf_cookie()  # tornado compares the form field with the _xsrf cookie
        workspace: Any = getattr(self.services, "workspace", None)
        name = self.get_body_argument("name", "").strip()
        password = self.get_body_argument("password", "")
        user = workspace.authenticate(name, password) if workspace is not None and name else None
        if user is None:
            if workspace is not None:
                workspace.audit(name or "?", "login.failed", "", ip=self.request.remote_ip)
            self.set_status(401)
            self._form("Wrong user name or password.", name)
            return
        session = workspace.create_session(user.name)
        workspace.audit(user.name, "login", "", ip=self.request.remote_ip)
        self._set_session_cookie(session, expires_days=7)
        self.redirect(_safe_next(self.get_argument("next", None)))


class LogoutHandler(_Handler):
    """GET asks to confirm (a plain link must not sign anyone out: CSRF); POST ends the session."""

    def get(self) -> None:
        self.write(
            _page(
                "Sign out",
                "<h1>Sign out of Gristmill?</h1><form method='post' action='/logout'>"
                + self.xsrf_form_html()
                + "<button type='submit'>Sign out</button></form><p><a href='/'>Back</a></p>",
            )
        )

    def post(self) -> None:
        self.check_xsrf_cookie()
        workspace = getattr(self.services, "workspace", None)
        value = self.get_cookie(SESSION_COOKIE)
        if workspace is not None and value:
            user = workspace.resolve_session(value, time.time())
            workspace.end_session(value)
            if user is not None:
                workspace.audit(user.name, "logout", "")
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.redirect("/login")


def signin_routes(
    services: Any,
) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    context = {"services": services}
    return [(r"/login", LoginHandler, context), (r"/logout", LogoutHandler, context)]
