"""Variables and secrets: the list (a secret's value shows as ******), create or edit,
reveal a secret on an explicit click, delete.

The same rules as `studio.api.config.VariableHandler`: listing needs "read" on the path,
saving and deleting "write"; revealing a secret needs "write" as well and is audited as
`secret.reveal`, exactly as `GET /api/variables/{path}?reveal=true` is.
"""

from __future__ import annotations

import html
import time
from typing import Any

import panel as pn

from studio.pages.parts import alert_html, choose, clicked
from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page

MASK = "******"


def variables_table(variables: list[Any]) -> str:
    if not variables:
        return "<p class='gm-muted' data-testid='no-variables'>No variables yet.</p>"
    rows = []
    for v in variables:
        value = MASK if v.secret else (v.value or "")
        kind = "secret" if v.secret else "variable"
        rows.append(
            f"<tr data-variable='{html.escape(v.path)}'><td>{html.escape(v.path)}</td>"
            f"<td>{kind}</td><td><code data-testid='value'>{html.escape(value)}</code></td>"
            f"<td>{html.escape(v.description)}</td>"
            f"<td class='gm-muted'>{time.strftime('%Y-%m-%d %H:%M', time.localtime(v.updated_at))}</td></tr>"
        )
    return (
        "<div style='overflow-x:auto'><table class='gm-variables' style='width:100%'><thead><tr>"
        "<th align='left'>Path</th><th align='left'>Kind</th><th align='left'>Value</th>"
        "<th align='left'>Description</th><th align='left'>Updated</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


class VariablesView:
    """One session's variables page."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.table = html_pane()
        self.path = pn.widgets.TextInput(
            name="Variable path", value=f"u/{ctx.user}/", placeholder="u/<user>/<name>", width=260
        )
        self.value = pn.widgets.TextInput(name="Value", width=260)
        self.secret_value = pn.widgets.PasswordInput(
            name="Secret value",
            placeholder="empty: keep the current value",
            width=260,
            visible=False,
        )
        # A toggle button rather than a checkbox: Bokeh's checkbox label is not tied to
        # its input, so screen readers (and tests) could not find it by name.
        self.secret = pn.widgets.Toggle(
            name="Secret: encrypted, shown as ******", value=False, width=260
        )
        self.description = pn.widgets.TextInput(name="Description", width=300)
        self.save_button = pn.widgets.Button(name="Save variable", button_type="primary", width=140)
        self.feedback = html_pane()
        self.pick = pn.widgets.Select(name="Variable", options=[], width=260)
        self.edit_button = pn.widgets.Button(name="Edit", width=80)
        self.reveal_button = pn.widgets.Button(name="Reveal secret", width=130)
        self.delete_button = pn.widgets.Button(name="Delete", button_type="danger", width=100)
        self.revealed = html_pane()

        self.secret.param.watch(lambda *_: self._secret_mode(), "value")
        self.pick.param.watch(lambda *_: self._pick_rights(), "value")
        self.save_button.on_click(lambda _: self.save())
        self.edit_button.on_click(lambda _: self.edit())
        self.reveal_button.on_click(clicked(self.reveal))
        self.delete_button.on_click(lambda _: self.delete())
        self.refresh()

    def _secret_mode(self) -> None:
        # A secret is typed into a password box, so it is not on screen while typed.
        if self.secret.value:
            self.secret_value.value = self.secret_value.value or self.value.value
            self.value.value = ""
        self.value.visible = not self.secret.value
        self.secret_value.visible = bool(self.secret.value)

    def refresh(self) -> None:
        visible = [v for v in self.ctx.workspace.list_variables() if self.ctx.can("read", v.path)]
        self.table.object = variables_table(visible)
        choose(self.pick, [v.path for v in visible])
        self._pick_rights()

    def _pick_rights(self) -> None:
        path = self.pick.value
        writable = bool(path) and self.ctx.can("write", path)
        self.delete_button.disabled = self.reveal_button.disabled = not writable
        self.revealed.object = ""

    # ------------------------------------------------------------- actions

    def save(self) -> None:
        workspace = self.ctx.workspace
        path = (self.path.value or "").strip()
        secret = bool(self.secret.value)
        value = (self.secret_value.value if secret else self.value.value) or ""
        try:
            self.ctx.require("write", path)
            if secret and not value:
                # Keeping a secret's value while editing its description: read here,
                # never shown, so it is no reveal.
                try:
                    existing = workspace.get_variable(path, reveal=True)
                except Exception:
                    existing = None
                if existing is None or not existing.secret or existing.value is None:
                    raise ValueError(f"field 'Secret value' is empty; type the value of {path}")
                value = existing.value
            saved = workspace.set_variable(
                path, value, secret=secret, description=self.description.value or ""
            )
        except Exception as exc:  # Invalid path, Forbidden
            self.feedback.object = alert_html(exc)
            return
        self.ctx.audit("secret.set" if secret else "variable.set", path)
        kind = "secret" if saved.secret else "variable"
        self.feedback.object = f"<div role='status' data-testid='variable-saved'>Saved {kind} {html.escape(path)}.</div>"
        self.value.value = self.secret_value.value = ""
        self.refresh()

    def edit(self) -> None:
        """Load the picked variable into the form (a secret's value stays hidden)."""
        path = self.pick.value
        if not path:
            return
        try:
            self.ctx.require("read", path)
            variable = self.ctx.workspace.get_variable(path)
        except Exception as exc:
            self.feedback.object = alert_html(exc)
            return
        self.path.value = variable.path
        self.secret.value = variable.secret
        self.value.value = "" if variable.secret else (variable.value or "")
        self.secret_value.value = ""
        self.description.value = variable.description
        self.feedback.object = ""

    def reveal(self) -> str | None:
        """Show the picked secret's value; needs write on it, audited as the API does."""
        path = self.pick.value
        try:
            if not path:
                raise ValueError("field 'Variable': pick the secret to reveal")
            self.ctx.require("read", path)
            variable = self.ctx.workspace.get_variable(path)
            if variable.secret:
                self.ctx.require("write", path)
                variable = self.ctx.workspace.get_variable(path, reveal=True)
                self.ctx.audit("secret.reveal", path)
        except Exception as exc:
            self.revealed.object = alert_html(exc)
            return None
        self.revealed.object = (
            f"<p>Value of {html.escape(path)} (this reveal is in the audit log):</p>"
            f"<pre class='gm-log' data-testid='revealed'>{html.escape(variable.value or '')}</pre>"
        )
        return variable.value

    def delete(self) -> None:
        path = self.pick.value
        try:
            if not path:
                raise ValueError("field 'Variable': pick the variable to delete")
            self.ctx.require("write", path)
            self.ctx.workspace.delete_variable(path)
        except Exception as exc:
            self.feedback.object = alert_html(exc)
            return
        self.ctx.audit("variable.delete", path)
        self.feedback.object = f"<div role='status'>Deleted {html.escape(path)}.</div>"
        self.refresh()

    def view(self) -> list[Any]:
        return [
            self.table,
            pn.pane.Markdown("#### Edit, reveal or delete"),
            pn.FlexBox(self.pick, self.edit_button, self.reveal_button, self.delete_button),
            self.revealed,
            pn.pane.Markdown("#### Add or change a variable"),
            pn.FlexBox(self.path, self.secret, self.value, self.secret_value, self.description),
            self.save_button,
            self.feedback,
        ]


def variables_page(ctx: PageContext) -> pn.template.BaseTemplate:
    if ctx.workspace is None:
        return page(
            ctx,
            "Variables & secrets",
            notice("The workspace is not available."),
            current="/variables",
        )
    view = VariablesView(ctx)
    return page(ctx, "Variables & secrets", *view.view(), current="/variables")
