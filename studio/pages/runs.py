"""Runs: the history (server-side paginated, filtered by status, path, trigger and time),
one run's page (args, result, per-step timeline, streaming logs, re-run, cancel), and the
pending approvals with Approve / Reject and the step's form.

The same rules as the API (`studio.api.jobs`): reading a run needs "read" on its path,
re-running "run", cancelling and approving "run" (viewers never approve).
"""

from __future__ import annotations

import html
import json
import time
from typing import Any
from urllib.parse import quote

import panel as pn

from flows.records import FINISHED, RunRecord
from studio.auth.permissions import approval_refusal
from studio.pages.parts import RunMonitor, form_value, run_form
from studio.pages.session import PageContext, query_arg
from studio.pages.template import html_pane, page, status_badge

PAGE_SIZE = 25
STATUSES = ["", "queued", "running", "suspended", "success", "failure", "cancelled"]
TRIGGERS = ["", "ui", "api", "webhook", "schedule", "cli"]
SINCE = {"any time": None, "last hour": 3600, "last day": 86400, "last week": 7 * 86400}


def _visible(ctx: PageContext, run: RunRecord) -> bool:
    """Runs outside the workspace tree (CLI files) are for admins only."""
    if ctx.role() == "admin":
        return True
    return run.path[:2] in ("u/", "f/") and ctx.can("read", run.path)


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


