"""Pieces several pages share: the run form and result view (from `widgets/`), and `RunMonitor`, which follows a run live: status, per-step timeline, streaming
logs, then the result.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from typing import Any

import panel as pn

from flows.records import FINISHED, RunRecord, StepRecord
from studio.pages.session import PageContext
from studio.pages.template import html_pane, status_badge
from widgets.forms import RunForm
from widgets.results import ResultView

POLL_S = 0.2  # how often a live run view asks the store for news (a page, not a test, waits)


def run_form(schema: dict[str, Any], ctx: PageContext | None = None) -> RunForm:
    """The generated form for `schema` (`widgets.RunForm`); with `ctx`, a resource
    argument offers the resources of its type the signed-in user may read."""
    if ctx is None:
        return RunForm.from_schema(schema)

    def resources(kind: str) -> list[str]:
        return [
            r.path
            for r in ctx.workspace.list_resources()
            if r.resource_type == kind and ctx.can("read", r.path)
        ]

    return RunForm.from_schema(schema, resources=resources)


def form_value(form: RunForm) -> dict[str, Any]:
    """The form's arguments; a `ValueError` naming each bad field when some are wrong
    (the form also shows each message next to its field)."""
    if errors := form.validate():
        raise ValueError("; ".join(f"{field}: {message}" for field, message in errors.items()))
    return dict(form.value or {})


def result_view(value: Any) -> ResultView:
    return ResultView(result=value)


def _when(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else ""


def steps_html(steps: list[StepRecord]) -> str:
    """The per-step timeline: each step's latest attempt, in start order."""
    latest: dict[str, StepRecord] = {}
    for step in steps:
        latest[step.key] = step
    if not latest:
        return "<p class='gm-muted'>No steps yet.</p>"
    rows = []
    for step in sorted(latest.values(), key=lambda s: s.started_at):
        took = ""
        if step.finished_at:
            took = f"{(step.finished_at - step.started_at) * 1000:.0f} ms"
        attempt = f" (attempt {step.attempt})" if step.attempt > 1 else ""
        error = ""
        if step.error:
            error = f"<div class='gm-muted'>{html.escape(str(step.error.get('message', '')))}</div>"
        rows.append(
            f"<tr data-step='{html.escape(step.key)}'><td>{html.escape(step.key)}</td>"
            f"<td>{html.escape(step.kind)}</td><td>{status_badge(step.status)}{attempt}{error}</td>"
            f"<td>{_when(step.started_at)}</td><td>{took}</td></tr>"
        )
    return (
        "<div style='overflow-x:auto'><table class='gm-steps' style='width:100%'><thead><tr>"
        "<th align='left'>Step</th><th align='left'>Kind</th><th align='left'>Status</th>"
        "<th align='left'>Started</th><th align='left'>Took</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


class RunMonitor:
    """A live view of one run. `await follow(run_id)` returns once the run has ended or
    waits for an approval (or the page went away)."""

    def __init__(self, services: Any, *, show_steps: bool = True) -> None:
        self.services = services
        self.status = html_pane()
        self.steps = html_pane(visible=show_steps)
        self.logs = html_pane()
        self.result = pn.Column(sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(
            active=False, value=-1, visible=False, sizing_mode="stretch_width", height=8
        )
        self._log_text: list[str] = []
        self._following: str | None = None
        self.panel = pn.Column(
            self.progress,
            self.status,
            self.steps,
            pn.pane.Markdown("#### Logs"),
            self.logs,
            pn.pane.Markdown("#### Result"),
            self.result,
            sizing_mode="stretch_width",
        )

    def _secrets(self) -> list[str]:
        workspace = getattr(self.services, "workspace", None)
        return list(workspace.secret_values()) if workspace is not None else []

    def _render_logs(self) -> None:
        from studio.vault import redact

        # Redacted on every render: a secret set while the run goes must not show either.
        text = redact("".join(self._log_text), self._secrets())
        self.logs.object = (
            f"<pre class='gm-log' data-testid='logs'>{html.escape(text)}</pre>"
            if text
            else "<p class='gm-muted' data-testid='logs'>No output yet.</p>"
        )

    def _render_run(self, run: RunRecord) -> None:
        from studio.vault import redact

        error = ""
        if run.error:
            where = f"step '{run.error['step_id']}': " if run.error.get("step_id") else ""
            error = (
                f"<div class='gm-error' role='alert'>{html.escape(where)}"
                f"{html.escape(str(run.error.get('name', 'Error')))}: "
                f"{html.escape(redact(str(run.error.get('message', '')), self._secrets()))}</div>"
            )
        took = ""
        if run.finished_at and run.started_at:
            took = f" in {(run.finished_at - run.started_at) * 1000:.0f} ms"
        self.status.object = (
            f"<p data-testid='run-status' data-run='{html.escape(run.id)}'>Run "
            f"<a href='/run?id={html.escape(run.id)}'>{html.escape(run.id[:12])}</a> "
            f"{status_badge(run.status)}{took}</p>{error}"
        )

    async def follow(self, run_id: str) -> RunRecord | None:
        store = self.services.store
        self._following = run_id
        self._log_text = []
        self.result.objects = []
        self.progress.visible = True
        self.progress.active = True
        self._render_logs()
        offset = 0
        run: RunRecord | None = None
        try:
            while self._following == run_id:
                run = await store.get_run(run_id)
                if run is None:
                    self.status.object = (
                        f"<p role='alert'>No run with id {html.escape(run_id)}.</p>"
                    )
                    return None
                logs = await store.logs(run_id, offset)
                if logs:
                    offset = logs[-1].seq + 1
                    self._log_text.extend(log.text for log in logs)
                    self._render_logs()
                if self.steps.visible:
                    self.steps.object = steps_html(await store.steps(run_id))
                self._render_run(run)
                if run.progress is not None:  # the run reports how far it is (set_progress)
                    self.progress.value = run.progress
                if run.status in FINISHED or (run.status == "suspended" and run.wake_at is None):
                    break
                await asyncio.sleep(POLL_S)
        finally:
            self.progress.active = False
            self.progress.visible = False
        if run is not None and run.status == "success":
            from studio.api.base import redact_value

            self.result.objects = [result_view(redact_value(run.result, self._secrets()))]
        return run

    def stop(self) -> None:
        self._following = None


def choose(select: Any, options: Any) -> None:
    """Give `select` new options, keeping its value when still offered, else the first
    (Panel's Select keeps a stale value, or None, on its own)."""
    keep = select.value
    select.options = options
    values = list(options.values()) if isinstance(options, dict) else list(options)
    select.value = keep if keep in values else (values[0] if values else None)


def alert_html(exc: BaseException | str) -> str:
    """An error for a form's feedback pane (escaped; role=alert for screen readers)."""
    return f"<div role='alert' class='gm-error'>{html.escape(str(exc))}</div>"


def status_html(text: str, testid: str = "") -> str:
    """A confirmation for a form's feedback pane (escaped; role=status)."""
    test = f" data-testid='{testid}'" if testid else ""
    return f"<div role='status'{test}>{html.escape(text)}</div>"


def clicked(action: Callable[[], object]) -> Callable[[Any], None]:
    """A button handler that calls `action` (which may return a value, for tests)."""

    def handler(_: Any) -> None:
        action()

    return handler
