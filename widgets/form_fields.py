"""The fields of a run form: one editor per JSON Schema property, chosen by one table.

`FIELD_RULES` is the mapping from a property's schema to the editor that fills it,
most specific first, in the spirit of panel's `Param.mapping` but keyed on JSON Schema
instead of param types. A form can override the choice per field (by dotted path) with
a widget class (a `Switch` for a boolean) or the name of another rule ("json").

Every editor speaks JSON: `get()` returns the value the script will receive (or
`EMPTY` when the field is left empty and should be omitted) and `set()` takes one.
Errors are addressed by dotted paths relative to the editor ("" is the editor itself,
"lines.0.sku" a nested one), the same paths `kernels.arguments` puts in its errors.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Protocol

import panel as pn

Resources = Callable[[str], list[str]]


class _Empty:
    """A field left empty: its name is omitted from the arguments."""

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY: Any = _Empty()
BLANK = "—"  # the label of the empty choice of a select


@dataclass(frozen=True)
class FieldSpec:
    """What an editor is built from: the property, where it sits and how it is labelled."""

    path: str  # dotted path from the form's root ("order.lines.0.sku")
    schema: Mapping[str, Any]
    label: str
    required: bool = False
    description: str = ""
    default: Any = EMPTY
    override: type[pn.widgets.Widget] | None = None  # a widget class chosen by the page
    item: bool = False  # a list item: always required, so not marked as such

    @property
    def shown_label(self) -> str:
        """The label as displayed: required fields are marked with an asterisk."""
        return f"{self.label} *" if self.required and self.label and not self.item else self.label


class FieldError(ValueError):
    """A value that an editor cannot show (`"abc"` for an integer field)."""


class FieldEditor(ABC):
    """One field of a form: its widgets, its JSON value and its error message.

    The form calls `get` when it assembles the arguments, `set` when a page or a re-run
    gives it values, and `show_errors` after validating; editors call the callbacks
    registered with `on_change` whenever the user edits them.
    """

    kind = ""  # the name of the rule that built the editor

    def __init__(self, spec: FieldSpec) -> None:
        self.spec = spec
        self._listeners: list[Callable[[], None]] = []
        self._set_error = ""
        self.error_pane = pn.pane.HTML(
            "",
            visible=False,
            css_classes=["gm-field-error"],
            styles={"color": "var(--danger-text-color, #b00020)", "font-size": "0.85em"},
            margin=(0, 10, 5, 10),
        )

    @abstractmethod
    def get(self) -> Any:
        """The field's JSON value, or `EMPTY` when it should be omitted."""

    @abstractmethod
    def set(self, value: Any) -> None:
        """Show `value` (JSON); `EMPTY` clears the field. Raises `FieldError` if it cannot."""

    @property
    @abstractmethod
    def panel(self) -> pn.viewable.Viewable:
        """What the form lays out for this field."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A plain snapshot of the editor: widget class, label, value, options, children."""

    def fill(self, value: Any) -> None:
        """`set`, but keep a value the editor cannot show as an error instead of raising."""
        try:
            self.set(value)
            self._set_error = ""
        except FieldError as exc:
            self.set(EMPTY)
            self._set_error = str(exc)

    def reset(self) -> None:
        """Show the field's default (or nothing): what the script gets when it is omitted."""
        self.fill(self.spec.default)

    def local_errors(self) -> dict[str, str]:
        """Problems found without the schema validator (bad JSON, an unusable value)."""
        return {"": self._set_error} if self._set_error else {}

    def show_errors(self, errors: Mapping[str, str]) -> None:
        """Show the messages addressed to this editor (and, for leaves, below it)."""
        lines = [msg if not where else f"{where}: {msg}" for where, msg in errors.items()]
        self._show("; ".join(lines))

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _changed(self, *_: Any) -> None:
        self._set_error = ""
        for callback in list(self._listeners):
            callback()

    def _show(self, message: str) -> None:
        self.error_pane.object = html.escape(message)
        self.error_pane.visible = bool(message)

    def _base_description(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "label": self.spec.shown_label}
        if self.spec.description:
            out["help"] = self.spec.description
        return out


