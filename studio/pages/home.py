"""Home: a search box over the workspace's scripts and flows, each with its last run status."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

import panel as pn

from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page, status_badge


async def _rows(ctx: PageContext, query: str) -> list[dict[str, Any]]:
    workspace = ctx.workspace
    store = ctx.services.store
    if workspace is None:
        return []
    needle = query.strip().lower()
    rows = []
    for item in workspace.list_items():
        if not ctx.can("read", item.path):
            continue
        if needle and needle not in item.path.lower() and needle not in item.summary.lower():
            continue
        last = None
        if store is not None:
            runs = await store.list_runs(path=item.path, limit=1)
            last = runs[0] if runs else None
        rows.append({"item": item, "last": last})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return (
            "<p class='gm-muted'>Nothing here yet. Start with a "
            "<a href='/script'>new script</a> or a <a href='/flow'>new flow</a>.</p>"
        )
    lines = []
    for row in rows:
        item, last = row["item"], row["last"]
        href = f"/{item.kind}?path={quote(item.path, safe='/')}"
        when = ""
        if last is not None:
            when = f" <a class='gm-muted' href='/run?id={quote(last.id)}'>last run</a>"
        lines.append(
            "<tr>"
            f"<td>{html.escape(item.kind)}</td>"
            f"<td><a href='{href}'>{html.escape(item.path)}</a>"
            f"<div class='gm-muted'>{html.escape(item.summary)}</div></td>"
            f"<td>v{item.version}</td>"
            f"<td data-path='{html.escape(item.path)}'>{status_badge(last.status if last else None)}{when}</td>"
            "</tr>"
        )
    return (
        "<div style='overflow-x:auto'><table class='gm-items' style='width:100%;border-collapse:collapse'>"
        "<thead><tr><th align='left'>Kind</th><th align='left'>Path</th><th align='left'>Version</th>"
        "<th align='left'>Last run</th></tr></thead><tbody>"
        + "".join(lines)
        + "</tbody></table></div>"
    )


def home_page(ctx: PageContext) -> pn.template.BaseTemplate:
    search = pn.widgets.TextInput(
        name="Search scripts and flows", placeholder="path or summary", sizing_mode="stretch_width"
    )
    listing = html_pane("<p class='gm-muted'>Loading…</p>")

    async def refresh(*_: Any) -> None:
        listing.object = _table(await _rows(ctx, search.value_input or ""))

    search.param.watch(refresh, "value_input")
    pn.state.onload(refresh)
    parts: list[Any] = [search, listing]
    if ctx.workspace is None:
        parts.insert(0, notice("The workspace is not available, so there is nothing to list."))
    return page(ctx, "Home", *parts, current="/")
