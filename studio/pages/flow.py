"""The flow page: YAML editor validated as you type (the loader's message, with its line),
a read-only tree of the steps, the run form from the flow's schema, Run with live per-step
status, and Deploy (write permission, as the API)."""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import Any

import panel as pn
import yaml

from flows.flow_files import load_flow
from studio.pages.parts import RunMonitor, form_value, run_form
from studio.pages.session import PageContext, query_arg
from studio.pages.template import dark, html_pane, notice, page

DEBOUNCE_S = 0.3
NEW_FLOW = """summary: Hello flow
schema: {type: object, properties: {n: {type: integer, default: 3}}}
steps:
  - id: numbers
    python: |
      def main(n: int):
          return list(range(n))
    args: {n: "${{ flow_input.n }}"}
  - id: total
    python: "def main(xs: list): return sum(xs)"
    args: {xs: "${{ results.numbers }}"}
"""
NESTED = ("steps", "default")
KINDS = ("python", "sql", "bash", "script", "flow", "for_each", "while", "branch_one",
         "branch_all", "sleep", "approval", "identity")  # fmt: skip


def steps_tree(steps: Any) -> str:
    """Nested lists of `id (kind)`, following steps, branches and defaults."""
    if not isinstance(steps, list):
        return ""
    items = []
    for step in steps:
        if not isinstance(step, dict):
            continue
        kind = next((k for k in KINDS if k in step), "?")
        inner = ""
        for key in NESTED:
            inner += steps_tree(step.get(key))
        for key in ("branch_one", "branch_all"):
            for branch in step.get(key) or []:
                if isinstance(branch, dict):
                    inner += steps_tree(branch.get("steps"))
        items.append(
            f"<li data-step-id='{html.escape(str(step.get('id', '?')))}'><b>{html.escape(str(step.get('id', '?')))}</b>"
            f" <span class='gm-muted'>{html.escape(kind)}</span>{inner}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def flow_page(ctx: PageContext) -> pn.template.BaseTemplate:
    path_arg = query_arg("path")
    workspace: Any = ctx.workspace
    latest = None
    if workspace is not None and path_arg:
        try:
            latest = workspace.get("flow", path_arg)
        except Exception:  # NotFound: a new flow at that path
            latest = None
    path = pn.widgets.TextInput(
        name="Path",
        value=path_arg or f"u/{ctx.user}/hello_flow",
        disabled=latest is not None,
        width=320,
    )
    editor = pn.widgets.CodeEditor(
        value=latest.content if latest is not None else NEW_FLOW,
        language="yaml",
        theme="github_dark" if dark() else "github_light_default",
        height=360,
        sizing_mode="stretch_width",
    )
    problems = html_pane()
    graph = html_pane()
    form_holder = pn.Column(sizing_mode="stretch_width")
    state: dict[str, Any] = {"form": None, "schema": None, "pending": None}
    run_button = pn.widgets.Button(name="Run", button_type="primary", width=120)
    deploy = pn.widgets.Button(name="Deploy", button_type="success", width=120)
    feedback = html_pane()
    monitor = RunMonitor(ctx.services)

    def validate(text: str) -> None:
        try:
            flow = load_flow(text, path.value or "<flow>")
        except Exception as exc:  # FlowSpecError carries the line and the key
            problems.object = f"<pre role='alert' data-testid='flow-error' class='gm-log'>{html.escape(str(exc))}</pre>"
            return
        problems.object = "<p class='gm-muted' data-testid='flow-ok'>The flow is valid.</p>"
        with contextlib.suppress(yaml.YAMLError):  # the loader accepted it; JSON is YAML too
            graph.object = steps_tree((yaml.safe_load(text) or {}).get("steps"))
        schema = flow.schema_ or {}
        if schema != state["schema"]:
            state["schema"] = schema
            state["form"] = run_form(schema, ctx)
            form_holder.objects = [state["form"]]

    def typed(event: Any) -> None:
        if state["pending"] is not None:
            state["pending"].cancel()

        async def later() -> None:
            await asyncio.sleep(DEBOUNCE_S)
            validate(event.new)

        state["pending"] = asyncio.ensure_future(later())

    def rights() -> None:
        deploy.disabled = not ctx.can("write", path.value)
        run_button.disabled = not ctx.can("run", path.value)

    async def do_run(_: Any) -> None:
        try:
            ctx.require("run", path.value)
            run = await ctx.services.dispatcher.submit(
                editor.value_input or editor.value,
                form_value(state["form"]),
                path=path.value,
                trigger="ui",
                actor=ctx.user,
            )
        except Exception as exc:
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        feedback.object = ""
        await monitor.follow(run.id)

    def do_deploy(_: Any) -> None:
        try:
            ctx.require("write", path.value)
            version = workspace.deploy(
                "flow", path.value, editor.value_input or editor.value, author=ctx.user
            )
        except Exception as exc:
            feedback.object = f"<div role='alert'>{html.escape(str(exc))}</div>"
            return
        ctx.audit(
            "deploy", path.value or "", kind="flow", version=version.version, hash=version.hash
        )
        path.disabled = True
        feedback.object = (
            f"<p role='status' data-testid='deployed'>Deployed as version {version.version}.</p>"
        )

    editor.param.watch(typed, "value_input")
    path.param.watch(lambda *_: rights(), "value")
    run_button.on_click(do_run)
    deploy.on_click(do_deploy)
    validate(editor.value)
    rights()
    parts: list[Any] = []
    if workspace is None:
        parts.append(notice("The workspace is not available: you can run flows, not deploy them."))
    parts += [
        path,
        editor,
        problems,
        pn.Row(run_button, deploy),
        feedback,
        pn.Tabs(
            ("Steps", graph),
            ("Run", pn.Column(form_holder, monitor.panel, sizing_mode="stretch_width")),
            dynamic=False,
            sizing_mode="stretch_width",
        ),
    ]
    return page(ctx, path_arg or "New flow", *parts, current="" if path_arg else "/flow")
