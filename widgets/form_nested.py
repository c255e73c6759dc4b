"""The nested editors of a run form: a fieldset, a list editor and a JSON editor.

They hold other editors (built through the `FieldContext` the form passes them) or,
for the JSON editor, free text that must parse; `widgets.forms` maps schemas to them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import panel as pn

from widgets.form_fields import EMPTY, FieldContext, FieldEditor, FieldError, FieldSpec


def _label_pane(spec: FieldSpec) -> pn.viewable.Viewable:
    text = pn.pane.HTML(f"<label>{html.escape(spec.shown_label)}</label>", margin=(5, 10, 0, 10))
    if not spec.description:
        return text
    icon = pn.widgets.TooltipIcon(value=html.escape(spec.description, quote=False), margin=(5, 0))
    return pn.Row(text, icon, margin=0)


class JsonField(FieldEditor):
    """Any JSON value, typed as text in a JSON code editor; a parse error shows inline.

    For a field that accepts strings (an untyped parameter, `int | str`), text that is
    not JSON is taken as a string, as `gristmill run -a NAME=VALUE` does.
    """

    kind = "json"

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__(spec)
        self.editor = pn.widgets.CodeEditor(
            value="", language="json", sizing_mode="stretch_width", height=120, margin=(0, 10)
        )
        self._text = ""
        self.editor.param.watch(self._on_edit, ["value", "value_input"])
        self._panel = pn.Column(
            _label_pane(spec), self.editor, self.error_pane, sizing_mode="stretch_width", margin=0
        )
        self.fill(spec.default)

    @property
    def panel(self) -> pn.viewable.Viewable:
        return self._panel

    @property
    def lenient(self) -> bool:
        """Whether text that is not JSON counts as a string."""
        return _accepts_string(self.spec.schema)

    def _on_edit(self, *events: Any) -> None:
        self._text = events[-1].new or ""
        problem = self._parse_error()
        self.editor.annotations = (
            [{"row": problem[1], "column": problem[2], "text": problem[0], "type": "error"}]
            if problem
            else []
        )
        self._show(problem[0] if problem else "")
        self._changed()

    def _parse_error(self) -> tuple[str, int, int] | None:
        """(message, row, column) of the text's JSON error, None when it is fine."""
        if not self._text.strip() or self.lenient:
            return None
        try:
            json.loads(self._text)
        except json.JSONDecodeError as exc:
            return (
                f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                (exc.lineno - 1),
                exc.colno - 1,
            )
        return None

    def get(self) -> Any:
        if not self._text.strip():
            return EMPTY
        try:
            return json.loads(self._text)
        except json.JSONDecodeError:
            return self._text if self.lenient else EMPTY

    def set(self, value: Any) -> None:
        if value is EMPTY:
            text = ""
        else:
            try:
                text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise FieldError(f"cannot show {value!r}: it is not JSON ({exc})") from exc
        self._text = text
        self.editor.param.update(value=text, value_input=text)

    def local_errors(self) -> dict[str, str]:
        problem = self._parse_error()
        return {"": problem[0]} if problem else super().local_errors()

    def describe(self) -> dict[str, Any]:
        value = self.get()
        return {
            **self._base_description(),
            "widget": "CodeEditor",
            "value": None if value is EMPTY else value,
        }


