"""Home: a search box over the workspace's scripts and flows, each with its last run status.

The search runs on the server as the user types: the item list is filtered by path and
summary (case-insensitive, every word must match), then only the matching items' last
runs are fetched. Keystrokes are debounced, and an answer that arrives after a newer
query started is dropped, so a slow lookup never overwrites a newer list.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any
from urllib.parse import quote

import panel as pn

from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page, status_badge

SEARCH_DEBOUNCE_S = 0.15


def matches(item: Any, query: str) -> bool:
    """Whether every word of `query` is in the item's path or summary (any case)."""
    text = f"{item.path} {item.summary}".lower()
    return all(word in text for word in query.lower().split())


async def _rows(ctx: PageContext, query: str) -> list[dict[str, Any]]:
    workspace = ctx.workspace
    store = ctx.services.store
    if workspace is None:
        return []
    rows = []
    for item in workspace.list_items():
        if not matches(item, query) or not ctx.can("read", item.path):
            continue
        last = None
        if store is not None:
            runs = await store.list_runs(path=item.path, limit=1)
            last = runs[0] if runs else None
        rows.append({"item": item, "last": last})
    return rows


def _table(rows: list[dict[str, Any]], query: str = "") -> str:
    if not rows and query.strip():
        return (
            f"<p class='gm-muted' data-testid='no-match'>No script or flow matches "
            f"<b>{html.escape(query.strip())}</b>.</p>"
        )
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
        name="Search scripts and flows",
        placeholder="Search by path or summary",
        sizing_mode="stretch_width",
    )
    listing = html_pane("<p class='gm-muted'>Loading…</p>")
    latest = {"query": 0}

    async def refresh(*_: Any) -> None:
        query = search.value_input or ""
        latest["query"] += 1
        mine = latest["query"]
        rows = await _rows(ctx, query)
        if mine == latest["query"]:  # a newer keystroke has its own answer coming
            listing.object = _table(rows, query)

    async def typed(*_: Any) -> None:
        latest["query"] += 1
        mine = latest["query"]
        await asyncio.sleep(SEARCH_DEBOUNCE_S)
        if mine == latest["query"]:
            await refresh()

    search.param.watch(typed, "value_input")
    pn.state.onload(refresh)
    parts: list[Any] = [search, listing]
    if ctx.workspace is None:
        parts.insert(0, notice("The workspace is not available, so there is nothing to list."))
    return page(ctx, "Home", *parts, current="/")
