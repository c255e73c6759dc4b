"""`main(...)` signature -> JSON Schema, read statically (whole-schema snapshots)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from kernels.errors import ScriptError
from kernels.schema import NO_MAIN, SCHEMA_DIALECT, main_parameters, script_schema


def schema_of(source: str) -> dict[str, Any]:
    return script_schema(textwrap.dedent(source), "u/me/script.py")


def envelope(properties: dict[str, Any], required: list[str], **top: Any) -> dict[str, Any]:
    """The object schema every script gets around its properties."""
    return {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        **top,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def test_scalars_in_parameter_order() -> None:
    assert schema_of(
        "def main(name: str, count: int, ratio: float, dry_run: bool): pass"
    ) == envelope(
        {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "dry_run": {"type": "boolean"},
        },
        ["name", "count", "ratio", "dry_run"],
    )


def test_no_parameters() -> None:
    assert schema_of("def main():\n    return 1\n") == envelope({}, [])


def test_containers() -> None:
    source = (
        "def main(a: dict, b: dict[str, int], c: list[str], d: tuple[int, ...], e: set[str]): pass"
    )
    assert schema_of(source) == envelope(
        {
            "a": {"type": "object"},
            "b": {"type": "object", "additionalProperties": {"type": "integer"}},
            "c": {"type": "array", "items": {"type": "string"}},
            "d": {"type": "array", "items": {"type": "integer"}},
            "e": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
        ["a", "b", "c", "d", "e"],
    )


def test_typing_generics_with_prefixes_and_aliases() -> None:
    source = """
        import typing
        import typing as t
        from typing import Dict, List, Sequence
        from typing import Optional as Opt

        def main(a: List[int], b: Dict[str, float], c: Sequence[bool], d: typing.List[str],
                 e: t.Dict[str, str], f: Opt[int]):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "a": {"type": "array", "items": {"type": "integer"}},
            "b": {"type": "object", "additionalProperties": {"type": "number"}},
            "c": {"type": "array", "items": {"type": "boolean"}},
            "d": {"type": "array", "items": {"type": "string"}},
            "e": {"type": "object", "additionalProperties": {"type": "string"}},
            "f": {"type": "integer"},
        },
        ["a", "b", "c", "d", "e"],
    )


def test_nested_containers_and_fixed_tuple() -> None:
    source = "def main(grid: list[list[int]], pair: tuple[str, int], rows: list[dict[str, int | None]]): pass"
    assert schema_of(source) == envelope(
        {
            "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            },
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
            },
        },
        ["grid", "pair", "rows"],
    )


def test_bare_list_takes_item_type_from_default() -> None:
    source = "def main(a: list = [1, 2], b: list = ['x', 3], c: list = [], d=['p', 'q']): pass"
    assert schema_of(source) == envelope(
        {
            "a": {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
            "b": {"type": "array", "default": ["x", 3]},
            "c": {"type": "array", "default": []},
            "d": {"type": "array", "items": {"type": "string"}, "default": ["p", "q"]},
        },
        [],
    )


def test_dates_times_and_bytes() -> None:
    source = """
        import datetime
        import datetime as dt
        from datetime import date, time

        def main(a: datetime.datetime, b: dt.date, c: date, d: time, e: dt.time, f: bytes): pass
    """
    assert schema_of(source) == envelope(
        {
            "a": {"type": "string", "format": "date-time"},
            "b": {"type": "string", "format": "date"},
            "c": {"type": "string", "format": "date"},
            "d": {"type": "string", "format": "time"},
            "e": {"type": "string", "format": "time"},
            "f": {"type": "string", "contentEncoding": "base64"},
        },
        ["a", "b", "c", "d", "e", "f"],
    )


def test_from_datetime_import_datetime() -> None:
    source = "from datetime import datetime\ndef main(at: datetime): pass\n"
    assert schema_of(source) == envelope({"at": {"type": "string", "format": "date-time"}}, ["at"])


def test_literal() -> None:
    source = """
        from typing import Literal

        def main(reason: Literal["damaged", "late"], level: Literal[1, 2, 3] = 2,
                 mixed: Literal["a", 1] = "a", maybe: Literal["x", None] = None):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "reason": {"type": "string", "enum": ["damaged", "late"]},
            "level": {"type": "integer", "enum": [1, 2, 3], "default": 2},
            "mixed": {"enum": ["a", 1], "default": "a"},
            "maybe": {"type": "string", "enum": ["x"]},
        },
        ["reason"],
    )


def test_enum_classes_and_enum_default() -> None:
    source = """
        from enum import Enum, StrEnum, auto

        class Color(str, Enum):
            RED = "red"
            GREEN = "green"

        class Size(StrEnum):
            SMALL = auto()
            LARGE = auto()

        class Shape(Enum):
            ROUND = "round"
            SQUARE = "square"

        def main(color: Color = Color.RED, size: Size = Size.LARGE, shape: Shape = Shape.SQUARE, tint=Color.GREEN):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
            "size": {"type": "string", "enum": ["small", "large"], "default": "large"},
            "shape": {"type": "string", "enum": ["round", "square"], "default": "square"},
            "tint": {"type": "string", "enum": ["red", "green"], "default": "green"},
        },
        [],
    )