def _accepts_string(schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    if "anyOf" in schema:
        return any(isinstance(s, Mapping) and _accepts_string(s) for s in schema["anyOf"])
    if kinds is None:
        return "enum" not in schema and "const" not in schema
    return kinds == "string" or (isinstance(kinds, list) and "string" in kinds)


class ObjectField(FieldEditor):
    """An object with declared properties: a fieldset of the properties' editors."""

    kind = "fieldset"

    def __init__(self, spec: FieldSpec, context: FieldContext) -> None:
        super().__init__(spec)
        required = set(spec.schema.get("required", []))
        self.children: dict[str, FieldEditor] = {
            name: context.child(spec.path, name, schema, required=name in required)
            for name, schema in spec.schema.get("properties", {}).items()
        }
        for child in self.children.values():
            child.on_change(self._changed)
        head = []
        if spec.description:
            head.append(pn.pane.HTML(f"<small>{html.escape(spec.description)}</small>"))
        self._panel = pn.Card(
            *head,
            *(child.panel for child in self.children.values()),
            self.error_pane,
            title=html.escape(spec.shown_label),
            collapsible=True,
            sizing_mode="stretch_width",
        )
        if spec.default is not EMPTY:
            self.fill(spec.default)

    @property
    def panel(self) -> pn.viewable.Viewable:
        return self._panel

    def get(self) -> Any:
        values = {n: v for n, c in self.children.items() if (v := c.get()) is not EMPTY}
        if not values and not self.spec.required and self.spec.default is EMPTY:
            return EMPTY
        return values

    def set(self, value: Any) -> None:
        if value is EMPTY:
            value = {}
        if not isinstance(value, Mapping):
            raise FieldError(f"expected an object, got {json.dumps(value, default=repr)}")
        for name, child in self.children.items():
            if name in value:
                child.fill(value[name])
            else:
                child.reset()
        extra = [n for n in value if n not in self.children]
        if extra:
            raise FieldError(
                f"unknown {', '.join(map(repr, extra))}; "
                f"this object takes {', '.join(self.children) or 'nothing'}"
            )

    def fill(self, value: Any) -> None:
        # Keep what fits: a child's bad value is that child's error, not the whole object's.
        try:
            self.set(value)
            self._set_error = ""
        except FieldError as exc:
            self._set_error = str(exc)

    def local_errors(self) -> dict[str, str]:
        errors = super().local_errors()
        for name, child in self.children.items():
            errors.update({join_path(name, k): m for k, m in child.local_errors().items()})
        return errors

    def show_errors(self, errors: Mapping[str, str]) -> None:
        routed = route_errors(errors, self.children)
        for name, child in self.children.items():
            child.show_errors(routed.pop(name, {}))
        super().show_errors({k: m for rest in routed.values() for k, m in rest.items()})

    def describe(self) -> dict[str, Any]:
        return {
            **self._base_description(),
            "widget": "Card",
            "fields": {name: child.describe() for name, child in self.children.items()},
        }


class ListField(FieldEditor):
    """An array: one row per item, each with the item's own editor, plus Add and remove.

    Rows left empty are left out of the value, so adding a row and not filling it in
    changes nothing.
    """

    kind = "list"

    def __init__(self, spec: FieldSpec, context: FieldContext) -> None:
        super().__init__(spec)
        self._context = context
        self.rows: list[FieldEditor] = []
        self._rows = pn.Column(sizing_mode="stretch_width", margin=0)
        self.add_button = pn.widgets.Button(label="+ Add", color="light", width=80)
        self.add_button.on_click(lambda _: self._add(EMPTY, notify=True))
        self._panel = pn.Column(
            _label_pane(spec),
            self._rows,
            self.add_button,
            self.error_pane,
            sizing_mode="stretch_width",
            margin=0,
        )
        self.fill(spec.default)

    @property
    def panel(self) -> pn.viewable.Viewable:
        return self._panel

    def _item(self, index: int) -> FieldEditor:
        items = self.spec.schema.get("items", {})
        title = items.get("title") if isinstance(items, Mapping) else None
        compound = isinstance(items, Mapping) and items.get("type") in ("object", "array")
        label = f"{title or 'Item'} {index + 1}" if compound else ""
        return self._context.child(
            self.spec.path, str(index), items, required=True, label=label, item=True
        )

    def _add(self, value: Any, *, notify: bool) -> None:
        editor = self._item(len(self.rows))
        editor.fill(value)
        editor.on_change(self._changed)
        remove = pn.widgets.Button(label="✕", width=40, color="light", margin=(5, 5))

        def remove_row(_: Any) -> None:
            self.remove(self.rows.index(editor))

        remove.on_click(remove_row)
        self.rows.append(editor)
        self._rows.append(pn.Row(editor.panel, remove, sizing_mode="stretch_width", margin=0))
        if notify:
            self._changed()

    def add(self, value: Any = EMPTY) -> FieldEditor:
        """Add a row (as the Add button does) and return its editor."""
        self._add(value, notify=True)
        return self.rows[-1]

    def remove(self, index: int) -> None:
        """Remove row `index` (as its ✕ button does); later rows move up."""
        keep = [r.get() for i, r in enumerate(self.rows) if i != index]
        self._rebuild(keep)
        self._changed()

    def _rebuild(self, values: list[Any]) -> None:
        # Rows are rebuilt rather than shifted so that labels ("Line 2") and paths stay true.
        self.rows = []
        self._rows.clear()
        for value in values:
            self._add(value, notify=False)

    def _filled(self) -> list[int]:
        """Indices of the rows that contribute an item, in order."""
        return [i for i, r in enumerate(self.rows) if r.get() is not EMPTY]

    def get(self) -> Any:
        items = [self.rows[i].get() for i in self._filled()]
        if not items and not self.spec.required and self.spec.default is EMPTY:
            return EMPTY
        return items

    def set(self, value: Any) -> None:
        if value is EMPTY:
            value = []
        if not isinstance(value, list):
            raise FieldError(f"expected an array, got {json.dumps(value, default=repr)}")
        self._rebuild(list(value))

    def local_errors(self) -> dict[str, str]:
        errors = super().local_errors()
        for i, row in enumerate(self.rows):
            errors.update({join_path(str(i), k): m for k, m in row.local_errors().items()})
        return errors

    def show_errors(self, errors: Mapping[str, str]) -> None:
        # The validator counts the items of the value, which leaves out empty rows, while
        # a row's own problems (bad JSON) are counted by row: tell them apart by message.
        local = self.local_errors()
        filled = self._filled()
        per_row: dict[int, dict[str, str]] = {}
        mine: dict[str, str] = {}
        for path, message in errors.items():
            head, _, rest = path.partition(".")
            if not head.isdigit():
                mine[path] = message
                continue
            index = int(head)
            row = index if local.get(path) == message else (filled + [-1] * (index + 1))[index]
            if 0 <= row < len(self.rows):
                per_row.setdefault(row, {})[rest] = message
            else:
                mine[path] = message
        for i, row_editor in enumerate(self.rows):
            row_editor.show_errors(per_row.get(i, {}))
        super().show_errors(mine)

    def describe(self) -> dict[str, Any]:
        prototype = self._item(0)
        return {
            **self._base_description(),
            "widget": "list",
            "item": {k: v for k, v in prototype.describe().items() if k not in ("value",)},
            "rows": [row.describe() for row in self.rows],
            "value": None if (v := self.get()) is EMPTY else v,
        }


def join_path(head: str, rest: str) -> str:
    return f"{head}.{rest}" if rest else head


def route_errors(
    errors: Mapping[str, str], children: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """Split errors by their first path segment: child name -> (rest of path -> message).

    Errors for this editor itself or for names that are not children land under "".
    """
    routed: dict[str, dict[str, str]] = {}
    for path, message in errors.items():
        head, _, rest = path.partition(".")
        if head in children:
            routed.setdefault(head, {})[rest] = message
        else:
            routed.setdefault("", {})[path] = message
    return routed
