"""The studio's pages: one module per page, a shared template, per-session context.

`page_functions(services)` maps URL paths to functions that build a page for the
session being created; the server hands them to Panel.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import panel as pn

from studio.pages.session import NotSignedIn, PageContext, current

log = logging.getLogger("gristmill.pages")
PageBuilder = Callable[[PageContext], Any]


def _builders() -> dict[str, PageBuilder]:
    # Imported here so that `import studio.pages` stays cheap for the login handlers.
    from studio.pages.audit import audit_page
    from studio.pages.flow import flow_page
    from studio.pages.home import home_page
    from studio.pages.resources import resources_page
    from studio.pages.runs import approvals_page, run_page, runs_page
    from studio.pages.schedules import schedules_page
    from studio.pages.script import script_page
    from studio.pages.users import users_page
    from studio.pages.variables import variables_page
    from studio.pages.webhooks import webhooks_page

    builders: dict[str, PageBuilder] = {
        "/": home_page,
        "/script": script_page,
        "/runs": runs_page,
        "/run": run_page,
        "/approvals": approvals_page,
        "/schedules": schedules_page,
        "/flow": flow_page,
        "/webhooks": webhooks_page,
        "/variables": variables_page,
        "/resources": resources_page,
        "/users": users_page,
        "/audit": audit_page,
    }
    return builders


def page_functions(services: Any) -> dict[str, Callable[[], Any]]:
    """URL path -> a zero-argument function Panel calls once per session."""

    def wrap(builder: PageBuilder) -> Callable[[], Any]:
        def build() -> Any:
            try:
                ctx = current(services)
            except NotSignedIn as exc:
                return pn.pane.Markdown(f"**{exc}** — [sign in](/login)")
            try:
                return builder(ctx)
            except Exception:
                # Panel would render the traceback into the page; log it, show an id.
                incident = uuid.uuid4().hex[:8]
                log.exception("page %s failed (incident %s)", builder.__name__, incident)
                return pn.pane.Alert(
                    f"This page could not be built (incident {incident}); the server log has the details.",
                    alert_type="danger",
                )

        build.__name__ = getattr(builder, "__name__", "page")
        return build

    return {path: wrap(builder) for path, builder in _builders().items()}