def test_optional_forms_are_not_required() -> None:
    source = """
        from typing import Optional, Union

        def main(a: Optional[int], b: str | None, c: Union[float, None], d: None | bool, e: int | None = 5):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "a": {"type": "integer"},
            "b": {"type": "string"},
            "c": {"type": "number"},
            "d": {"type": "boolean"},
            "e": {"type": "integer", "default": 5},
        },
        [],
    )


def test_union_of_several_types_is_any_of() -> None:
    source = """
        from typing import Union

        def main(a: Union[int, str], b: int | str | None, c: int | Union[str, bool]): pass
    """
    assert schema_of(source) == envelope(
        {
            "a": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "c": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}]},
        },
        ["a", "c"],
    )


def test_literal_defaults() -> None:
    source = "def main(n: int = -3, x: float = 1.5, s: str = 'hi', t: list[int] = (1, 2), o: dict = {'k': [1]}, f: bool = True, raw: bytes = b'hi'): pass"
    assert schema_of(source) == envelope(
        {
            "n": {"type": "integer", "default": -3},
            "x": {"type": "number", "default": 1.5},
            "s": {"type": "string", "default": "hi"},
            "t": {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
            "o": {"type": "object", "default": {"k": [1]}},
            "f": {"type": "boolean", "default": True},
            "raw": {"type": "string", "contentEncoding": "base64", "default": "aGk="},
        },
        [],
    )


def test_non_literal_and_none_defaults_are_optional_without_default() -> None:
    source = """
        import datetime

        LIMIT = 10

        def main(at: datetime.datetime = datetime.datetime.now(), limit: int = LIMIT, note: str = None, x=None):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "at": {"type": "string", "format": "date-time"},
            "limit": {"type": "integer"},
            "note": {"type": "string"},
            "x": {},
        },
        [],
    )


