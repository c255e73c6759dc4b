"""Arguments on the host side: CLI `NAME=VALUE` coercion and validation against a schema.

The schema is the one `kernels.schema.script_schema` infers (or a flow's input schema).
Validation never fills in defaults: `main`'s own defaults apply when a name is absent,
so the run record shows what the caller actually gave.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

from kernels.errors import ArgumentError

WHOLE = "(arguments)"  # the `field` of an error about the arguments as a whole

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")

_TYPE_TEXT = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_FORMAT_TEXT = {
    "date": "a date (YYYY-MM-DD)",
    "date-time": "a date and time (ISO 8601, e.g. 2024-05-01T09:30:00Z)",
    "time": "a time of day (HH:MM[:SS])",
}
# How a failed constraint reads after "expected ..."; {0} is the keyword's value.
_LIMIT_TEXT = {
    "minimum": "a value of at least {0}",
    "maximum": "a value of at most {0}",
    "exclusiveMinimum": "a value above {0}",
    "exclusiveMaximum": "a value below {0}",
    "minLength": "at least {0} characters",
    "maxLength": "at most {0} characters",
    "minItems": "at least {0} items",
    "maxItems": "at most {0} items",
    "pattern": "text matching the pattern {0}",
    "uniqueItems": "items that are all different",
    "const": "exactly {0}",
}


def coerce_cli_values(
    pairs: Sequence[str], schema: Mapping[str, Any], *, owner: str = "main()"
) -> dict[str, Any]:
    """Turn CLI `NAME=VALUE` strings into typed arguments, guided by `schema`.

    Only the text-to-type step happens here (`count=3` -> 3); whether values fit the
    schema is `validate_arguments`'s job. `owner` names what takes the arguments in
    messages. Raises `ArgumentError` for a pair without `=`, a name given twice, an
    unknown name (unless the schema allows extra properties) or text that cannot be
    read as the declared type.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    closed = schema.get("additionalProperties", False) is False
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ArgumentError(
                pair,
                f"expected NAME=VALUE (for example -a count=3), got {pair!r}",
                value=pair,
                expected="NAME=VALUE",
            )
        if name in values:
            raise ArgumentError(
                name, "given twice; give each argument once", value=text, expected="one value"
            )
        if name not in properties and closed:
            raise ArgumentError(
                name, _unknown(name, properties, owner), value=text, expected=", ".join(properties)
            )
        values[name] = _coerce(name, text, properties.get(name, {}))
    return values


def _coerce(name: str, text: str, prop: Any) -> Any:
    kind = prop.get("type") if isinstance(prop, Mapping) else None
    if kind == "string":
        return text  # formats (date, base64, ...) stay strings; validation checks them
    if kind == "integer":
        if _INTEGER.match(text):
            return int(text)
        raise ArgumentError(
            name, f"expected an integer, got {text!r}", value=text, expected="an integer"
        )
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number):  # JSON has no NaN or infinity
            return number
        raise ArgumentError(
            name, f"expected a number, got {text!r}", value=text, expected="a number"
        )
    if kind == "boolean":
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ArgumentError(
            name,
            f"expected true or false (or yes/no, on/off, 1/0), got {text!r}",
            value=text,
            expected="true or false",
        )
    if kind in ("array", "object"):
        example = "[1, 2]" if kind == "array" else '{"key": "value"}'
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list if kind == "array" else dict):
            return value
        raise ArgumentError(
            name,
            f"expected a JSON {kind} such as {example}, got {text!r}",
            value=text,
            expected=f"a JSON {kind}",
        )
    # Any value, a union or an untyped enum: JSON when the text is JSON, else the text.
    try:
        return json.loads(text)
    except ValueError:
        return text


