"""Schedules: each with its cron (seconds allowed), time zone, target, the next 5 fire
times, and pause / resume; a form to add one. Same rules as `PUT /api/schedules/{path}`:
write on the schedule's path and run on its target."""

from __future__ import annotations

import html
import json
import time
from dataclasses import replace
from typing import Any

import panel as pn

from flows.schedules import ScheduleSpec, next_fires
from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page


def _fires(schedule: Any, n: int = 5) -> list[float]:
    try:
        spec = ScheduleSpec(path=schedule.path, cron=schedule.cron, timezone=schedule.timezone)
        return next_fires(spec, time.time(), n)
    except Exception:  # a schedule stored before a rule tightened: show it, without fires
        return []


def _fmt(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def schedules_table(schedules: list[Any]) -> str:
    if not schedules:
        return "<p class='gm-muted' data-testid='no-schedules'>No schedules yet.</p>"
    rows = []
    for s in schedules:
        fires = "<br>".join(_fmt(t) for t in _fires(s))
        state = "active" if s.enabled else "paused"
        rows.append(
            f"<tr data-schedule='{html.escape(s.path)}'><td>{html.escape(s.path)}</td>"
            f"<td><code>{html.escape(s.cron)}</code><div class='gm-muted'>{html.escape(s.timezone)}</div></td>"
            f"<td>{html.escape(s.target_kind)} <a href='/{s.target_kind}?path={html.escape(s.target_path)}'>"
            f"{html.escape(s.target_path)}</a></td><td>{state}</td>"
            f"<td class='gm-muted' style='font-size:.85em'>{fires}</td>"
            f"<td><a href='/runs?path={html.escape(s.target_path)}'>runs</a></td></tr>"
        )
    return (
        "<div style='overflow-x:auto'><table style='width:100%'><thead><tr><th align='left'>Schedule</th>"
        "<th align='left'>Cron</th><th align='left'>Runs</th><th align='left'>State</th>"
        "<th align='left'>Next 5 fires</th><th></th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def schedules_page(ctx: PageContext) -> pn.template.BaseTemplate:
    workspace = ctx.workspace
    if workspace is None:
        return page(
            ctx, "Schedules", notice("The workspace is not available."), current="/schedules"
        )
    from studio.workspace.models import Schedule

    table = html_pane()
    feedback = html_pane()
    path = pn.widgets.TextInput(name="Schedule path", value=f"u/{ctx.user}/nightly", width=260)
    cron = pn.widgets.TextInput(
        name="Cron (sec min hour dom mon dow)", value="0 0 2 * * *", width=240
    )
    timezone = pn.widgets.TextInput(name="Time zone", value="UTC", width=180)
    kind = pn.widgets.Select(name="Runs a", options=["script", "flow"], width=100)
    target = pn.widgets.TextInput(name="Script or flow path", width=260)
    args = pn.widgets.TextAreaInput(name="Arguments (JSON)", value="{}", height=80, width=300)
    preview = html_pane()
    save = pn.widgets.Button(name="Save schedule", button_type="primary", width=140)
    pick = pn.widgets.Select(name="Schedule", options=[], width=260)
    toggle = pn.widgets.Button(name="Pause / resume", width=140)
    delete = pn.widgets.Button(name="Delete", button_type="danger", width=100)

    def refresh() -> None:
        visible = [s for s in workspace.list_schedules() if ctx.can("read", s.path)]
        table.object = schedules_table(visible)
        pick.options = [s.path for s in visible]

    def show_preview(*_: Any) -> None:
        probe = Schedule(
            path="u/x/y",
            cron=cron.value or "",
            timezone=timezone.value or "UTC",
            target_kind="script",
            target_path="",
            args={},
        )
        fires = _fires(probe)
        preview.object = (
            "<p class='gm-muted'>Next fires: " + ", ".join(_fmt(t) for t in fires) + "</p>"
            if fires
            else "<p role='alert'>Not a valid cron expression or time zone.</p>"
        )

    def reload_scheduler() -> None:
        scheduler = getattr(ctx.services, "scheduler", None)
        if scheduler is not None:
            scheduler.reload()

    def do_save(_: Any) -> None:
        try:
            values = json.loads(args.value or "{}")
            if not isinstance(values, dict):
                raise ValueError("field 'args' must be a JSON object")
            ctx.require("write", path.value)
            ctx.require("run", target.value)
            saved = workspace.set_schedule(
                Schedule(
                    path=(path.value or "").strip(),
                    cron=(cron.value or "").strip(),
                    timezone=(timezone.value or "").strip() or "UTC",
                    target_kind=kind.value,
                    target_path=(target.value or "").strip(),
                    args=values,
                )
            )
        except Exception as exc:  # Invalid names the field; Forbidden names the path
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        ctx.audit("schedule.set", saved.path, cron=saved.cron, enabled=saved.enabled)
        reload_scheduler()
        feedback.object = f"<p role='status'>Saved schedule {html.escape(saved.path)}.</p>"
        refresh()

    def do_toggle(_: Any) -> None:
        try:
            ctx.require("write", pick.value)
            current = workspace.get_schedule(pick.value)
            saved = workspace.set_schedule(replace(current, enabled=not current.enabled))
        except Exception as exc:
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        ctx.audit("schedule.set", saved.path, enabled=saved.enabled)
        reload_scheduler()
        refresh()

    def do_delete(_: Any) -> None:
        try:
            ctx.require("write", pick.value)
            workspace.delete_schedule(pick.value)
        except Exception as exc:
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        ctx.audit("schedule.delete", pick.value)
        reload_scheduler()
        refresh()

    cron.param.watch(show_preview, "value_input")
    timezone.param.watch(show_preview, "value_input")
    save.on_click(do_save)
    toggle.on_click(do_toggle)
    delete.on_click(do_delete)
    refresh()
    show_preview()
    return page(
        ctx,
        "Schedules",
        table,
        pn.pane.Markdown("#### Pause, resume or delete"),
        pn.FlexBox(pick, toggle, delete),
        pn.pane.Markdown("#### Add or change a schedule"),
        pn.FlexBox(path, cron, timezone, kind, target, args),
        preview,
        save,
        feedback,
        current="/schedules",
    )
