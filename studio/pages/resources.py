"""Resources: resource types (a name and a JSON Schema; admins and developers define
them) and resources (a path, a type, and a value edited with the form generated from the
type's schema), with validation errors next to the fields.

The same rules as `studio.api.config`: `PUT /api/resource_types/{name}` is for the
admin and developer roles; a resource needs "read" on its path to be listed and "write"
to be saved or deleted; each change is audited under the same action name.
"""

from __future__ import annotations

import html
import json
from typing import Any

import panel as pn

from studio.pages.parts import alert_html, choose, run_form
from studio.pages.session import PageContext
from studio.pages.template import dark, html_pane, notice, page

TYPE_AUTHORS = ("admin", "developer")
NEW_TYPE_SCHEMA = """{
  "type": "object",
  "properties": {
    "host": {"type": "string"},
    "port": {"type": "integer", "default": 5432},
    "user": {"type": "string"}
  },
  "required": ["host", "user"]
}"""


def types_table(types: list[Any]) -> str:
    if not types:
        return "<p class='gm-muted' data-testid='no-types'>No resource types yet.</p>"
    rows = "".join(
        f"<tr data-type='{html.escape(t.name)}'><td>{html.escape(t.name)}</td>"
        f"<td>{html.escape(', '.join((t.schema.get('properties') or {}).keys()))}</td>"
        f"<td>{html.escape(t.description)}</td></tr>"
        for t in types
    )
    return (
        "<div style='overflow-x:auto'><table class='gm-types' style='width:100%'><thead><tr>"
        "<th align='left'>Type</th><th align='left'>Fields</th><th align='left'>Description</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def resources_table(resources: list[Any]) -> str:
    if not resources:
        return "<p class='gm-muted' data-testid='no-resources'>No resources yet.</p>"
    rows = "".join(
        f"<tr data-resource='{html.escape(r.path)}'><td>{html.escape(r.path)}</td>"
        f"<td>{html.escape(r.resource_type)}</td>"
        f"<td><code>{html.escape(json.dumps(r.value, ensure_ascii=False)[:200])}</code></td>"
        f"<td>{html.escape(r.description)}</td></tr>"
        for r in resources
    )
    return (
        "<div style='overflow-x:auto'><table class='gm-resources' style='width:100%'><thead><tr>"
        "<th align='left'>Path</th><th align='left'>Type</th><th align='left'>Value</th>"
        f"<th align='left'>Description</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


class ResourcesView:
    """One session's resources page."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.types = html_pane()
        self.resources = html_pane()
        # Resource types
        self.type_name = pn.widgets.TextInput(name="Type name", placeholder="postgres", width=200)
        self.type_description = pn.widgets.TextInput(name="Type description", width=300)
        self.type_schema = pn.widgets.CodeEditor(
            value=NEW_TYPE_SCHEMA,
            language="json",
            theme="github_dark" if dark() else "github_light_default",
            height=220,
            sizing_mode="stretch_width",
            name="JSON Schema",
        )
        self.type_save = pn.widgets.Button(name="Save type", button_type="primary", width=120)
        self.type_out = html_pane()
        # Resources
        self.path = pn.widgets.TextInput(
            name="Resource path", value=f"u/{ctx.user}/", placeholder="u/<user>/<name>", width=260
        )
        self.kind = pn.widgets.Select(name="Resource type", options=[], width=200)
        self.description = pn.widgets.TextInput(name="Description", width=300)
        self.form_holder = pn.Column(sizing_mode="stretch_width")
        self.form: Any = None
        self.save_button = pn.widgets.Button(name="Save resource", button_type="primary", width=140)
        self.feedback = html_pane()
        self.pick = pn.widgets.Select(name="Resource", options=[], width=260)
        self.edit_button = pn.widgets.Button(name="Edit", width=80)
        self.delete_button = pn.widgets.Button(name="Delete", button_type="danger", width=100)

        self.may_define = ctx.role() in TYPE_AUTHORS
        self.type_save.disabled = not self.may_define
        self.type_schema.readonly = not self.may_define
        self.kind.param.watch(lambda *_: self._build_form(), "value")
        self.type_save.on_click(lambda _: self.save_type())
        self.save_button.on_click(lambda _: self.save())
        self.edit_button.on_click(lambda _: self.edit())
        self.delete_button.on_click(lambda _: self.delete())
        self.refresh()

    def _schemas(self) -> dict[str, dict[str, Any]]:
        return {t.name: t.schema for t in self.ctx.workspace.list_resource_types()}

    def refresh(self) -> None:
        workspace = self.ctx.workspace
        self.types.object = types_table(workspace.list_resource_types())
        choose(self.kind, list(self._schemas()))
        visible = [r for r in workspace.list_resources() if self.ctx.can("read", r.path)]
        self.resources.object = resources_table(visible)
        choose(self.pick, [r.path for r in visible])
        if self.form is None:
            self._build_form()

    def _build_form(self, values: dict[str, Any] | None = None) -> None:
        schema = self._schemas().get(self.kind.value or "")
        if schema is None:
            self.form = None
            self.form_holder.objects = [
                html_pane("<p class='gm-muted'>Define a resource type first.</p>")
            ]
            return
        self.form = run_form(schema)
        if values:
            self.form.value = dict(values)
        self.form.owner = f"resource type {self.kind.value}"
        self.form_holder.objects = [self.form]

    # ------------------------------------------------------------- actions

    def save_type(self) -> None:
        name = (self.type_name.value or "").strip()
        try:
            actor = self.ctx.actor()
            if actor.role not in TYPE_AUTHORS:
                raise PermissionError(f"{actor.name} ({actor.role}) may not define resource types")
            try:
                schema = json.loads(self.type_schema.value or "")
            except ValueError as exc:
                raise ValueError(f"field 'JSON Schema' is not valid JSON: {exc}") from None
            saved = self.ctx.workspace.set_resource_type(
                name, schema, self.type_description.value or ""
            )
        except Exception as exc:  # Invalid names the bad schema location
            self.type_out.object = alert_html(exc)
            return
        self.ctx.audit("resource_type.set", saved.name)
        self.type_out.object = f"<div role='status' data-testid='type-saved'>Saved resource type {html.escape(saved.name)}.</div>"
        self.refresh()
        self.kind.value = saved.name
        self._build_form()

    def save(self) -> None:
        path = (self.path.value or "").strip()
        try:
            self.ctx.require("write", path)
            if self.form is None:
                raise ValueError("field 'Resource type': define or pick a resource type first")
            if errors := self.form.validate():  # each message shows next to its field too
                raise ValueError(
                    "; ".join(f"field '{field}': {message}" for field, message in errors.items())
                )
            saved = self.ctx.workspace.set_resource(
                path, self.kind.value, dict(self.form.value or {}), self.description.value or ""
            )
        except Exception as exc:  # Invalid from the type's schema names value.<field>
            self.feedback.object = alert_html(exc)
            return
        self.ctx.audit("resource.set", saved.path, resource_type=saved.resource_type)
        self.feedback.object = f"<div role='status' data-testid='resource-saved'>Saved resource {html.escape(saved.path)}.</div>"
        self.refresh()

    def edit(self) -> None:
        path = self.pick.value
        if not path:
            return
        try:
            self.ctx.require("read", path)
            resource = self.ctx.workspace.get_resource(path)
        except Exception as exc:
            self.feedback.object = alert_html(exc)
            return
        self.path.value = resource.path
        self.description.value = resource.description
        if self.kind.value != resource.resource_type:
            self.kind.value = resource.resource_type  # rebuilds the form empty
        self._build_form(resource.value)
        self.feedback.object = ""

    def delete(self) -> None:
        path = self.pick.value
        try:
            if not path:
                raise ValueError("field 'Resource': pick the resource to delete")
            self.ctx.require("write", path)
            self.ctx.workspace.delete_resource(path)
        except Exception as exc:
            self.feedback.object = alert_html(exc)
            return
        self.ctx.audit("resource.delete", path)
        self.feedback.object = f"<div role='status'>Deleted {html.escape(path)}.</div>"
        self.refresh()

    def view(self) -> list[Any]:
        type_editor: list[Any] = [
            pn.FlexBox(self.type_name, self.type_description),
            self.type_schema,
            self.type_save,
            self.type_out,
        ]
        if not self.may_define:
            type_editor.insert(
                0, notice("Only admins and developers define resource types.", kind="info")
            )
        return [
            pn.pane.Markdown("#### Resources"),
            self.resources,
            pn.FlexBox(self.pick, self.edit_button, self.delete_button),
            pn.pane.Markdown("#### Add or change a resource"),
            pn.FlexBox(self.path, self.kind, self.description),
            self.form_holder,
            self.save_button,
            self.feedback,
            pn.pane.Markdown("#### Resource types"),
            self.types,
            pn.Accordion(
                ("Define a resource type", pn.Column(*type_editor, sizing_mode="stretch_width")),
                sizing_mode="stretch_width",
                active=[0] if self.may_define else [],
            ),
        ]


def resources_page(ctx: PageContext) -> pn.template.BaseTemplate:
    if ctx.workspace is None:
        return page(
            ctx, "Resources", notice("The workspace is not available."), current="/resources"
        )
    view = ResourcesView(ctx)
    return page(ctx, "Resources", *view.view(), current="/resources")
