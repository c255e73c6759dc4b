"""CLI `NAME=VALUE` coercion and argument validation against an inferred schema."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from kernels.arguments import coerce_cli_values, validate_arguments
from kernels.errors import ArgumentError
from kernels.schema import script_schema

SCRIPT = '''
import datetime
from typing import Any, Literal
from dataclasses import dataclass

@dataclass
class Line:
    sku: str
    qty: int = 1

@dataclass
class Order:
    items: list[Line]
    note: str = ""

def main(
    name: str,
    count: int = 1,
    ratio: float = 0.5,
    loud: bool = False,
    tags: list[str] = [],
    extra: dict = {},
    reason: Literal["damaged", "late", "other"] = "other",
    anything: Any = None,
    either: int | str = 0,
    day: datetime.date | None = None,
    at: datetime.datetime | None = None,
    raw: bytes = b"",
    order: Order | None = None,
    color: str = "red",
):
    """Args:
        name: Who.
    """
'''


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return script_schema(textwrap.dedent(SCRIPT))


def refused(call: Any, *args: Any) -> ArgumentError:
    with pytest.raises(ArgumentError) as caught:
        call(*args)
    return caught.value


# -- coerce_cli_values ------------------------------------------------------------------


def test_coerces_each_type(schema: dict[str, Any]) -> None:
    pairs = [
        "name=Ada=Lovelace",  # split at the first "="
        "count=3",
        "ratio=-2.5",
        "loud=YES",
        'tags=["a", "b"]',
        'extra={"k": 1}',
        "reason=late",
        "anything=[1, 2]",
        "either=7",
        "day=2024-05-01",
        "raw=aGk=",
    ]
    assert coerce_cli_values(pairs, schema) == {
        "name": "Ada=Lovelace",
        "count": 3,
        "ratio": -2.5,
        "loud": True,
        "tags": ["a", "b"],
        "extra": {"k": 1},
        "reason": "late",
        "anything": [1, 2],
        "either": 7,
        "day": "2024-05-01",
        "raw": "aGk=",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("OFF", False),
        ("no", False),
    ],
)
def test_boolean_words(schema: dict[str, Any], text: str, value: bool) -> None:
    assert coerce_cli_values([f"loud={text}"], schema) == {"loud": value}


def test_any_keeps_text_that_is_not_json(schema: dict[str, Any]) -> None:
    assert coerce_cli_values(["anything=hello world", "either=abc", "name=42"], schema) == {
        "anything": "hello world",
        "either": "abc",
        "name": "42",
    }


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("count=abc", "argument 'count': expected an integer, got 'abc'"),
        ("count=3.5", "argument 'count': expected an integer, got '3.5'"),
        ("ratio=fast", "argument 'ratio': expected a number, got 'fast'"),
        ("ratio=nan", "argument 'ratio': expected a number, got 'nan'"),
        (
            "loud=maybe",
            "argument 'loud': expected true or false (or yes/no, on/off, 1/0), got 'maybe'",
        ),
        ("tags=a,b", "argument 'tags': expected a JSON array such as [1, 2], got 'a,b'"),
        (
            'tags={"a": 1}',
            "argument 'tags': expected a JSON array such as [1, 2], got '{\"a\": 1}'",
        ),
        (
            "extra=[1]",
            "argument 'extra': expected a JSON object such as {\"key\": \"value\"}, got '[1]'",
        ),
    ],
)
def test_bad_cli_values(schema: dict[str, Any], pair: str, message: str) -> None:
    error = refused(coerce_cli_values, [pair], schema)
    assert str(error) == message
    assert error.field == pair.split("=")[0]
    assert error.value == pair.split("=", 1)[1]


def test_pair_without_equals(schema: dict[str, Any]) -> None:
    error = refused(coerce_cli_values, ["count3"], schema)
    assert (
        str(error)
        == "argument 'count3': expected NAME=VALUE (for example -a count=3), got 'count3'"
    )
    assert error.expected == "NAME=VALUE"


def test_unknown_cli_name_suggests_the_closest(schema: dict[str, Any]) -> None:
    error = refused(coerce_cli_values, ["colour=blue"], schema)
    assert error.field == "colour"
    assert str(error).startswith(
        "argument 'colour': unknown; main() takes name, count, ratio, loud, "
    )
    assert str(error).endswith(", color (did you mean 'color'?)")


def test_name_given_twice(schema: dict[str, Any]) -> None:
    error = refused(coerce_cli_values, ["count=1", "count=2"], schema)
    assert str(error) == "argument 'count': given twice; give each argument once"


def test_open_schema_accepts_unknown_names() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "additionalProperties": True,
    }
    assert coerce_cli_values(["n=1", "m=[2]", "s=x"], schema) == {"n": 1, "m": [2], "s": "x"}


# -- validate_arguments -----------------------------------------------------------------


def test_valid_arguments_are_returned_without_defaults(schema: dict[str, Any]) -> None:
    args = {
        "name": "Ada",
        "order": {"items": [{"sku": "A1"}]},
        "at": "2024-05-01T09:30:00Z",
        "raw": "aGk=",
    }
    result = validate_arguments(args, schema)
    assert result == args
    assert type(result) is dict
    assert "count" not in result


def test_wrong_type(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"name": "x", "count": "abc"}, schema)
    assert str(error) == "argument 'count': expected an integer, got \"abc\" (a string)"
    assert (error.field, error.value, error.expected) == ("count", "abc", "an integer")


def test_boolean_is_not_an_integer(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"name": "x", "count": True}, schema)
    assert str(error) == "argument 'count': expected an integer, got true (a boolean)"


def test_missing_required(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"count": 2}, schema)
    assert str(error) == "argument 'name': missing; main() requires it (expected a string)"
    assert (error.field, error.value, error.expected) == ("name", None, "a string")


def test_unknown_argument_is_reported_first(schema: dict[str, Any]) -> None:
    small = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "color": {"type": "string"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    error = refused(validate_arguments, {"count": "x", "colour": "red"}, small)
    assert (
        str(error)
        == "argument 'colour': unknown; main() takes name, count, color (did you mean 'color'?)"
    )
    assert (error.field, error.value) == ("colour", "red")


def test_unknown_argument_without_a_close_name() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    error = refused(validate_arguments, {"zzz": 1}, schema)
    assert str(error) == "argument 'zzz': unknown; main() takes no arguments"


def test_enum(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"name": "x", "reason": "lost"}, schema)
    assert (
        str(error) == 'argument \'reason\': expected one of "damaged", "late", "other", got "lost"'
    )
    assert error.expected == 'one of "damaged", "late", "other"'


def test_enum_beats_type_for_the_same_value(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"name": "x", "reason": 3}, schema)
    assert str(error) == 'argument \'reason\': expected one of "damaged", "late", "other", got 3'


def test_nested_value_has_a_dotted_field(schema: dict[str, Any]) -> None:
    args = {"name": "x", "order": {"items": [{"sku": "A"}, {"sku": "B", "qty": "two"}]}}
    error = refused(validate_arguments, args, schema)
    assert str(error) == "argument 'order.items.1.qty': expected an integer, got \"two\" (a string)"
    assert error.field == "order.items.1.qty"


def test_nested_missing_and_unknown_fields_name_the_model(schema: dict[str, Any]) -> None:
    missing = refused(validate_arguments, {"name": "x", "order": {"items": [{"qty": 2}]}}, schema)
    assert (
        str(missing)
        == "argument 'order.items.0.sku': missing; Line requires it (expected a string)"
    )
    unknown = refused(
        validate_arguments, {"name": "x", "order": {"items": [], "notes": ""}}, schema
    )
    assert (
        str(unknown)
        == "argument 'order.notes': unknown; Order takes items, note (did you mean 'note'?)"
    )


def test_union_names_each_choice(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"name": "x", "either": [1]}, schema)
    assert str(error) == "argument 'either': expected an integer or a string, got [1] (an array)"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("day", "2024-13-01", "a date (YYYY-MM-DD)"),
        ("at", "2024-05-01", "a date and time (ISO 8601, e.g. 2024-05-01T09:30:00Z)"),
        ("at", "yesterday", "a date and time (ISO 8601, e.g. 2024-05-01T09:30:00Z)"),
        ("raw", "not base64!", "base64-encoded bytes"),
    ],
)
def test_formats_and_base64(schema: dict[str, Any], name: str, value: str, expected: str) -> None:
    error = refused(validate_arguments, {"name": "x", name: value}, schema)
    assert str(error) == f"argument '{name}': expected {expected}, got \"{value}\" (a string)"
    assert (error.field, error.value, error.expected) == (name, value, expected)


def test_array_items(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, {"name": "x", "tags": ["a", 2]}, schema)
    assert str(error) == "argument 'tags.1': expected a string, got 2 (an integer)"


def test_arguments_that_are_not_an_object(schema: dict[str, Any]) -> None:
    error = refused(validate_arguments, ["Ada"], schema)
    assert error.field == "(arguments)"
    assert (
        str(error)
        == "argument '(arguments)': expected an object of named arguments, got [\"Ada\"] (an array)"
    )


def test_missing_are_reported_in_parameter_order() -> None:
    schema = script_schema("def main(b: int, a: int, c: str = 'x'): pass")
    error = refused(validate_arguments, {"c": 5}, schema)
    assert error.field == "b"


def test_constraint_from_a_hand_written_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    error = refused(validate_arguments, {"n": 0}, schema)
    assert str(error) == "argument 'n': expected a value of at least 1, got 0 (an integer)"


def test_cli_then_validate_round_trip(schema: dict[str, Any]) -> None:
    args = coerce_cli_values(["name=Ada", "count=2", "day=2024-02-29"], schema)
    assert validate_arguments(args, schema) == {"name": "Ada", "count": 2, "day": "2024-02-29"}