def runs_table(runs: list[RunRecord]) -> str:
    if not runs:
        return "<p class='gm-muted' data-testid='no-runs'>No runs match.</p>"
    rows = "".join(
        f"<tr data-run='{html.escape(r.id)}'><td><a href='/run?id={quote(r.id)}'>{html.escape(r.id[:12])}</a></td>"
        f"<td>{html.escape(r.path)}</td><td>{html.escape(r.kind)}</td>"
        f"<td>{status_badge(r.status)}</td><td>{html.escape(r.trigger)}</td>"
        f"<td>{html.escape(r.actor)}</td><td>{_when(r.created_at)}</td></tr>"
        for r in runs
    )
    return (
        "<div style='overflow-x:auto'><table class='gm-runs' style='width:100%'><thead><tr>"
        "<th align='left'>Run</th><th align='left'>Path</th><th align='left'>Kind</th>"
        "<th align='left'>Status</th><th align='left'>Trigger</th><th align='left'>By</th>"
        f"<th align='left'>Created</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def runs_page(ctx: PageContext) -> pn.template.BaseTemplate:
    store = ctx.services.store
    status = pn.widgets.Select(
        name="Status", options=STATUSES, value=query_arg("status"), width=140
    )
    trigger = pn.widgets.Select(name="Trigger", options=TRIGGERS, width=120)
    path = pn.widgets.TextInput(name="Path", value=query_arg("path"), width=260)
    since = pn.widgets.Select(name="Created", options=list(SINCE), width=130)
    previous = pn.widgets.Button(name="‹ Newer", width=100)
    following = pn.widgets.Button(name="Older ›", width=100)
    where = html_pane()
    table = html_pane("<p class='gm-muted'>Loading…</p>")
    offset = {"value": 0}

    async def refresh(*_: Any) -> None:
        window = SINCE[since.value]
        filters: dict[str, Any] = {
            "status": status.value or None,
            "trigger": trigger.value or None,
            "path": (path.value or "").strip() or None,
            "since": time.time() - window if window else None,
        }
        total = await store.count_runs(**filters)
        runs = await store.list_runs(**filters, limit=PAGE_SIZE, offset=offset["value"])
        shown = [r for r in runs if _visible(ctx, r)]
        table.object = runs_table(shown)
        first = offset["value"] + 1 if total else 0
        where.object = f"<p class='gm-muted' data-testid='runs-count'>{first}–{offset['value'] + len(runs)} of {total}</p>"
        previous.disabled = offset["value"] == 0
        following.disabled = offset["value"] + PAGE_SIZE >= total

    async def filter_changed(*_: Any) -> None:
        offset["value"] = 0
        await refresh()

    async def newer(_: Any) -> None:
        offset["value"] = max(0, offset["value"] - PAGE_SIZE)
        await refresh()

    async def older(_: Any) -> None:
        offset["value"] += PAGE_SIZE
        await refresh()

    for widget in (status, trigger, path, since):
        widget.param.watch(filter_changed, "value")
    previous.on_click(newer)
    following.on_click(older)
    reload = pn.widgets.Button(name="Refresh", width=100)
    reload.on_click(refresh)
    pn.state.onload(refresh)
    return page(
        ctx,
        "Runs",
        pn.FlexBox(status, trigger, path, since, reload),
        table,
        pn.Row(previous, following, where),
        current="/runs",
    )


def run_page(ctx: PageContext) -> pn.template.BaseTemplate:
    run_id = query_arg("id")
    services = ctx.services
    monitor = RunMonitor(services)
    feedback = html_pane()
    args_view = pn.pane.JSON({}, depth=3, sizing_mode="stretch_width")
    rerun = pn.widgets.Button(name="Re-run", button_type="primary", width=120, disabled=True)
    cancel = pn.widgets.Button(name="Cancel", button_type="danger", width=120, disabled=True)
    holder: dict[str, RunRecord | None] = {"run": None}

    async def load() -> None:
        run = await services.store.get_run(run_id) if run_id else None
        if run is None or not _visible(ctx, run):
            feedback.object = f"<p role='alert'>No run with id {html.escape(run_id)}.</p>"
            return
        holder["run"] = run
        args_view.object = run.args
        rerun.disabled = not ctx.can("run", run.path)
        cancel.disabled = run.status in FINISHED or not ctx.can("run", run.path)
        final = await monitor.follow(run.id)
        cancel.disabled = final is None or final.status in FINISHED

    async def do_rerun(_: Any) -> None:
        run = holder["run"]
        if run is None:
            return
        try:
            ctx.require("run", run.path)
            options = {"path": run.path, "trigger": "ui", "actor": ctx.user}
            if run.kind == "script":
                new = await services.dispatcher.submit_script(
                    run.definition, run.args, language=getattr(run, "language", "python"), **options
                )
            else:
                new = await services.dispatcher.submit(run.definition, run.args, **options)
        except Exception as exc:
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        feedback.object = f"<p role='status'>Started <a href='/run?id={quote(new.id)}'>run {html.escape(new.id[:12])}</a>.</p>"

    async def do_cancel(_: Any) -> None:
        run = holder["run"]
        if run is None:
            return
        try:
            ctx.require("run", run.path)
            await services.dispatcher.cancel(run.id, reason=f"cancelled by {ctx.user}")
        except Exception as exc:
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        ctx.audit("job.cancel", run.path, job_id=run.id)
        cancel.disabled = True

    rerun.on_click(do_rerun)
    cancel.on_click(do_cancel)
    pn.state.onload(load)
    return page(
        ctx,
        f"Run {run_id[:12]}",
        pn.Row(rerun, cancel),
        feedback,
        pn.pane.Markdown("#### Arguments"),
        args_view,
        monitor.panel,
        current="/runs",
    )


class Approval:
    """One waiting approval step: its form, Approve and Reject."""

    def __init__(self, ctx: PageContext, run: RunRecord, step: Any, on_done: Any) -> None:
        self.ctx, self.run, self.step, self.on_done = ctx, run, step, on_done
        detail = step.detail or {}
        form_schema = detail.get("form")
        self.form = run_form(form_schema) if form_schema else None
        allowed = ctx.role() != "viewer" and ctx.can("run", run.path)
        self.approve = pn.widgets.Button(
            name="Approve", button_type="success", width=110, disabled=not allowed
        )
        self.reject = pn.widgets.Button(
            name="Reject", button_type="danger", width=110, disabled=not allowed
        )
        self.feedback = html_pane()
        self.approve.on_click(self._approve)
        self.reject.on_click(self._reject)
        given = len(detail.get("approvals", []))
        self.header = html_pane(
            f"<div data-testid='approval' data-run='{html.escape(run.id)}'>"
            f"<b>{html.escape(run.path or '(inline flow)')}</b> · step <code>{html.escape(step.step_id)}</code> · "
            f"<a href='/run?id={quote(run.id)}'>run {html.escape(run.id[:12])}</a> · "
            f"{given} of {detail.get('required', 1)} approvals · started by {html.escape(run.actor or '?')}"
            f"<div class='gm-muted'>arguments: <code>{html.escape(json.dumps(run.args)[:300])}</code></div></div>"
        )

    def _check(self) -> None:
        if self.ctx.role() == "viewer":
            raise PermissionError(f"{self.ctx.user} is a viewer and cannot approve")
        self.ctx.require("run", self.run.path)
        if refusal := approval_refusal(self.ctx.actor(), self.step.detail or {}, self.run.actor):
            raise PermissionError(refusal)

    async def _approve(self, _: Any) -> None:
        services = self.ctx.services
        try:
            self._check()
            payload = form_value(self.form) if self.form is not None else None
            await services.engine.resume(
                self.run.id, payload, approver=self.ctx.user, step_key=self.step.key
            )
            services.dispatcher.wake()
        except Exception as exc:  # ApprovalError, ArgumentError, Forbidden
            self.feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        self.ctx.audit("job.approve", self.run.path, job_id=self.run.id)
        await self.on_done(f"Approved run {self.run.id[:12]}.")

    async def _reject(self, _: Any) -> None:
        services = self.ctx.services
        try:
            self._check()
            await services.dispatcher.cancel(self.run.id, reason=f"rejected by {self.ctx.user}")
        except Exception as exc:
            self.feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        self.ctx.audit("job.reject", self.run.path, job_id=self.run.id)
        await self.on_done(f"Rejected run {self.run.id[:12]}.")

    def view(self) -> Any:
        parts: list[Any] = [self.header]
        if self.form is not None:
            parts.append(self.form)
        parts += [pn.Row(self.approve, self.reject), self.feedback]
        return pn.Card(*parts, hide_header=True, sizing_mode="stretch_width")


def approvals_page(ctx: PageContext) -> pn.template.BaseTemplate:
    store = ctx.services.store
    listing = pn.Column(sizing_mode="stretch_width")
    status = html_pane()

    async def refresh(message: str = "") -> None:
        items = []
        for run in await store.list_runs(status="suspended", limit=200):
            if not _visible(ctx, run):
                continue
            latest: dict[str, Any] = {}
            for step in await store.steps(run.id):
                latest[step.key] = step
            for step in latest.values():
                if step.status == "waiting":  # only approvals wait
                    items.append(Approval(ctx, run, step, refresh).view())
        listing.objects = items or [
            html_pane(
                "<p class='gm-muted' data-testid='no-approvals'>Nothing waits for an approval.</p>"
            )
        ]
        status.object = f"<p role='status'>{html.escape(message)}</p>" if message else ""

    async def reload_clicked(_: Any) -> None:
        await refresh()

    reload = pn.widgets.Button(name="Refresh", width=100)
    reload.on_click(reload_clicked)
    pn.state.onload(refresh)
    return page(ctx, "Approvals", reload, status, listing, current="/approvals")
