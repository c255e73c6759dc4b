"""Per-session state of a page: who is signed in, and the permission checks the API uses.

Built once per Bokeh session from `pn.state.curdoc` (the signed token payload carries the
user's name, see `studio.pages.signin`) and passed to the page's parts; never global.
The user's role and groups are read afresh for every check, so a role change or a
disabled account applies to open pages at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import panel as pn

from studio.pages.signin import USER_KEY

if TYPE_CHECKING:
    from studio.auth.permissions import Action


class NotSignedIn(PermissionError):
    """The page session has no signed-in user (the websocket outlived the sign-in)."""


@dataclass(frozen=True)
class PageContext:
    """What every part of a page needs: the services and the signed-in user's name."""

    services: Any
    user: str

    @property
    def workspace(self) -> Any:  # studio.workspace.Workspace, or None before it exists
        return getattr(self.services, "workspace", None)

    def actor(self) -> Any:
        """The user as `studio.auth.permissions.Actor` (role and groups read now)."""
        workspace = self.workspace
        if workspace is None:
            raise NotSignedIn("the workspace is not available; sign in again")
        user = workspace.get_user(self.user)
        if user is None or user.disabled:
            raise NotSignedIn(f"user {self.user!r} is disabled or no longer exists")
        return workspace.actor(self.user)

    def role(self) -> str:
        try:
            return str(self.actor().role)
        except NotSignedIn:
            return "viewer"

    def can(self, action: Action, path: str | None) -> bool:
        """The same rule the API applies (`studio.auth.permissions.can`)."""
        from studio.auth.permissions import can

        workspace = self.workspace
        try:
            return bool(
                workspace is not None and can(self.actor(), action, path, workspace.folders())
            )
        except NotSignedIn:
            return False

    def require(self, action: Action, path: str | None) -> None:
        """Raise `Forbidden` (a PermissionError naming actor, action and path) unless allowed."""
        from studio.auth.permissions import require

        workspace = self.workspace
        if workspace is None:
            raise NotSignedIn("the workspace is not available")
        require(self.actor(), action, path, workspace.folders())

    def audit(self, action: str, target: str = "", **detail: Any) -> None:
        if self.workspace is not None:
            self.workspace.audit(self.user, action, target, **detail)


def current(services: Any) -> PageContext:
    """The context of the session being built (call from a page function)."""
    payload: dict[str, Any] = {}
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        payload = dict(getattr(doc.session_context, "token_payload", None) or {})
    user = payload.get(USER_KEY)
    if not user:
        raise NotSignedIn("this page needs a signed-in user")
    return PageContext(services=services, user=str(user))


def query_arg(name: str, default: str = "") -> str:
    """A query-string argument of the page's URL (`/script?path=u/alice/x`)."""
    values = pn.state.session_args.get(name) if pn.state.session_args else None
    if not values:
        return default
    raw = values[0]
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
