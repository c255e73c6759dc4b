"""Windmill's bash convention: `name="$1"` lines -> schema and positional arguments."""

from __future__ import annotations

import textwrap

import pytest

from kernels.bash import bash_argv, bash_schema
from kernels.errors import ArgumentError, ScriptError
from kernels.schema import SCHEMA_DIALECT

SCRIPT = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    set -euo pipefail
    # inputs
    name="$1"
    greeting="${2:-Hello there}"
    export count=${3:-3}  # a comment
    target=${4:-"the world"}
    greet() {
      local who="$1"
      echo "$greeting $who"
    }
    greet "$name"
    """
)


def test_schema() -> None:
    assert bash_schema(SCRIPT) == {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "greeting": {"type": "string", "default": "Hello there"},
            "count": {"type": "string", "default": "3"},
            "target": {"type": "string", "default": "the world"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }


def test_schema_without_inputs() -> None:
    assert bash_schema("echo hi\n") == {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_braces_required_marker_and_computed_default() -> None:
    source = 'a="${1}"\nb="${2:?b is needed}"\nc="${3:-$HOME}"\nd="${4-}"\n'
    assert bash_schema(source)["properties"] == {
        "a": {"type": "string"},
        "b": {"type": "string"},
        "c": {"type": "string"},
        "d": {"type": "string", "default": ""},
    }
    assert bash_schema(source)["required"] == ["a", "b"]


def test_properties_follow_positions_not_lines() -> None:
    source = 'second="$2"\nfirst="$1"\n'
    assert list(bash_schema(source)["properties"]) == ["first", "second"]


def test_gap_in_numbering_is_an_error() -> None:
    with pytest.raises(ScriptError) as caught:
        bash_schema('a="$1"\n\nc="$3"\n', "f/ops/run.sh")
    assert caught.value.line == 3
    assert str(caught.value) == (
        "f/ops/run.sh, line 3: `c` reads $3, but no input reads $2; "
        "number positional inputs 1, 2, 3, ... without gaps"
    )


def test_missing_first_position_is_a_gap() -> None:
    with pytest.raises(ScriptError) as caught:
        bash_schema('b="$2"\n')
    assert caught.value.line == 1
    assert "no input reads $1" in str(caught.value)


def test_position_declared_twice() -> None:
    with pytest.raises(ScriptError) as caught:
        bash_schema('a="$1"\nb="$1"\n')
    assert caught.value.line == 2
    assert "line 1 already declares `a` from $1" in str(caught.value)


def test_single_quotes_are_refused_with_the_fix() -> None:
    with pytest.raises(ScriptError) as caught:
        bash_schema("name='$1'\n")
    assert caught.value.line == 1
    assert 'use double quotes: name="$1"' in str(caught.value)


def test_argv_in_position_order() -> None:
    assert bash_argv(SCRIPT, {"target": "you", "name": "Ada", "greeting": "Hi", "count": "2"}) == [
        "Ada",
        "Hi",
        "2",
        "you",
    ]


def test_argv_fills_missing_optional_with_default_and_drops_the_tail() -> None:
    assert bash_argv(SCRIPT, {"name": "Ada"}) == ["Ada", "Hello there", "3", "the world"]
    assert bash_argv('a="$1"\nb="${2:-$HOME}"\nc="$3"\n', {"a": "x"}) == ["x"]
    assert bash_argv('a="$1"\nb="${2:-$HOME}"\nc="$3"\n', {"c": "z"}) == ["", "", "z"]


def test_argv_encodes_non_strings() -> None:
    source = 'a="$1"\nb="$2"\nc="$3"\nd="$4"\ne="$5"\n'
    assert bash_argv(source, {"a": True, "b": 3, "c": [1, "x"], "d": None, "e": {"k": False}}) == [
        "true",
        "3",
        '[1, "x"]',
        "",
        '{"k": false}',
    ]


def test_argv_refuses_unknown_names() -> None:
    with pytest.raises(ArgumentError) as caught:
        bash_argv('name="$1"\n', {"nme": "x"})
    assert caught.value.field == "nme"
    assert str(caught.value) == "argument 'nme': unknown; the script takes name"
