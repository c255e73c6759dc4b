"""The one template every page uses: title, navigation sidebar, dark/light toggle, user.

BootstrapTemplate gives the sidebar (collapsing to a menu button at phone width) and the
theme toggle, and everything it loads is served by this server (FastListTemplate would
fetch a Google font, which the CSP blocks). Panes render inside shadow roots, so the
shared CSS goes to each pane as a stylesheet (`html_pane`), not to the document.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import panel as pn

from studio.pages.session import PageContext

APP_TITLE = "Gristmill"
ACCENT = "#3b6e8f"

# (label, href, who sees it: None = everyone, "admin" = admins only)
NAVIGATION: Sequence[tuple[str, str, str | None]] = (
    ("Home", "/", None),
    ("New script", "/script", None),
    ("New flow", "/flow", None),
    ("Runs", "/runs", None),
    ("Approvals", "/approvals", None),
    ("Schedules", "/schedules", None),
    ("Webhooks", "/webhooks", None),
    ("Variables & secrets", "/variables", None),
    ("Resources", "/resources", None),
    ("Users, groups & folders", "/users", "admin"),
    ("Audit log", "/audit", "admin"),
)

_CSS = """
.gm-nav a { display: block; padding: .45rem .6rem; border-radius: 6px; text-decoration: none;
            color: inherit; }
.gm-nav a:hover { background: rgba(127,127,127,.15); }
.gm-nav a[aria-current="page"] { font-weight: 600; background: rgba(59,110,143,.18); }
.gm-user { opacity: .8; font-size: .9rem; padding: 0 .6rem; }
.gm-status { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .85em; }
.gm-status-success { background: #d4edda; color: #155724; }
.gm-status-failure { background: #f8d7da; color: #721c24; }
.gm-status-running, .gm-status-queued { background: #d1ecf1; color: #0c5460; }
.gm-status-suspended { background: #fff3cd; color: #856404; }
.gm-status-cancelled { background: #e2e3e5; color: #383d41; }
.gm-muted { opacity: .7; }
pre.gm-log { max-height: 24rem; overflow: auto; white-space: pre-wrap; word-break: break-word; }
"""


def status_badge(status: str | None) -> str:
    """HTML for a run status pill (escaped)."""
    if not status:
        return "<span class='gm-muted'>never run</span>"
    s = html.escape(status)
    return f"<span class='gm-status gm-status-{s}' data-status='{s}'>{s}</span>"


def navigation(ctx: PageContext, current: str) -> pn.pane.HTML:
    role = ctx.role()
    links = []
    for label, href, only in NAVIGATION:
        if only == "admin" and role != "admin":
            continue
        here = " aria-current='page'" if href == current else ""
        links.append(f"<a href='{href}'{here}>{html.escape(label)}</a>")
    user = (
        f"<p class='gm-user'>{theme_link()}</p>"
        f"<p class='gm-user'>Signed in as <b>{html.escape(ctx.user)}</b> ({html.escape(role)})"
        " · <a href='/logout'>Sign out</a></p>"
    )
    return html_pane(f"<nav class='gm-nav' aria-label='Main'>{''.join(links)}</nav>{user}")


def dark() -> bool:
    """Whether this session shows the dark theme (Panel reads `?theme=dark` itself)."""
    return pn.state.session_args.get("theme", [b""])[0] in (b"dark", "dark")


def theme_link() -> str:
    """A link to the same page in the other theme, keeping the other query arguments."""
    args = {
        k: (v[0].decode() if isinstance(v[0], bytes) else str(v[0]))
        for k, v in (pn.state.session_args or {}).items()
        if k != "theme" and v
    }
    args["theme"] = "default" if dark() else "dark"
    label = "Light theme" if dark() else "Dark theme"
    return f"<a href='?{html.escape(urlencode(args))}' data-testid='theme'>{label}</a>"


def html_pane(text: str = "", **options: Any) -> pn.pane.HTML:
    """An HTML pane that knows the shared CSS (badges, logs, navigation)."""
    options.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(text, stylesheets=[_CSS], **options)


def page(
    ctx: PageContext, title: str, *main: Any, current: str = "", sidebar: Sequence[Any] = ()
) -> pn.template.BaseTemplate:
    """A page with the shared template; `title` shows in the header and the tab."""
    template = pn.template.BootstrapTemplate(
        title=title,
        site=APP_TITLE,
        site_url="/",
        header_background=ACCENT,
        sidebar=[navigation(ctx, current), *sidebar],
        main=[pn.Column(*main, sizing_mode="stretch_width")],
        sidebar_width=250,
        main_max_width="1200px",
    )
    return template


def notice(text: str, kind: str = "warning") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width")
