"""Windmill's bash convention: inputs are top-level `name="$1"` lines.

```bash
name="$1"
greeting="${2:-Hello there}"
```

declares two string inputs, `name` (required) and `greeting` (default "Hello there"),
passed as positional arguments: `bash script.sh ARG1 ARG2 ...`. Only unindented lines
count, so a function reading its own `$1` is not mistaken for a script input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernels.errors import ArgumentError, ScriptError
from kernels.schema import SCHEMA_DIALECT

# name="$1", name=$1, name="${12}", name="${2:-default}", name="${2-default}",
# name="${1:?message}", optionally after export/readonly/declare/local.
_DECLARATION = re.compile(
    r"""^(?:(?:export|readonly|declare|local)\s+)?(?P<name>[A-Za-z_]\w*)=(?P<quote>["']?)(?P<body>\$"""
    r"""(?:(?P<digit>\d)|\{(?P<number>\d+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}))(?P=quote)\s*;?\s*(?:\#.*)?$"""
)


@dataclass(frozen=True)
class BashInput:
    """One positional input: `name` reads `$position`, on `line` of the script."""

    name: str
    position: int
    line: int
    optional: bool
    default: str | None  # None when there is none, or it is computed by bash (`${2:-$HOME}`)


def bash_inputs(source: str, path: str = "") -> list[BashInput]:
    """The script's positional inputs in position order; `ScriptError` for gaps or clashes."""
    inputs: dict[int, BashInput] = {}
    names: dict[str, BashInput] = {}
    for number, text in enumerate(source.splitlines(), start=1):
        match = _DECLARATION.match(text.rstrip())
        if match is None:
            continue
        name = match["name"]
        if match["quote"] == "'":
            raise ScriptError(
                f"single quotes stop bash from expanding $-parameters, so `{name}` would get the "
                f'literal text; use double quotes: {name}="{match["body"]}"',
                path=path,
                line=number,
            )
        position = int(match["digit"] or match["number"])
        if position == 0:
            continue  # $0 is the script's own name, not an input
        op, default = match["op"] or "", match["default"]
        optional = op.endswith("-")
        if optional and default is not None:
            default = _unquote(default)
            if "$" in default or "`" in default:
                default = None  # computed when the script runs: nothing fixed to show
        found = BashInput(name, position, number, optional, default if optional else None)
        for clash in (inputs.get(position), names.get(name)):
            if clash is not None:
                raise ScriptError(
                    f"`{name}` reads ${position}, but line {clash.line} already declares "
                    f"`{clash.name}` from ${clash.position}; declare each input once, from its own position",
                    path=path,
                    line=number,
                )
        inputs[position] = names[name] = found
    ordered = [inputs[p] for p in sorted(inputs)]
    for expected, found in enumerate(ordered, start=1):
        if found.position != expected:
            raise ScriptError(
                f"`{found.name}` reads ${found.position}, but no input reads ${expected}; "
                "number positional inputs 1, 2, 3, ... without gaps",
                path=path,
                line=found.line,
            )
    return ordered


def bash_schema(source: str, path: str = "") -> dict[str, Any]:
    """The JSON Schema (2020-12) of a bash script's inputs: strings, in position order."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for item in bash_inputs(source, path):
        properties[item.name] = {"type": "string"}
        if item.default is not None:
            properties[item.name]["default"] = item.default
        if not item.optional:
            required.append(item.name)
    return {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def bash_argv(source: str, args: Mapping[str, Any]) -> list[str]:
    """The positional arguments for `bash script.sh ...`, from named `args`.

    A missing input gets its default, or "" when a later input is given (so later ones
    keep their positions); trailing missing inputs are left off. Non-string values are
    JSON-encoded (`true`, `3`, `[1, 2]`).
    """
    inputs = bash_inputs(source)
    known = [item.name for item in inputs]
    for name in args:
        if name not in known:
            takes = ", ".join(known) or "no arguments"
            raise ArgumentError(
                name, f"unknown; the script takes {takes}", value=args[name], expected=takes
            )
    values: list[str | None] = []
    for item in inputs:
        values.append(_text(args[item.name]) if item.name in args else item.default)
    while values and values[-1] is None:
        values.pop()
    return ["" if value is None else value for value in values]


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)  # also turns booleans into true / false
