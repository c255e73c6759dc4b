"""The script page: editor, live input schema, run form, Run with streaming logs and the
result, Deploy, version history with diffs, and the shared draft.

Every action goes through the same permission checks as the API (`PageContext.require`);
buttons the user may not use are disabled, and the action refuses anyway.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import panel as pn

from kernels.scripts import Script
from studio.pages.completion import with_completions
from studio.pages.parts import RunMonitor, form_value, run_form
from studio.pages.session import PageContext, query_arg
from studio.pages.template import dark, html_pane, notice, page

SCHEMA_DEBOUNCE_S = 0.3

NEW_SCRIPT = '''def main(name: str = "world", times: int = 1):
    """Say hello.

    Args:
        name: who to greet
        times: how many times
    """
    for i in range(times):
        print(f"hello {name} ({i + 1})")
    return {"greeting": f"hello {name}", "times": times}
'''


def _summary(schema: dict[str, Any]) -> str:
    """One line naming each input and its type, as the schema says now."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    if not props:
        return "<p class='gm-muted' data-testid='schema-summary'>No inputs.</p>"
    parts = [
        f"<code>{html.escape(name)}</code> {html.escape(str(prop.get('type', 'any')))}"
        + ("" if name in required else " (optional)")
        for name, prop in props.items()
    ]
    return f"<p data-testid='schema-summary'>Inputs: {', '.join(parts)}</p>"


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class ScriptEditor:
    """One script's page state for one session."""

    def __init__(self, ctx: PageContext, path: str) -> None:
        self.ctx = ctx
        workspace = ctx.workspace
        self.latest = None
        self.draft = None
        if workspace is not None and path:
            try:
                self.latest = workspace.get("script", path)
            except Exception:  # NotFound: a new script at this path
                self.latest = None
            self.draft = workspace.get_draft("script", path)
        content = self.latest.content if self.latest is not None else NEW_SCRIPT
        self.path = pn.widgets.TextInput(
            name="Path",
            value=path or f"u/{ctx.user}/hello",
            placeholder="u/<user>/<name> or f/<folder>/<name>",
            disabled=self.latest is not None,
            sizing_mode="stretch_width",
        )
        self.summary = pn.widgets.TextInput(
            name="Summary",
            value=self.latest.summary if self.latest is not None else "",
            sizing_mode="stretch_width",
        )
        self.editor = pn.widgets.CodeEditor(
            value=content,
            language="python",
            theme="github_dark" if dark() else "github_light_default",
            sizing_mode="stretch_width",
            height=360,
            name="Code",
        )
        self.schema_view = pn.pane.JSON({}, depth=3, sizing_mode="stretch_width", name="Schema")
        self.schema_error = html_pane()
        self.schema_summary = html_pane()
        self.form_holder = pn.Column(sizing_mode="stretch_width")
        self.form: Any = None
        self.schema: dict[str, Any] = {}
        self.run_button = pn.widgets.Button(name="Run", button_type="primary", width=120)
        self.deploy_button = pn.widgets.Button(name="Deploy", button_type="success", width=120)
        self.draft_button = pn.widgets.Button(name="Save draft", width=120)
        self.feedback = html_pane()
        self.monitor = RunMonitor(ctx.services, show_steps=False)
        self.history = html_pane()
        self.diff_a = pn.widgets.Select(name="From version", options=[], width=140)
        self.diff_b = pn.widgets.Select(name="To version", options=[], width=140)
        self.diff_view = html_pane()
        self.draft_note = html_pane()
        self.load_draft = pn.widgets.Button(name="Open the draft", width=160, visible=False)
        self._pending: asyncio.Task[None] | None = None

        self.editor.param.watch(self._on_code, "value_input")
        self.editor.param.watch(self._on_code, "value")
        self.path.param.watch(lambda *_: self._refresh_rights(), "value")
        self.run_button.on_click(self._run)
        self.deploy_button.on_click(self._deploy)
        self.draft_button.on_click(self._save_draft)
        self.diff_a.param.watch(lambda *_: self._show_diff(), "value")
        self.diff_b.param.watch(lambda *_: self._show_diff(), "value")
        self.load_draft.on_click(self._open_draft)
        self._update_schema(content)
        self._refresh_rights()
        self._refresh_history()

    # ---------------------------------------------------------------- schema

    def _on_code(self, event: Any) -> None:
        # Debounced: a schema costs an AST walk; typing fast should not queue dozens.
        if self._pending is not None:
            self._pending.cancel()
        self._pending = asyncio.ensure_future(self._debounced(event.new))

    async def _debounced(self, source: str) -> None:
        await asyncio.sleep(SCHEMA_DEBOUNCE_S)
        self._update_schema(source)

    def _update_schema(self, source: str) -> None:
        try:
            schema = Script.inline(source, self.path.value or "<script>").schema
        except Exception as exc:  # KernelError subclasses, SyntaxError: shown, not raised
            self.schema_error.object = (
                f"<div role='alert' data-testid='schema-error'>{html.escape(_message(exc))}</div>"
            )
            return
        self.schema_error.object = ""
        self.schema_view.object = schema
        self.schema_summary.object = _summary(schema)
        if schema != self.schema or self.form is None:
            self.schema = schema
            self.form = run_form(schema, self.ctx)
            self.form_holder.objects = [self.form]

    # ---------------------------------------------------------------- rights

    def _refresh_rights(self) -> None:
        path = self.path.value or ""
        can_write = self.ctx.can("write", path)
        self.deploy_button.disabled = not can_write
        self.draft_button.disabled = not can_write
        self.run_button.disabled = not self.ctx.can("run", path)
        self.editor.readonly = not can_write
        if not can_write:
            self.deploy_button.description = (
                f"{self.ctx.user} ({self.ctx.role()}) may not change {path}"
            )

    # ---------------------------------------------------------------- actions

    def _fail(self, exc: BaseException) -> None:
        self.feedback.object = (
            f"<div role='alert' class='gm-error'>{html.escape(_message(exc))}</div>"
        )

    async def _run(self, _: Any) -> None:
        dispatcher = self.ctx.services.dispatcher
        path = self.path.value or ""
        self.feedback.object = ""
        try:
            self.ctx.require("run", path)
            args = form_value(self.form)
            self.run_button.disabled = True
            run = await dispatcher.submit_script(
                self.editor.value_input or self.editor.value,
                args,
                path=path,
                language="python",
                trigger="ui",
                actor=self.ctx.user,
            )
        except Exception as exc:  # ArgumentError, ScriptError, Forbidden: the user's to fix
            self._fail(exc)
            self.run_button.disabled = not self.ctx.can("run", path)
            return
        try:
            await self.monitor.follow(run.id)
        finally:
            self.run_button.disabled = not self.ctx.can("run", path)

    def _deploy(self, _: Any) -> None:
        workspace: Any = self.ctx.workspace
        path = self.path.value or ""
        try:
            self.ctx.require("write", path)
            version = workspace.deploy(
                "script",
                path,
                self.editor.value_input or self.editor.value,
                author=self.ctx.user,
                language="python",
                summary=self.summary.value,
            )
        except Exception as exc:  # Invalid (path, code), Forbidden
            self._fail(exc)
            return
        self.ctx.audit("deploy", path, kind="script", version=version.version, hash=version.hash)
        self.latest = version
        self.path.disabled = True
        self.feedback.object = (
            f"<div role='status' data-testid='deployed'>Deployed {html.escape(path)} "
            f"as version {version.version}.</div>"
        )
        self._refresh_history()

    def _save_draft(self, _: Any) -> None:
        workspace: Any = self.ctx.workspace
        path = self.path.value or ""
        try:
            self.ctx.require("write", path)
            self.draft = workspace.save_draft(
                "script", path, self.editor.value_input or self.editor.value, author=self.ctx.user
            )
        except Exception as exc:
            self._fail(exc)
            return
        self.feedback.object = (
            "<div role='status'>Draft saved; others editing this script see it.</div>"
        )
        self._refresh_history()

    def _open_draft(self, _: Any) -> None:
        if self.draft is not None:
            self.editor.value = self.draft.content

    # ---------------------------------------------------------------- history

    def _refresh_history(self) -> None:
        workspace: Any = self.ctx.workspace
        path = self.path.value or ""
        versions = []
        if workspace is not None and self.latest is not None:
            versions = workspace.versions("script", path)
        rows = "".join(
            f"<tr><td>v{v.version}</td><td>{html.escape(v.author)}</td>"
            f"<td>{html.escape(v.summary)}</td><td><code>{html.escape(v.hash[:10])}</code></td></tr>"
            for v in reversed(versions)
        )
        self.history.object = (
            "<table style='width:100%'><thead><tr><th align='left'>Version</th><th align='left'>Author</th>"
            f"<th align='left'>Summary</th><th align='left'>Hash</th></tr></thead><tbody>{rows}</tbody></table>"
            if versions
            else "<p class='gm-muted'>Not deployed yet.</p>"
        )
        options = {f"v{v.version}": v.version for v in versions}
        self.diff_a.options = options
        self.diff_b.options = options
        if len(versions) >= 2:
            self.diff_a.value = versions[-2].version
            self.diff_b.value = versions[-1].version
        if self.draft is not None:
            self.draft_note.object = f"<p class='gm-muted'>A shared draft by {html.escape(self.draft.author)} exists.</p>"
            self.load_draft.visible = True

    def _show_diff(self) -> None:
        workspace: Any = self.ctx.workspace
        a, b = self.diff_a.value, self.diff_b.value
        if workspace is None or a is None or b is None or a == b:
            self.diff_view.object = ""
            return
        text = workspace.diff("script", self.path.value, a, b)
        self.diff_view.object = f"<pre class='gm-log'>{html.escape(text) or 'No changes.'}</pre>"

    # ---------------------------------------------------------------- layout

    def view(self) -> Any:
        code = pn.Column(
            pn.Row(self.path, self.summary, sizing_mode="stretch_width"),
            with_completions(self.editor),
            pn.Row(self.run_button, self.deploy_button, self.draft_button),
            self.feedback,
            sizing_mode="stretch_width",
        )
        inputs = pn.Column(
            pn.pane.Markdown("#### Inputs"),
            self.schema_error,
            self.schema_summary,
            self.form_holder,
            pn.Accordion(("Input schema (live)", self.schema_view), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        history = pn.Column(
            self.draft_note,
            self.load_draft,
            self.history,
            pn.Row(self.diff_a, self.diff_b),
            self.diff_view,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            code,
            pn.Tabs(
                ("Run", pn.Column(inputs, self.monitor.panel, sizing_mode="stretch_width")),
                ("History", history),
                sizing_mode="stretch_width",
                dynamic=False,
            ),
            sizing_mode="stretch_width",
        )


def script_page(ctx: PageContext) -> pn.template.BaseTemplate:
    path = query_arg("path")
    parts: list[Any] = []
    if ctx.workspace is None:
        parts.append(notice("The workspace is not available: you can run code, not deploy it."))
    editor = ScriptEditor(ctx, path)
    parts.append(editor.view())
    return page(ctx, path or "New script", *parts, current="" if path else "/script")
