"""The audit log (admins only): newest first, a page at a time straight from the store
(`Workspace.audit_log(limit, offset, actor, action)`), filtered by actor and action.

Same rule as `GET /api/audit`: the admin role, checked when the page is built and again
for every page of entries fetched.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any

import panel as pn

from studio.pages.parts import clicked
from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page

PAGE_SIZE = 25
ADMINS_ONLY = "The audit log is for admins only."


def audit_table(entries: list[Any]) -> str:
    if not entries:
        return "<p class='gm-muted' data-testid='no-audit'>No audit entries match.</p>"
    rows = "".join(
        f"<tr data-audit='{e.id}' data-action='{html.escape(e.action)}'>"
        f"<td class='gm-muted'>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.at))}</td>"
        f"<td>{html.escape(e.actor)}</td><td><code>{html.escape(e.action)}</code></td>"
        f"<td>{html.escape(e.target)}</td>"
        f"<td class='gm-muted' style='font-size:.85em;word-break:break-word'>"
        f"{html.escape(json.dumps(e.detail, ensure_ascii=False)) if e.detail else ''}</td></tr>"
        for e in entries
    )
    return (
        "<div style='overflow-x:auto'><table class='gm-audit' style='width:100%'><thead><tr>"
        "<th align='left'>When</th><th align='left'>Actor</th><th align='left'>Action</th>"
        "<th align='left'>Target</th><th align='left'>Detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


class AuditView:
    """One admin session's audit log: filters, the table, newer / older."""

    def __init__(self, ctx: PageContext, page_size: int = PAGE_SIZE) -> None:
        self.ctx = ctx
        self.page_size = page_size
        self.offset = 0
        self.actor = pn.widgets.TextInput(name="Actor", placeholder="user name", width=180)
        self.action = pn.widgets.TextInput(
            name="Action", placeholder="e.g. secret.reveal", width=200
        )
        self.reload = pn.widgets.Button(name="Refresh", width=100)
        self.newer = pn.widgets.Button(name="‹ Newer", width=100)
        self.older = pn.widgets.Button(name="Older ›", width=100)
        self.where = html_pane()
        self.table = html_pane()
        for widget in (self.actor, self.action):
            widget.param.watch(lambda *_: self.first_page(), "value")
        self.reload.on_click(clicked(self.refresh))
        self.newer.on_click(lambda _: self.turn(-1))
        self.older.on_click(lambda _: self.turn(1))
        self.refresh()

    def first_page(self) -> None:
        self.offset = 0
        self.refresh()

    def turn(self, pages: int) -> None:
        self.offset = max(0, self.offset + pages * self.page_size)
        self.refresh()

    def refresh(self) -> list[Any]:
        try:
            self.ctx.require("admin", None)
        except Exception as exc:
            self.table.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return []
        # One more than a page: whether an older page exists, without counting them all.
        entries = self.ctx.workspace.audit_log(
            limit=self.page_size + 1,
            offset=self.offset,
            actor=(self.actor.value or "").strip() or None,
            action=(self.action.value or "").strip() or None,
        )
        more = len(entries) > self.page_size
        shown = entries[: self.page_size]
        self.table.object = audit_table(shown)
        first = self.offset + 1 if shown else 0
        self.where.object = (
            f"<p class='gm-muted' data-testid='audit-range'>{first}–{self.offset + len(shown)}</p>"
        )
        self.newer.disabled = self.offset == 0
        self.older.disabled = not more
        return shown

    def view(self) -> list[Any]:
        return [
            pn.FlexBox(self.actor, self.action, self.reload),
            self.table,
            pn.Row(self.newer, self.older, self.where),
        ]


def audit_page(ctx: PageContext) -> pn.template.BaseTemplate:
    if ctx.workspace is None:
        return page(ctx, "Audit log", notice("The workspace is not available."), current="/audit")
    if not ctx.can("admin", None):
        return page(ctx, "Audit log", notice(ADMINS_ONLY), current="/audit")
    return page(ctx, "Audit log", *AuditView(ctx).view(), current="/audit")
