"""The run form: schema -> widgets (snapshot), values both ways, validation messages."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, time
from typing import Any

import panel as pn
import pytest

from kernels.arguments import validate_arguments
from kernels.schema import script_schema
from tests.conftest import ROOT
from widgets.form_nested import JsonField, ListField
from widgets.forms import RunForm

SCRIPT = '''
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from typing import Literal, Optional


class Color(str, Enum):
    RED = "red"
    GREEN = "green"


@dataclass
class Address:
    street: str
    number: int = 1


def main(
    name: str,
    count: int,
    ratio: float,
    enabled: bool,
    level: Literal["low", "high"],
    day: date,
    at: datetime,
    wake: time,
    blob: bytes,
    tags: list[str],
    colors: list[Color],
    address: Address,
    extra: dict,
    anything,
    note: Optional[str] = None,
    flag: bool | None = None,
    greeting: str = "hello",
    shipping: Color = Color.RED,
    limit: int = 10,
    sizes: list[int] = [1, 2],
):
    """Everything a form can show.

    Args:
        name: who to <b>greet</b>
    """
'''
RESOURCES = {"postgresql": ["f/db/main", "f/db/replica"], "s3": ["u/ann/bucket"]}


def every_type_schema() -> dict[str, Any]:
    schema = script_schema(SCRIPT)
    # Formats the signature reader does not produce, but hand-written and flow schemas use.
    schema["properties"]["db"] = {"type": "string", "format": "resource-postgresql"}
    schema["properties"]["bucket"] = {"type": "string", "x-resource-type": "s3"}
    schema["properties"]["body"] = {"type": "string", "format": "textarea"}
    return schema


def every_type_form(**params: Any) -> RunForm:
    return RunForm.from_schema(every_type_schema(), resources=RESOURCES.__getitem__, **params)


def scalar(kind: str, label: str, widget: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "label": label, **extra, "widget": widget, "value": value}


def test_every_schema_type_gets_its_widget():
    form = every_type_form()
    blank = None
    assert form.describe() == {
        "name": scalar("string", "name *", "TextInput", help="who to <b>greet</b>"),
        "count": scalar("integer", "count *", "IntInput"),
        "ratio": scalar("number", "ratio *", "FloatInput"),
        "enabled": scalar("boolean", "enabled *", "Checkbox", False),
        "level": {**scalar("enum", "level *", "Select"), "options": [blank, "low", "high"]},
        "day": scalar("date", "day *", "DatePicker"),
        "at": scalar("date-time", "at *", "DatetimePicker"),
        "wake": scalar("time", "wake *", "TimePicker"),
        "blob": scalar("file", "blob *", "FileInput"),
        "tags": {
            "kind": "list",
            "label": "tags *",
            "widget": "list",
            "item": {"kind": "string", "label": "", "widget": "TextInput"},
            "rows": [],
            "value": [],
        },
        "colors": {
            **scalar("multi-enum", "colors *", "MultiChoice", []),
            "options": ["red", "green"],
        },
        "address": {
            "kind": "fieldset",
            "label": "Address *",
            "widget": "Card",
            "fields": {
                "street": scalar("string", "street *", "TextInput"),
                "number": scalar("integer", "number", "IntInput", 1),
            },
        },
        "extra": scalar("json", "extra *", "CodeEditor"),
        "anything": scalar("json", "anything *", "CodeEditor"),
        "note": scalar("string", "note", "TextInput"),
        "flag": {
            **scalar("optional-boolean", "flag", "Select"),
            "options": [blank, True, False],
        },
        "greeting": scalar("string", "greeting", "TextInput", "hello"),
        "shipping": {**scalar("enum", "shipping", "Select", "red"), "options": ["red", "green"]},
        "limit": scalar("integer", "limit", "IntInput", 10),
        "sizes": {
            "kind": "list",
            "label": "sizes",
            "widget": "list",
            "item": {"kind": "integer", "label": "", "widget": "IntInput"},
            "rows": [scalar("integer", "", "IntInput", 1), scalar("integer", "", "IntInput", 2)],
            "value": [1, 2],
        },
        "db": {
            **scalar("resource", "db", "Select"),
            "options": [blank, "f/db/main", "f/db/replica"],
        },
        "bucket": {**scalar("resource", "bucket", "Select"), "options": [blank, "u/ann/bucket"]},
        "body": scalar("textarea", "body", "TextAreaInput"),
    }


def test_widgets_carry_label_help_and_defaults():
    form = every_type_form()
    name = form.field("name").widget
    assert (name.label, name.description) == ("name *", "who to &lt;b&gt;greet&lt;/b&gt;")
    assert form.field("limit").widget.value == 10
    assert form.field("shipping").widget.value == "red"
    assert form.field("address.number").widget.value == 1
    # Defaults and the always-present values are the whole initial value.
    assert form.value == {
        "enabled": False,
        "tags": [],
        "colors": [],
        "address": {"number": 1},
        "greeting": "hello",
        "shipping": "red",
        "limit": 10,
        "sizes": [1, 2],
    }


def fill_every_field(form: RunForm) -> None:
    """What a user does in the browser: one widget at a time."""
    form.field("name").widget.value = "Ann"
    form.field("count").widget.value = 3
    form.field("ratio").widget.value = 0.5
    form.field("enabled").widget.value = True
    form.field("level").widget.value = "high"
    form.field("day").widget.value = date(2024, 5, 1)
    form.field("at").widget.value = datetime(2024, 5, 1, 9, 30)
    form.field("wake").widget.value = time(7, 15)
    form.field("blob").widget.value = b"\x00\x01binary"
    tags = form.field("tags")
    assert isinstance(tags, ListField)
    tags.add().widget.value = "a"
    tags.add()  # a row added and left empty adds nothing
    tags.add().widget.value = "b"
    form.field("colors").widget.value = ["green", "red"]
    form.field("address.street").widget.value = "Main St"
    form.field("extra").editor.value = '{"k": [1, 2]}'
    form.field("anything").editor.value = "plain words"  # an untyped field takes text
    form.field("flag").widget.value = False
    form.field("db").widget.value = "f/db/replica"
    form.field("bucket").widget.value = "u/ann/bucket"
    form.field("body").widget.value_input = "line 1\nline 2"  # typed, not yet blurred


FILLED = {
    "name": "Ann",
    "count": 3,
    "ratio": 0.5,
    "enabled": True,
    "level": "high",
    "day": "2024-05-01",
    "at": "2024-05-01T09:30:00",
    "wake": "07:15:00",
    "blob": base64.b64encode(b"\x00\x01binary").decode(),
    "tags": ["a", "b"],
    "colors": ["green", "red"],
    "address": {"street": "Main St", "number": 1},
    "extra": {"k": [1, 2]},
    "anything": "plain words",
    "flag": False,
    "greeting": "hello",
    "shipping": "red",
    "limit": 10,
    "sizes": [1, 2],
    "db": "f/db/replica",
    "bucket": "u/ann/bucket",
    "body": "line 1\nline 2",
}


def test_filled_widgets_give_arguments_the_validator_accepts():
    form = every_type_form()
    fill_every_field(form)
    assert form.value == FILLED
    assert validate_arguments(form.value, form.schema) == FILLED
    assert form.validate() == {}
    assert form.errors == {}


def test_assigned_value_is_shown_and_reads_back_unchanged():
    form = every_type_form()
    form.value = FILLED
    assert form.value == FILLED
    assert form.field("day").widget.value == date(2024, 5, 1)
    assert form.field("at").widget.value == datetime(2024, 5, 1, 9, 30)
    assert form.field("blob").widget.value == b"\x00\x01binary"
    assert [row.widget.value for row in form.field("tags").rows] == ["a", "b"]
    assert json.loads(form.field("extra").editor.value) == {"k": [1, 2]}
    # A field not named shows its default: what the script gets when it is left out.
    form.value = {"name": "Bo", "limit": 4}
    assert form.value == {
        "name": "Bo",
        "enabled": False,
        "tags": [],
        "colors": [],
        "address": {"number": 1},
        "greeting": "hello",
        "shipping": "red",
        "limit": 4,
        "sizes": [1, 2],
    }


def test_values_given_to_from_schema_go_over_the_defaults():
    form = RunForm.from_schema(every_type_schema(), values={"limit": 3, "name": "Cy"})
    assert form.value["limit"] == 3
    assert form.value["name"] == "Cy"
    assert form.value["greeting"] == "hello"


def test_optional_fields_left_empty_are_left_out():
    schema = script_schema(
        "def main(a: int | None = None, b: str | None = None, c: list[int] | None = None,"
        " d: dict | None = None, e: bool | None = None): ..."
    )
    form = RunForm.from_schema(schema)
    assert form.value == {}
    assert form.validate() == {}
    form.field("b").widget.value = "x"
    form.field("b").widget.value = ""  # emptied again
    assert form.value == {}


def test_missing_and_bad_fields_are_all_reported_next_to_them():
    form = every_type_form()
    form.field("extra").editor.value = "{oops"
    errors = form.validate()
    assert errors == {
        "name": "required; expected a string",
        "count": "required; expected an integer",
        "ratio": "required; expected a number",
        "level": 'required; expected one of "low", "high"',
        "day": "required; expected a date (YYYY-MM-DD)",
        "at": "required; expected a date and time (ISO 8601, e.g. 2024-05-01T09:30:00Z)",
        "wake": "required; expected a time of day (HH:MM[:SS])",
        "blob": "required; expected base64-encoded bytes",
        "address.street": "required; expected a string",
        "extra": "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)",
        "anything": "required; expected any JSON value",
    }
    assert form.errors == errors
    street = form.field("address.street")
    assert street.error_pane.visible
    assert street.error_pane.object == "required; expected a string"
    assert not form.field("address.number").error_pane.visible
    # Fixing a field takes its message away at once; the others stay.
    form.field("name").widget.value = "Ann"
    assert "name" not in form.errors
    assert not form.field("name").error_pane.visible
    assert form.field("count").error_pane.visible


def test_json_editor_shows_a_parse_error_as_you_type():
    form = RunForm.from_schema(script_schema("def main(extra: dict = {}): ..."))
    editor = form.field("extra")
    assert isinstance(editor, JsonField)
    editor.editor.value_input = '{"a": 1,,}'
    assert editor.error_pane.visible
    assert "not valid JSON" in editor.error_pane.object
    assert editor.editor.annotations == [
        {
            "row": 0,
            "column": 8,
            "text": editor.error_pane.object,
            "type": "error",
        }
    ]
    assert "extra" not in form.value  # bad JSON is not sent as anything
    editor.editor.value_input = '{"a": 1}'
    assert not editor.error_pane.visible
    assert editor.editor.annotations == []
    assert form.value == {"extra": {"a": 1}}
    editor.editor.value_input = "[1]"  # JSON, but not an object: the schema's to say
    assert form.validate() == {"extra": "expected an object, got [1] (an array)"}


def test_list_editor_adds_removes_and_points_errors_at_the_right_row():
    schema = {
        "type": "object",
        "properties": {"ns": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
        "required": ["ns"],
    }
    form = RunForm.from_schema(schema)
    ns = form.field("ns")
    assert isinstance(ns, ListField)
    ns.add_button.clicks += 1  # the Add button, as a click
    ns.add(5)
    ns.add(-1)
    assert form.value == {"ns": [5, -1]}
    # The value's item 1 is the third row: the empty first row is not part of the value.
    assert form.validate() == {"ns.1": "expected a value of at least 0, got -1 (an integer)"}
    assert [row.error_pane.visible for row in ns.rows] == [False, False, True]
    ns.remove(0)
    assert [row.spec.path for row in ns.rows] == ["ns.0", "ns.1"]
    assert form.value == {"ns": [5, -1]}
    ns.remove(1)
    assert form.value == {"ns": [5]}
    assert form.errors == {}


def test_list_of_objects_from_the_example_script_round_trips():
    path = ROOT / "examples" / "scripts" / "order_summary.py"
    schema = script_schema(path.read_text(), str(path))
    form = RunForm.from_schema(schema)
    form.field("order.order_id").widget.value = 7
    form.field("order.customer").widget.value = "Ann"
    form.field("order.lines").add()
    form.field("order.lines.0.sku").widget.value = "AB-1"
    assert form.validate() == {"order.lines.0.quantity": "required; expected an integer"}
    assert form.field("order.lines.0.quantity").error_pane.visible
    form.field("order.lines.0.quantity").widget.value = 2
    form.field("order.lines.0.unit_price").widget.value = 9.5
    args = {
        "order": {
            "order_id": 7,
            "customer": "Ann",
            "lines": [{"sku": "AB-1", "quantity": 2, "unit_price": 9.5}],
        },
        "shipping": "standard",
        "tax_rate": 0.2,
    }
    assert form.value == args
    assert form.validate() == {}
    assert validate_arguments(form.value, schema) == args
    assert form.field("order.lines.0").panel.title == "Line 1"


def test_values_a_field_cannot_show_become_its_errors():
    form = every_type_form(values={"count": "three", "day": "May 1st", "level": "medium"})
    assert form.field("count").widget.value is None
    errors = form.validate()
    assert errors["count"] == 'expected an integer, got "three"'
    assert errors["day"] == 'expected a date (YYYY-MM-DD), got "May 1st"'
    assert errors["level"] == 'expected one of "low", "high", got "medium"'


def test_a_resource_no_longer_offered_stays_selected():
    form = every_type_form(values={"db": "f/db/old"})
    assert form.field("db").widget.value == "f/db/old"
    assert "f/db/old" in form.field("db").widget.options.values()
    assert form.value["db"] == "f/db/old"


def test_overrides_pick_another_widget_or_field_kind():
    schema = script_schema(
        "from dataclasses import dataclass\n"
        "@dataclass\nclass P:\n    x: int\n"
        "def main(loud: bool = False, p: P = None, note: str = ''): ..."
    )
    form = RunForm.from_schema(
        schema, overrides={"loud": pn.widgets.Switch, "p": "json", "note": "textarea"}
    )
    assert type(form.field("loud").widget) is pn.widgets.Switch
    assert isinstance(form.field("p"), JsonField)
    assert type(form.field("note").widget) is pn.widgets.TextAreaInput
    form.field("loud").widget.value = True
    form.field("p").editor.value = '{"x": 1}'
    assert form.value == {"loud": True, "p": {"x": 1}}
    with pytest.raises(ValueError, match=r"override for field 'p': unknown field kind 'tree'"):
        RunForm.from_schema(schema, overrides={"p": "tree"})


def test_long_default_text_gets_a_text_area():
    form = RunForm.from_schema(script_schema(f"def main(t: str = {'x' * 100!r}): ..."))
    assert type(form.field("t").widget) is pn.widgets.TextAreaInput


def test_a_new_schema_keeps_the_values_of_fields_still_there():
    form = RunForm.from_schema(script_schema("def main(a: int, b: str = 'x'): ..."))
    form.field("a").widget.value = 4
    form.field("b").widget.value = "kept?"
    form.schema = script_schema("def main(a: int, c: float = 1.5): ...")
    assert form.value == {"a": 4, "c": 1.5}
    assert list(form.fields) == ["a", "c"]
    assert form.__panel__().objects[0] is form.fields["a"].panel


def test_script_text_in_labels_and_descriptions_is_not_markup():
    schema = {
        "type": "object",
        "description": "<img src=x onerror=alert(1)>",
        "properties": {
            "o": {
                "type": "object",
                "title": "<script>alert(1)</script>",
                "properties": {"x": {"type": "object", "description": "<b>x</b>"}},
            }
        },
    }
    form = RunForm.from_schema(schema)
    assert form.__panel__().objects[0].object == "<p>&lt;img src=x onerror=alert(1)&gt;</p>"
    assert form.field("o").panel.title == "&lt;script&gt;alert(1)&lt;/script&gt;"
    label_row = form.field("o.x").panel.objects[0]
    assert "<b>" not in str(label_row.objects[1].value)


@pytest.mark.parametrize(
    "path",
    sorted(p.name for p in (ROOT / "examples" / "scripts").glob("*.py")),
)
def test_example_scripts_build_forms_whose_defaults_validate(path: str):
    source = (ROOT / "examples" / "scripts" / path).read_text()
    schema = script_schema(source, path)
    form = RunForm.from_schema(schema)
    assert set(form.fields) == set(schema["properties"])
    # With nothing typed in, only required fields without a default can be wrong.
    assert {path.split(".")[0] for path in form.validate()} <= set(schema["required"])


def test_ordering_follows_the_schema():
    form = every_type_form()
    assert list(form.fields) == list(every_type_schema()["properties"])


def test_the_whole_form_renders_to_bokeh_models():
    # Building the models catches what plain params do not (a bad option, a bad layout).
    form = every_type_form()
    fill_every_field(form)
    form.validate()
    root = pn.panel(form).get_root()
    assert len(list(root.select({"type": pn.models.ace.AcePlot}))) == 2  # extra, anything