def test_any_and_missing_annotations_infer_from_default() -> None:
    source = """
        from typing import Any

        def main(a, b: Any, c=3, d: Any = "x", e=2.5, f=False, g={"k": 1}):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "a": {},
            "b": {},
            "c": {"type": "integer", "default": 3},
            "d": {"type": "string", "default": "x"},
            "e": {"type": "number", "default": 2.5},
            "f": {"type": "boolean", "default": False},
            "g": {"type": "object", "default": {"k": 1}},
        },
        ["a", "b"],
    )


def test_unknown_third_party_type_is_any() -> None:
    source = "import pandas as pd\ndef main(frame: pd.DataFrame, n: 'np.int64' = 3): pass\n"
    assert schema_of(source) == envelope(
        {"frame": {}, "n": {"type": "integer", "default": 3}}, ["frame"]
    )


def test_dataclass() -> None:
    source = """
        import dataclasses
        from dataclasses import dataclass, field

        @dataclass
        class Point:
            x: float
            y: float = 0.0
            tags: list[str] = field(default_factory=list)
            label: str = field(default="origin")

        @dataclasses.dataclass(frozen=True)
        class Box:
            corner: Point
            size: int = 1

        def main(box: Box): pass
    """
    point = {
        "type": "object",
        "title": "Point",
        "properties": {
            "x": {"type": "number"},
            "y": {"type": "number", "default": 0.0},
            "tags": {"type": "array", "items": {"type": "string"}},
            "label": {"type": "string", "default": "origin"},
        },
        "required": ["x"],
        "additionalProperties": False,
    }
    assert schema_of(source) == envelope(
        {
            "box": {
                "type": "object",
                "title": "Box",
                "properties": {"corner": point, "size": {"type": "integer", "default": 1}},
                "required": ["corner"],
                "additionalProperties": False,
            }
        },
        ["box"],
    )


def test_pydantic_model_with_field_descriptions_and_inheritance() -> None:
    source = """
        from typing import ClassVar
        import pydantic
        from pydantic import BaseModel, Field

        class Base(pydantic.BaseModel):
            id: int = Field(description="Order number")

        class Order(Base):
            kind: ClassVar[str] = "order"
            _secret: str = "x"
            customer: str = Field(..., description="Who ordered")
            qty: int = Field(1, description="How many")
            note: str | None = None
            items: list[str] = Field(default_factory=list)

        def main(order: Order): pass
    """
    assert schema_of(source) == envelope(
        {
            "order": {
                "type": "object",
                "title": "Order",
                "properties": {
                    "id": {"type": "integer", "description": "Order number"},
                    "customer": {"type": "string", "description": "Who ordered"},
                    "qty": {"type": "integer", "default": 1, "description": "How many"},
                    "note": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "customer"],
                "additionalProperties": False,
            }
        },
        ["order"],
    )


def test_nested_and_recursive_models() -> None:
    source = """
        from __future__ import annotations
        from pydantic import BaseModel

        class Line(BaseModel):
            sku: str
            qty: int = 1

        class Node(BaseModel):
            lines: list[Line]
            children: list[Node] = []

        def main(tree: Node): pass
    """
    line = {
        "type": "object",
        "title": "Line",
        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "default": 1}},
        "required": ["sku"],
        "additionalProperties": False,
    }
    assert schema_of(source) == envelope(
        {
            "tree": {
                "type": "object",
                "title": "Node",
                "properties": {
                    "lines": {"type": "array", "items": line},
                    "children": {
                        "type": "array",
                        "items": {"type": "object", "title": "Node"},
                        "default": [],
                    },
                },
                "required": ["lines"],
                "additionalProperties": False,
            }
        },
        ["tree"],
    )


def test_plain_class_is_any() -> None:
    source = "class Thing:\n    x: int\n\ndef main(thing: Thing): pass\n"
    assert schema_of(source) == envelope({"thing": {}}, ["thing"])


def test_docstring_args_become_descriptions() -> None:
    source = '''
        def main(name: str, count: int = 1, loud=False):
            """Greet someone,
            politely.

            Longer text that is not the summary.

            Args:
                name: Who to greet; this description
                    goes on over two lines.
                count (int): How many times.
                loud: Shout.

            Returns:
                The greeting.
            """
    '''
    assert schema_of(source) == envelope(
        {
            "name": {
                "type": "string",
                "description": "Who to greet; this description goes on over two lines.",
            },
            "count": {"type": "integer", "default": 1, "description": "How many times."},
            "loud": {"type": "boolean", "default": False, "description": "Shout."},
        },
        ["name"],
        description="Greet someone, politely.",
    )


def test_docstring_starting_with_args_has_no_summary() -> None:
    source = '''
        def main(x: int):
            """Args:
                x: The x.
            """
    '''
    assert schema_of(source) == envelope({"x": {"type": "integer", "description": "The x."}}, ["x"])


def test_async_main() -> None:
    assert schema_of("async def main(url: str, retries: int = 2): pass") == envelope(
        {"url": {"type": "string"}, "retries": {"type": "integer", "default": 2}}, ["url"]
    )


def test_string_annotations_and_future_import() -> None:
    source = """
        from __future__ import annotations
        from typing import Optional

        def main(a: "int", b: "list[str]", c: "Optional[float]" = None, d: dict[str, "bool"] = {}):
            pass
    """
    assert schema_of(source) == envelope(
        {
            "a": {"type": "integer"},
            "b": {"type": "array", "items": {"type": "string"}},
            "c": {"type": "number"},
            "d": {"type": "object", "additionalProperties": {"type": "boolean"}, "default": {}},
        },
        ["a", "b"],
    )


def test_helpers_star_args_and_keyword_only() -> None:
    source = """
        def helper(secret: str) -> str:
            return secret

        def main(a: int, *args, b: str, c: bool = True, **kwargs):
            def inner(z: int): ...
            return helper(b)
    """
    assert schema_of(source) == envelope(
        {
            "a": {"type": "integer"},
            "b": {"type": "string"},
            "c": {"type": "boolean", "default": True},
        },
        ["a", "b"],
    )
    assert main_parameters(textwrap.dedent(source)) == ["a", "b", "c"]


def test_last_def_main_wins_and_nested_main_is_ignored() -> None:
    source = """
        class Tool:
            def main(self, ignored: int): ...

        def main(old: int): ...

        def main(new: str): ...

        main = wrap(main)
    """
    assert schema_of(source) == envelope({"new": {"type": "string"}}, ["new"])


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ScriptError) as caught:
        script_schema("import os\n\ndef main(x: int:\n    pass\n", "u/me/broken.py")
    assert caught.value.line == 3
    assert caught.value.path == "u/me/broken.py"
    assert str(caught.value).startswith("u/me/broken.py, line 3: syntax error: ")
    assert "def main(x: int:" in str(caught.value)


def test_no_main() -> None:
    with pytest.raises(ScriptError) as caught:
        script_schema("def run(x: int): pass\n", "f/ops/job.py")
    assert caught.value.line is None
    assert str(caught.value) == f"f/ops/job.py: {NO_MAIN}"
    assert "no function named `main` at the top level" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "line", "what"),
    [
        ("x = 1\nmain = 3\n", 2, "assigned a value"),
        ("class main:\n    pass\n", 1, "a class"),
        ("from tools import main\n", 1, "imported from another module"),
    ],
)
def test_main_that_is_not_a_function(source: str, line: int, what: str) -> None:
    with pytest.raises(ScriptError) as caught:
        script_schema(source, "s.py")
    assert caught.value.line == line
    assert f"`main` is {what}" in str(caught.value)
    assert "def main(" in str(caught.value)


def test_unreadable_string_annotation() -> None:
    with pytest.raises(ScriptError) as caught:
        script_schema("def main(\n    x: 'list[',\n): pass\n")
    assert caught.value.line == 2
    assert "cannot read the annotation 'list['" in str(caught.value)


def test_annotated_and_literal_of_enum_members() -> None:
    source = """
        from enum import Enum
        from typing import Annotated, Literal

        class Mode(Enum):
            FAST = "fast"
            SLOW = "slow"

        def main(n: Annotated[int, "a count"], mode: Literal[Mode.FAST] = Mode.FAST): pass
    """
    assert schema_of(source) == envelope(
        {
            "n": {"type": "integer"},
            "mode": {"type": "string", "enum": ["fast"], "default": "fast"},
        },
        ["n"],
    )


def test_generated_schemas_are_valid_json_schema() -> None:
    source = """
        import datetime
        from typing import Literal
        from pydantic import BaseModel

        class Line(BaseModel):
            sku: str
            children: list[Line] = []

        def main(a: tuple[int, str], b: Literal["x", 1], c: list[Line], d: dict[str, int | None],
                 e: datetime.date | None = None, f: bytes = b"", g: set[str] = {"b", "a"}):
            pass
    """
    schema = schema_of(source)
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["g"] == {
        "type": "array",
        "items": {"type": "string"},
        "uniqueItems": True,
        "default": ["a", "b"],
    }


def test_resource_types_follow_windmills_dict_alias_convention() -> None:
    schema = schema_of(
        """
        postgresql = dict
        Settings = dict[str, int]

        def main(db: postgresql, settings: Settings, extra: dict):
            ...
        """
    )
    assert schema["properties"] == {
        "db": {"type": "string", "format": "resource-postgresql"},
        "settings": {},  # a parameterised alias is not a resource type
        "extra": {"type": "object"},
    }
