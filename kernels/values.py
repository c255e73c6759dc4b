"""Values crossing the JSON boundary, as seen from inside a run process.

`to_json` turns what `main` returned into JSON-ready data (dates, decimals, enums,
dataclasses, pydantic models, numpy and pandas values converted; anything else is a
clear error). `from_json` turns JSON arguments into the types `main` annotates
(`datetime`, `bytes`, an `Enum`, a dataclass, a pydantic model...).

Imported inside kernels: standard library only; pydantic, numpy and pandas are
recognised by duck typing, never imported.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import math
import types
import typing
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


class NotJSONError(TypeError):
    """A returned value has no JSON form. `where` is its path inside the result."""

    def __init__(self, value: object, where: str) -> None:
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        super().__init__(
            f"main returned a value that is not JSON: a {kind} at {where}. "
            "Return dicts, lists, strings, numbers, booleans or None, "
            "or convert it first (for example str(value))."
        )
        self.where = where


class ConversionError(ValueError):
    """An argument cannot become the type `main` annotates. `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"argument '{field}': {message}")
        self.field = field


# ---------------------------------------------------------------- result -> JSON


def to_json(value: Any, where: str = "result") -> Any:
    """Return `value` as plain JSON data (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONError(value, f"{where} ({value!r}: JSON has no NaN or infinity)")
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value, where)
    if isinstance(value, Mapping):
        return {_key(k, where): to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return to_json(int(value) if value == value.to_integral_value() else float(value), where)
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
        }
    return _to_json_duck(value, where)


def _to_json_duck(value: Any, where: str) -> Any:
    # pydantic models, pandas and numpy, recognised by the methods they offer, so the
    # run process never imports them itself.
    if callable(getattr(value, "model_dump", None)):
        return to_json(value.model_dump(mode="json"), where)
    if type(value).__name__ == "DataFrame" and callable(getattr(value, "to_dict", None)):
        return to_json(value.to_dict(orient="records"), where)
    if callable(getattr(value, "tolist", None)):  # numpy arrays and scalars, pandas Series
        return to_json(value.tolist(), where)
    if callable(getattr(value, "item", None)) and getattr(value, "shape", None) == ():
        return to_json(value.item(), where)
    if callable(getattr(value, "isoformat", None)):  # pandas Timestamp and kin
        return value.isoformat()
    raise NotJSONError(value, where)


def _key(key: object, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float, bool)) or key is None:
        return str(key)
    if isinstance(key, enum.Enum):
        return str(key.value)
    raise NotJSONError(key, f"{where} (a dict key)")


# ---------------------------------------------------------------- JSON -> arguments


def from_json(value: Any, hint: Any, field: str) -> Any:
    """Convert the JSON `value` of argument `field` into the annotated type `hint`."""
    if hint is Any or hint is None or hint is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return from_json(value, option, field)
            except ConversionError as exc:
                errors.append(str(exc))
        raise ConversionError(field, "; ".join(errors) or "no type of the union fits")
    if origin is typing.Literal:
        return value
    if origin is typing.Annotated:
        return from_json(value, args[0], field)
    if origin in (list, set, frozenset, tuple) or origin in _ABSTRACT_SEQUENCES:
        if not isinstance(value, list):
            raise ConversionError(field, f"expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [from_json(v, item, f"{field}.{i}") for i, v in enumerate(value)]
        return items if origin not in (set, frozenset, tuple) else origin(items)
    if origin in (dict, Mapping) or origin in _ABSTRACT_MAPPINGS:
        if not isinstance(value, dict):
            raise ConversionError(field, f"expected an object, got {type(value).__name__}")
        item = args[1] if len(args) == 2 else Any
        return {k: from_json(v, item, f"{field}.{k}") for k, v in value.items()}
    if not isinstance(hint, type):
        return value
    return _from_json_class(value, hint, field)


def _from_json_class(value: Any, hint: type, field: str) -> Any:
    if value is None:
        return None
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            raise ConversionError(field, f"expected one of {allowed}, got {value!r}") from None
    if hint is dt.datetime or hint is dt.date or hint is dt.time:
        if isinstance(value, hint):
            return value
        try:
            return hint.fromisoformat(str(value))
        except ValueError:
            raise ConversionError(
                field, f"expected an ISO 8601 {hint.__name__}, got {value!r}"
            ) from None
    if hint is bytes:
        try:
            return base64.b64decode(str(value), validate=True)
        except ValueError:
            raise ConversionError(field, f"expected base64 text, got {str(value)[:40]!r}") from None
    if dataclasses.is_dataclass(hint):
        return _dataclass_from_json(value, hint, field)
    if callable(getattr(hint, "model_validate", None)):
        try:
            return hint.model_validate(value)  # type: ignore[attr-defined]
        except Exception as exc:  # pydantic's ValidationError, without importing pydantic
            raise ConversionError(field, str(exc)) from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is decimal.Decimal:
        return decimal.Decimal(str(value))
    return value


def _dataclass_from_json(value: Any, hint: type, field: str) -> Any:
    if not isinstance(value, dict):
        raise ConversionError(
            field, f"expected an object for {hint.__name__}, got {type(value).__name__}"
        )
    try:
        hints = typing.get_type_hints(hint)
    except Exception:  # an annotation that does not resolve: pass values through
        hints = {}
    known = {f.name for f in dataclasses.fields(hint) if f.init}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConversionError(f"{field}.{unknown[0]}", f"unknown field of {hint.__name__}")
    kwargs = {k: from_json(v, hints.get(k, Any), f"{field}.{k}") for k, v in value.items()}
    try:
        return hint(**kwargs)
    except TypeError as exc:
        raise ConversionError(field, f"cannot build {hint.__name__}: {exc}") from None


_ABSTRACT_SEQUENCES = (
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.Set,
    collections.abc.MutableSet,
)
_ABSTRACT_MAPPINGS = (collections.abc.Mapping, collections.abc.MutableMapping)
