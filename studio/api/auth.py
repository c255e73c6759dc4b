"""Signing in and out with a password (session cookie), and who am I.

The session cookie is HttpOnly and SameSite=Lax (Secure over https); an `_xsrf` cookie
readable by the pages goes with it, and every cookie-authenticated unsafe request must
echo it in `X-XSRF-Token` (checked in `ApiHandler.prepare`).
"""

from __future__ import annotations

import secrets
from typing import Any

from studio.api.base import SESSION_COOKIE, XSRF_COOKIE, ApiError, ApiHandler

SESSION_TTL_S = 7 * 86400


def actor_json(handler: ApiHandler) -> dict[str, Any]:
    actor = handler.signed_in()
    user = handler.workspace.get_user(actor.name)
    return {
        "name": actor.name,
        "role": actor.role,
        "groups": list(actor.groups),
        "scopes": list(actor.scopes) if actor.scopes is not None else None,
        "email": user.email if user else "",
        "via": handler.via,
    }


class LoginHandler(ApiHandler):
    """`POST /api/auth/login` `{"name", "password"}` -> the user, and the session cookie."""

    public = True

    async def post(self) -> None:
        body = self.body_object()
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "field 'name' (the user name) is required", field="name")
        if not isinstance(password, str) or not password:
            raise ApiError(400, "field 'password' is required", field="password")
        user = self.workspace.authenticate(name, password)
        if user is None:
            self.workspace.audit(name, "auth.login_failed", name, ip=self.request.remote_ip)
            raise ApiError(401, "wrong user name or password, or the account is disabled")
        session = self.workspace.create_session(user.name, ttl_s=SESSION_TTL_S)
        secure = self.request.protocol == "https"
        self.set_cookie(
            SESSION_COOKIE,
            session,
            httponly=True,
            samesite="Lax",
            secure=secure,
            path="/",
            expires_days=SESSION_TTL_S / 86400,
        )
        if not self.get_cookie(XSRF_COOKIE):
            # Readable by the pages on purpose: they echo it in X-XSRF-Token.
            self.set_cookie(
                XSRF_COOKIE, secrets.token_urlsafe(32), samesite="Lax", secure=secure, path="/"
            )
        self.workspace.audit(user.name, "auth.login", user.name, ip=self.request.remote_ip)
        self.actor = self.workspace.actor(user.name)
        self.via = "session"
        self.reply(actor_json(self))


class LogoutHandler(ApiHandler):
    """`POST /api/auth/logout`: ends the session of the cookie (a no-op for tokens)."""

    async def post(self) -> None:
        session = self.get_cookie(SESSION_COOKIE)
        if session and self.via == "session":
            self.workspace.end_session(session)
            self.clear_cookie(SESSION_COOKIE, path="/")
            self.audit("auth.logout", self.signed_in().name)
        self.reply({"signed_out": self.via == "session"})


class MeHandler(ApiHandler):
    """`GET /api/auth/me`: the caller's name, role, groups and token scopes."""

    async def get(self) -> None:
        self.reply(actor_json(self))
