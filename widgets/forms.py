"""A script's or flow's input schema as a Panel form: `RunForm`.

The form is built from `FIELD_RULES`, one mapping table from JSON Schema to editors,
most specific first (panel's `Param.mapping` re-keyed on JSON Schema). Single-widget
editors live in `widgets.form_fields`, the nested ones (fieldsets, list editors, the
JSON editor) in `widgets.form_nested`; the table and the form that uses it live here.

`RunForm.value` is always plain JSON, ready for `kernels.arguments.validate_arguments`
and for the run API; fields left empty are omitted so the script's defaults apply.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import panel as pn
import param

from kernels.arguments import validate_arguments
from kernels.errors import ArgumentError
from widgets.form_fields import (
    EMPTY,
    Builder,
    FieldContext,
    FieldEditor,
    FieldSpec,
    Resources,
    boolean_field,
    date_field,
    date_time_field,
    enum_field,
    file_field,
    integer_field,
    multi_enum_field,
    number_field,
    optional_boolean_field,
    resource_field,
    resource_type,
    text_field,
    textarea_field,
    time_field,
)
from widgets.form_nested import JsonField, ListField, ObjectField, join_path, route_errors

LONG_TEXT = 80  # a string default longer than this (or with a newline) gets a text area


def _object_field(spec: FieldSpec, context: FieldContext) -> FieldEditor:
    return ObjectField(spec, context)


def _list_field(spec: FieldSpec, context: FieldContext) -> FieldEditor:
    return ListField(spec, context)


def _json_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return JsonField(spec)


# -- the mapping table ------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    """One row of the mapping table: when a property matches, how to edit it."""

    name: str
    matches: Callable[[FieldSpec], bool]
    build: Builder


def _type(spec: FieldSpec) -> Any:
    return spec.schema.get("type")


def _string_format(fmt: str) -> Callable[[FieldSpec], bool]:
    return lambda s: _type(s) == "string" and s.schema.get("format") == fmt


def _is_long_text(spec: FieldSpec) -> bool:
    if spec.schema.get("format") == "textarea":
        return True
    default = spec.default
    return isinstance(default, str) and (len(default) > LONG_TEXT or "\n" in default)


def _is_resource(spec: FieldSpec) -> bool:
    return _type(spec) in ("string", None) and bool(resource_type(spec.schema))


def _is_enum(spec: FieldSpec) -> bool:
    return isinstance(spec.schema.get("enum"), list) and bool(spec.schema["enum"])


def _is_enum_list(spec: FieldSpec) -> bool:
    items = spec.schema.get("items")
    return (
        _type(spec) == "array"
        and isinstance(items, Mapping)
        and isinstance(items.get("enum"), list)
        and all(isinstance(v, str | int | float | bool) for v in items["enum"])
    )


def _is_list(spec: FieldSpec) -> bool:
    items = spec.schema.get("items")
    return (
        _type(spec) == "array" and isinstance(items, Mapping) and "prefixItems" not in spec.schema
    )


def _is_fieldset(spec: FieldSpec) -> bool:
    return _type(spec) == "object" and bool(spec.schema.get("properties"))


# Most specific first: the first rule whose `matches` is true builds the editor.
# fmt: off
FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("resource", _is_resource, resource_field),
    FieldRule("enum", _is_enum, enum_field),
    FieldRule("file", lambda s: _type(s) == "string" and s.schema.get("contentEncoding") == "base64", file_field),
    FieldRule("date", _string_format("date"), date_field),
    FieldRule("date-time", _string_format("date-time"), date_time_field),
    FieldRule("time", _string_format("time"), time_field),
    FieldRule("textarea", lambda s: _type(s) == "string" and _is_long_text(s), textarea_field),
    FieldRule("string", lambda s: _type(s) == "string", text_field),
    FieldRule("integer", lambda s: _type(s) == "integer", integer_field),
    FieldRule("number", lambda s: _type(s) == "number", number_field),
    FieldRule("optional-boolean", lambda s: _type(s) == "boolean" and not s.required and s.default is EMPTY, optional_boolean_field),
    FieldRule("boolean", lambda s: _type(s) == "boolean", boolean_field),
    FieldRule("multi-enum", _is_enum_list, multi_enum_field),
    FieldRule("list", _is_list, _list_field),
    FieldRule("fieldset", _is_fieldset, _object_field),
    FieldRule("json", lambda s: True, _json_field),  # objects without properties, any, unions, tuples
)
# fmt: on
RULES_BY_NAME: dict[str, FieldRule] = {rule.name: rule for rule in FIELD_RULES}

Override = type[pn.widgets.Widget] | str


@dataclass
class FieldFactory:
    """Builds editors from the mapping table, with the form's overrides and resources.

    `overrides` maps a dotted field path ("order.customer", "tags.0") to a widget class
    for a single-widget field (a `Switch` for a boolean) or to the name of a rule in
    `FIELD_RULES` ("json" to type an object as JSON even though it has properties).
    """

    resources: Resources | None = None
    overrides: Mapping[str, Override] = field(default_factory=dict)
    rules: tuple[FieldRule, ...] = FIELD_RULES

    def build(self, spec: FieldSpec) -> FieldEditor:
        override = self.overrides.get(spec.path)
        if isinstance(override, str):
            if override not in RULES_BY_NAME:
                raise ValueError(
                    f"override for field '{spec.path}': unknown field kind {override!r}; "
                    f"expected a widget class or one of {', '.join(RULES_BY_NAME)}"
                )
            return RULES_BY_NAME[override].build(spec, self)
        if override is not None:
            spec = replace(spec, override=override)
        rule = next(r for r in self.rules if r.matches(spec))
        return rule.build(spec, self)

    def child(
        self,
        parent: str,
        name: str,
        schema: Any,
        *,
        required: bool,
        label: str = "",
        item: bool = False,
    ) -> FieldEditor:
        schema = schema if isinstance(schema, Mapping) else {}
        title, description = schema.get("title"), schema.get("description")
        if not label and not name.isdigit():
            label = title if isinstance(title, str) and title else name
        return self.build(
            FieldSpec(
                path=join_path(parent, name) if parent else name,
                schema=schema,
                label=label,
                required=required,
                description=description if isinstance(description, str) else "",
                default=schema.get("default", EMPTY),
                item=item,
            )
        )


# -- the form ---------------------------------------------------------------------------


class RunForm(pn.viewable.Viewer):
    """The run form of a script or flow, generated from its input schema.

    Watch `value` for the arguments as the user edits them; call `validate()` before
    running (it shows each message next to its field). Assigning `value` shows those
    arguments (a re-run); assigning `schema` rebuilds the form and keeps the values of
    fields that are still there.
    """

    schema = param.Dict(
        default={}, doc="JSON Schema (2020-12) of the inputs, as kernels.schema writes it."
    )
    value = param.Dict(
        default={}, doc="The arguments as the form holds them: JSON, empty fields left out."
    )
    errors = param.Dict(default={}, doc="Dotted field path -> message, from the last validate().")
    resources = param.Callable(
        default=None, doc="Resource type -> resource paths a resource field offers."
    )
    overrides = param.Dict(
        default={}, doc="Dotted field path -> widget class or field kind (see FIELD_RULES)."
    )
    owner = param.String(default="main()", doc="What takes the arguments, as messages name it.")

    def __init__(self, **params: Any) -> None:
        initial = params.pop("value", None) or {}
        super().__init__(**params)
        self._syncing = False
        self._applying = False
        self.fields: dict[str, FieldEditor] = {}
        self._layout = pn.Column(sizing_mode="stretch_width")
        self._build()
        self._apply(initial)
        self.param.watch(self._on_value, "value")
        self.param.watch(lambda _: self._rebuild(), ["schema", "overrides", "resources"])

    @classmethod
    def from_schema(
        cls,
        schema: Mapping[str, Any],
        values: Mapping[str, Any] | None = None,
        resources: Resources | None = None,
        **params: Any,
    ) -> RunForm:
        """A form for `schema`, prefilled with defaults and then with `values`."""
        return cls(schema=dict(schema), value=dict(values or {}), resources=resources, **params)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    # -- building --------------------------------------------------------------------

    def _build(self) -> None:
        factory = FieldFactory(resources=self.resources, overrides=self.overrides)
        required = set(self.schema.get("required", []))
        self.fields = {
            name: factory.child("", name, prop, required=name in required)
            for name, prop in self.schema.get("properties", {}).items()
        }
        for editor in self.fields.values():
            editor.on_change(self._on_field)
        head = []
        description = self.schema.get("description")
        if isinstance(description, str) and description:
            head.append(pn.pane.HTML(f"<p>{html.escape(description)}</p>", margin=(0, 10)))
        self._layout.objects = [*head, *(e.panel for e in self.fields.values())]

    def _rebuild(self) -> None:
        kept = {n: v for n, v in self.value.items() if n in self.schema.get("properties", {})}
        self._build()
        self._apply(kept)
        if self.errors:
            self.validate()

    def field(self, path: str) -> FieldEditor:
        """The editor at a dotted path: "order", "order.customer", "order.lines.0"."""
        head, *rest = path.split(".")
        editor: Any = self.fields[head]
        for part in rest:
            if isinstance(editor, ObjectField):
                editor = editor.children[part]
            elif isinstance(editor, ListField):
                editor = editor.rows[int(part)]
            else:
                raise KeyError(f"field '{path}': '{part}' is inside a single-value field")
        return editor

    # -- values ----------------------------------------------------------------------

    def _apply(self, values: Mapping[str, Any]) -> None:
        """Show `values`; fields not named show their defaults, as the script would get."""
        self._applying = True  # one sync at the end, not one per widget touched
        try:
            for name, editor in self.fields.items():
                if name in values:
                    editor.fill(values[name])
                else:
                    editor.reset()
        finally:
            self._applying = False
        self._sync()

    def _collect(self) -> dict[str, Any]:
        return {n: v for n, e in self.fields.items() if (v := e.get()) is not EMPTY}

    def _sync(self) -> None:
        self._syncing = True
        try:
            self.value = self._collect()
        finally:
            self._syncing = False

    def _on_field(self) -> None:
        if self._applying:
            return
        self._sync()
        if self.errors:
            self.validate()  # so a message goes away as soon as its field is fixed

    def _on_value(self, event: Any) -> None:
        if not self._syncing:
            self._apply(event.new or {})

    # -- validation ------------------------------------------------------------------

    def validate(self) -> dict[str, str]:
        """Check the current arguments; return and show dotted field path -> message.

        An empty result means `validate_arguments(form.value, form.schema)` accepts
        the arguments. Every top-level field gets its own check, so all fields with a
        problem are marked at once (the first problem inside each).
        """
        errors: dict[str, str] = {}
        for name, editor in self.fields.items():
            errors.update({join_path(name, k): m for k, m in editor.local_errors().items()})
        value = self.value
        properties = self.schema.get("properties", {})
        required = set(self.schema.get("required", []))
        for name, prop in properties.items():
            if any(k == name or k.startswith(f"{name}.") for k in errors):
                continue
            one = {"type": "object", "properties": {name: prop}, "required": []}
            if name in required:
                one["required"] = [name]
            try:
                validate_arguments(
                    {name: value[name]} if name in value else {}, one, owner=self.owner
                )
            except ArgumentError as exc:
                errors[exc.field] = _message(exc)
        if not errors:
            try:
                validate_arguments(value, self.schema, owner=self.owner)
            except ArgumentError as exc:  # a whole-object rule no single field breaks
                errors[exc.field] = _message(exc)
        self._show(errors)
        self.errors = errors
        return errors

    def _show(self, errors: Mapping[str, str]) -> None:
        routed = route_errors(errors, self.fields)
        for name, editor in self.fields.items():
            editor.show_errors(routed.get(name, {}))

    def describe(self) -> dict[str, Any]:
        """A plain snapshot of the form's fields (widget class, label, value, options)."""
        return {name: editor.describe() for name, editor in self.fields.items()}


def _message(error: ArgumentError) -> str:
    """The message of an argument error as shown beside its field (no field name)."""
    text = str(error)
    prefix = f"argument '{error.field}': "
    text = text[len(prefix) :] if text.startswith(prefix) else text
    if text.startswith("missing;"):
        return f"required; expected {error.expected}" if error.expected else "required"
    return text