# -- scalar fields: one widget and a codec ------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """How a widget's value and the JSON value turn into each other.

    `to_json` returns `EMPTY` for an empty widget; `from_json` raises `FieldError` for
    a value the widget cannot hold.
    """

    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]
    empty: Any = None  # the widget value that means "left empty"


class ScalarField(FieldEditor):
    """A field edited by a single widget (text, number, date, select, file...)."""

    def __init__(
        self,
        spec: FieldSpec,
        kind: str,
        widget_type: type[pn.widgets.Widget],
        codec: Codec,
        options: Mapping[str, Any] | None = None,
        **widget_params: Any,
    ) -> None:
        super().__init__(spec)
        self.kind = kind
        self.codec = codec
        widget_type = spec.override or widget_type
        params: dict[str, Any] = {"label": spec.shown_label, **widget_params}
        if options is not None and "options" in widget_type.param:
            params["options"] = dict(options)
        if spec.description and "description" in widget_type.param:
            params["description"] = _help(spec.description)
        if "sizing_mode" in widget_type.param and widget_type not in _COMPACT:
            params.setdefault("sizing_mode", "stretch_width")
        self.widget = widget_type(**params)
        # Text widgets report keystrokes in `value_input` and commit `value` on blur or
        # Enter; the last one to change is what the user sees, so that is the value.
        self._typed: Any = None
        self._watch_input = "value_input" in self.widget.param
        self.widget.param.watch(
            self._on_widget, ["value", "value_input"] if self._watch_input else ["value"]
        )
        head: list[Any] = [self.widget]
        if spec.description and "description" not in widget_type.param:
            head.append(pn.widgets.TooltipIcon(value=_help(spec.description), margin=(12, 0)))
        self._panel = pn.Column(
            pn.Row(*head, sizing_mode="stretch_width") if len(head) > 1 else head[0],
            self.error_pane,
            sizing_mode="stretch_width",
            margin=0,
        )
        self.fill(spec.default)

    def _on_widget(self, *events: Any) -> None:
        self._typed = events[-1].new  # a batch sets value and value_input to the same thing
        self._changed()

    @property
    def panel(self) -> pn.viewable.Viewable:
        return self._panel

    def get(self) -> Any:
        value = self._typed if self._watch_input else self.widget.value
        return self.codec.to_json(value)

    def set(self, value: Any) -> None:
        new = self.codec.empty if value is EMPTY else self.codec.from_json(value)
        options = self.widget.param.values().get("options")
        if isinstance(options, dict) and isinstance(new, str) and new not in options.values():
            # A resource picked before that is no longer offered (renamed, or not shared
            # with this user): keep it visible, or the select would show another one.
            self.widget.param.update(options={**options, new: new})
        self._typed = new
        updates = {"value": new, "value_input": new} if self._watch_input else {"value": new}
        try:
            self.widget.param.update(**updates)
        except ValueError as exc:  # the widget's own check (a value outside the options)
            raise FieldError(f"cannot show {_short(value)} here: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        out = self._base_description()
        out["widget"] = type(self.widget).__name__
        value = self.get()
        out["value"] = None if value is EMPTY else value
        options = self.widget.param.values().get("options")
        if options is not None:
            out["options"] = list(options.values() if isinstance(options, dict) else options)
        return out


_COMPACT: tuple[type, ...] = (pn.widgets.Checkbox, pn.widgets.Switch)


def _help(text: str) -> str:
    # Panel renders `description` as Markdown with raw HTML allowed; a script's docstring
    # is text, so its angle brackets must show as typed, not become markup.
    return html.escape(text, quote=False)


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _expect(kind: str, value: Any) -> FieldError:
    return FieldError(f"expected {kind}, got {_short(value)}")


def _text_to_json(value: Any) -> Any:
    return EMPTY if value in (None, "") else str(value)


def _text_from_json(value: Any) -> str:
    if not isinstance(value, str):
        raise _expect("a string", value)
    return value


def _int_from_json(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise _expect("an integer", value)
    return int(value)


def _float_from_json(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _expect("a number", value)
    return float(value)


def _bool_from_json(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _expect("true or false", value)
    return value


def _iso_reader(kind: type[date] | type[datetime] | type[time], what: str) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = kind.fromisoformat(value)
            except ValueError:
                parsed = None
            # fromisoformat("2024-05-01") succeeds for datetime too; a date-time needs a time.
            if parsed is not None and not (kind is datetime and len(value) <= 10):
                if isinstance(parsed, datetime) and parsed.tzinfo is not None:
                    # The picker has no time zone: show the instant in UTC wall time.
                    parsed = parsed.astimezone(tz=None).replace(tzinfo=None)
                return parsed
        raise _expect(what, value)

    return read


def _iso_writer(value: Any) -> Any:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, str):
        return value
    return value.isoformat()


def _b64_to_json(value: Any) -> Any:
    return EMPTY if not value else base64.b64encode(value).decode("ascii")


def _b64_from_json(value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        pass
    raise _expect("base64 text", value)


def _choice_reader(choices: list[Any]) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if value in choices and any(type(value) is type(c) for c in choices if c == value):
            return value
        raise _expect("one of " + ", ".join(_short(c) for c in choices), value)

    return read


def _choices_reader(choices: list[Any]) -> Callable[[Any], list[Any]]:
    one = _choice_reader(choices)

    def read(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _expect("an array", value)
        return [one(v) for v in value]

    return read


def _optional(value: Any) -> Any:
    return EMPTY if value is None else value


TEXT = Codec(_text_to_json, _text_from_json, empty="")
INTEGER = Codec(_optional, _int_from_json)
NUMBER = Codec(_optional, _float_from_json)
DATE = Codec(_iso_writer, _iso_reader(date, "a date (YYYY-MM-DD)"))
DATE_TIME = Codec(_iso_writer, _iso_reader(datetime, "a date and time (ISO 8601)"))
TIME = Codec(_iso_writer, _iso_reader(time, "a time of day (HH:MM[:SS])"))
BYTES = Codec(_b64_to_json, _b64_from_json)


def _option_label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _with_blank(spec: FieldSpec, options: dict[str, Any]) -> dict[str, Any]:
    """A choice without a default starts on an empty entry (None).

    Optional, it means "not given"; required, it makes the user choose rather than send
    whatever happened to be listed first (a browser shows the first option as chosen).
    """
    if spec.default is not EMPTY or None in options.values():
        return options
    return {BLANK: None, **options}


# -- builders for the mapping table in `widgets.forms` ----------------------------------


class FieldContext(Protocol):
    """What a builder may ask of the form's field factory."""

    resources: Resources | None

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
        """The editor of a property (or list item) `name` below the field at `parent`."""
        ...