def validate_arguments(
    args: Mapping[str, Any], schema: Mapping[str, Any], *, owner: str = "main()"
) -> dict[str, Any]:
    """Check `args` against `schema`; return them as a plain dict (defaults not filled in).

    Raises `ArgumentError` for the most relevant problem: an unknown name first (it often
    explains a missing one), then a missing required argument, then a bad value, each
    in parameter order. `field` is the dotted path to the bad value (`order.items.0.qty`).
    """
    return ArgumentChecker(schema)(args, owner=owner)


class ArgumentChecker:
    """`validate_arguments` for one schema, made once: building the JSON Schema validator
    costs far more than checking a few arguments with it (`Script.check_arguments`)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.order = {name: i for i, name in enumerate(schema.get("properties", {}))}
        self.validator = _Validator(schema, format_checker=_formats())
        # No arguments against a schema that cannot require any: nothing to check (a
        # flow's steps mostly take none, and walking the schema costs ~20 us a step).
        self.empty_ok = (
            set(schema) <= _CANNOT_REQUIRE
            and schema.get("type", "object") == "object"
            and not schema.get("required")
        )

    def __call__(self, args: Mapping[str, Any], *, owner: str = "main()") -> dict[str, Any]:
        if not isinstance(args, Mapping):
            raise ArgumentError(
                WHOLE,
                f"expected an object of named arguments, got {_show(args)}",
                value=args,
                expected="an object",
            )
        plain = dict(args)
        if not plain and self.empty_ok:
            return plain
        errors = list(self.validator.iter_errors(plain))
        if errors:
            ranked = min(errors, key=lambda e: _rank(e, self.order))
            raise _explain(ranked, owner)
        return plain


# Schema keywords that an empty object satisfies whatever their value (`required`
# aside, checked apart): the ones Gristmill writes, and annotations.
_CANNOT_REQUIRE = frozenset(
    {"$schema", "$id", "title", "description", "type", "properties", "additionalProperties",
     "required", "order", "examples", "default", "$comment"}
)  # fmt: skip


def _content_encoding(
    validator: Any, encoding: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    # JSON Schema 2020-12 treats contentEncoding as an annotation; bytes parameters need it
    # checked, or a bad value would only fail inside the kernel.
    if encoding == "base64" and isinstance(instance, str):
        try:
            base64.b64decode(instance, validate=True)
        except (binascii.Error, ValueError):
            yield ValidationError(f"{instance!r} is not valid base64")


_Validator = validators.extend(Draft202012Validator, {"contentEncoding": _content_encoding})


def _formats() -> FormatChecker:
    """Stdlib checks for the formats Gristmill generates (no optional jsonschema extras)."""
    checker = FormatChecker(formats=())
    checker.checks("date", raises=ValueError)(
        lambda s: not isinstance(s, str) or bool(date.fromisoformat(s))
    )
    checker.checks("time", raises=ValueError)(
        lambda s: not isinstance(s, str) or bool(time.fromisoformat(s))
    )
    checker.checks("date-time", raises=ValueError)(_is_date_time)
    return checker


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    # fromisoformat also takes a bare date; a date-time input needs its time of day.
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", value)) and bool(
        datetime.fromisoformat(value)
    )


def _where(error: ValidationError) -> list[str | int]:
    """The path to the value an error is about (a missing or unknown name included)."""
    path: list[str | int] = list(error.absolute_path)
    instance, names = _instance(error), error.validator_value  # jsonschema types these loosely
    if error.validator == "required" and isinstance(instance, Mapping) and isinstance(names, list):
        path.append(next(n for n in names if n not in instance))
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        path.append(_extras(error)[0])
    return path


def _extras(error: ValidationError) -> list[str]:
    known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
    patterns = (
        error.schema.get("patternProperties", {}) if isinstance(error.schema, Mapping) else {}
    )
    return [
        n for n in _instance(error) if n not in known and not any(re.search(p, n) for p in patterns)
    ]


def _instance(error: ValidationError) -> Any:
    return error.instance


def _rank(error: ValidationError, order: Mapping[str, int]) -> tuple[int, int, int, int, int, str]:
    """Unknown names, then missing ones, then bad values; each in parameter order."""
    kind = {"additionalProperties": 0, "required": 1}.get(str(error.validator), 2)
    where = _where(error)
    top = order.get(str(where[0]), len(order)) if where else -1
    # For one value failing both `type` and `enum`, the list of choices helps more.
    choices = 0 if error.validator in ("enum", "const") else 1
    return (kind if len(where) == 1 else 2, top, kind, len(where), choices, json.dumps(where))


def _explain(error: ValidationError, owner: str) -> ArgumentError:
    where = _where(error)
    field = ".".join(str(p) for p in where) or WHOLE
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    holder = (
        owner
        if len(where) == 1
        else schema.get("title") or repr(".".join(str(p) for p in where[:-1]))
    )
    keyword = str(error.validator)
    if keyword == "required":
        expected = _describe(schema.get("properties", {}).get(where[-1], {}))
        return ArgumentError(
            field, f"missing; {holder} requires it (expected {expected})", expected=expected
        )
    if keyword == "additionalProperties":
        name = str(where[-1])
        known = list(schema.get("properties", {}))
        message = _unknown(name, known, holder)
        return ArgumentError(
            field, message, value=_instance(error)[name], expected=", ".join(known)
        )
    if keyword == "enum":
        expected = _describe(schema)
        return ArgumentError(
            field,
            f"expected {expected}, got {_json(error.instance)}",
            value=error.instance,
            expected=expected,
        )
    if keyword in ("type", "format", "contentEncoding", "anyOf", "oneOf"):
        expected = _describe(schema)
    elif keyword in _LIMIT_TEXT:
        expected = _LIMIT_TEXT[keyword].format(_json(error.validator_value))
    else:  # a keyword Gristmill does not generate: jsonschema's own words
        return ArgumentError(
            field,
            error.message,
            value=error.instance,
            expected=f"{keyword}: {_json(error.validator_value)}",
        )
    return ArgumentError(
        field,
        f"expected {expected}, got {_show(error.instance)}",
        value=error.instance,
        expected=expected,
    )


def _unknown(name: str, known: Sequence[str] | Mapping[str, Any], holder: str) -> str:
    names = list(known)
    takes = ", ".join(names) if names else "no arguments"
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown; {holder} takes {takes}{hint}"


def _describe(schema: Any) -> str:
    """What a schema accepts, in words: "an integer", "one of "a", "b"", ..."""
    if not isinstance(schema, Mapping) or schema is True:
        return "any value" if schema is not False else "nothing"
    if "enum" in schema:
        return "one of " + ", ".join(_json(v) for v in schema["enum"])
    if "const" in schema:
        return _json(schema["const"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " or ".join(_describe(s) for s in schema[combinator])
    if schema.get("format") in _FORMAT_TEXT:
        return _FORMAT_TEXT[schema["format"]]
    if schema.get("contentEncoding") == "base64":
        return "base64-encoded bytes"
    kinds = schema.get("type")
    if not kinds:
        return "any JSON value"
    parts = []
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        items = schema.get("items")
        if (
            kind == "array"
            and isinstance(items, Mapping)
            and set(items) == {"type"}
            and isinstance(items["type"], str)
        ):
            parts.append(f"an array of {items['type']}s".replace("boolean", "true/false value"))
        elif kind == "object" and schema.get("title"):
            parts.append(f"an object ({schema['title']})")
        else:
            parts.append(_TYPE_TEXT.get(kind, str(kind)))
    return " or ".join(parts)


def _json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."  # keep one-line messages readable


def _show(value: Any) -> str:
    """A value and its JSON kind: `"abc" (a string)`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list | tuple):
        kind = "an array"
    elif isinstance(value, Mapping):
        kind = "an object"
    else:
        kind = f"a Python {type(value).__name__}"
    return f"{_json(value)} ({kind})"