Builder = Callable[[FieldSpec, FieldContext], FieldEditor]


def text_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "string", pn.widgets.TextInput, TEXT, **_placeholder(spec))


def textarea_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "textarea", pn.widgets.TextAreaInput, TEXT, auto_grow=True)


def integer_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "integer", pn.widgets.IntInput, INTEGER, value=None, **_bounds(spec))


def number_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "number", pn.widgets.FloatInput, NUMBER, value=None, **_bounds(spec))


def boolean_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    # False is a real answer, so a required boolean starts unchecked and sends false.
    codec = Codec(bool, _bool_from_json, empty=False)
    return ScalarField(spec, "boolean", pn.widgets.Checkbox, codec)


def optional_boolean_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    # Neither required nor defaulted: the script's own default (None) differs from false,
    # so "not set" must be a choice of its own, which a checkbox cannot offer.
    options = {BLANK: None, "true": True, "false": False}
    codec = Codec(_optional, _bool_from_json)
    return ScalarField(spec, "optional-boolean", pn.widgets.Select, codec, options=options)


def enum_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    choices = list(spec.schema["enum"])
    options = _with_blank(spec, {_option_label(c): c for c in choices})
    codec = Codec(_optional, _choice_reader(choices))
    return ScalarField(spec, "enum", pn.widgets.Select, codec, options=options)


def multi_enum_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    choices = list(spec.schema["items"]["enum"])
    options = {_option_label(c): c for c in choices}
    # An empty selection is an empty list only when the list must be given.
    empty_is_list = spec.required or spec.default is not EMPTY
    codec = Codec(
        lambda v: list(v) if v or empty_is_list else EMPTY, _choices_reader(choices), empty=[]
    )
    return ScalarField(spec, "multi-enum", pn.widgets.MultiChoice, codec, options=options)


def date_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "date", pn.widgets.DatePicker, DATE)


def date_time_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "date-time", pn.widgets.DatetimePicker, DATE_TIME)


def time_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "time", pn.widgets.TimePicker, TIME)


def file_field(spec: FieldSpec, _: FieldContext) -> FieldEditor:
    return ScalarField(spec, "file", pn.widgets.FileInput, BYTES)


def resource_field(spec: FieldSpec, context: FieldContext) -> FieldEditor:
    kind = resource_type(spec.schema)
    names = list(context.resources(kind)) if context.resources else []
    if isinstance(spec.default, str) and spec.default not in names:
        names.insert(0, spec.default)
    codec = Codec(_optional, _text_from_json)
    options = _with_blank(spec, {n: n for n in names})
    return ScalarField(spec, "resource", pn.widgets.Select, codec, options=options)


def _placeholder(spec: FieldSpec) -> dict[str, Any]:
    examples = spec.schema.get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], str):
        return {"placeholder": examples[0]}
    return {}


def _bounds(spec: FieldSpec) -> dict[str, Any]:
    out = {}
    if isinstance(spec.schema.get("minimum"), int | float):
        out["start"] = spec.schema["minimum"]
    if isinstance(spec.schema.get("maximum"), int | float):
        out["end"] = spec.schema["maximum"]
    return out


def resource_type(schema: Mapping[str, Any]) -> str:
    """The resource type a string field picks from ("" when it is not a resource field)."""
    explicit = schema.get("x-resource-type")
    if isinstance(explicit, str) and explicit:
        return explicit
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt.startswith("resource-"):
        return fmt[len("resource-") :]
    return ""
