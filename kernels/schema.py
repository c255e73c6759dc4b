"""A script's input schema, read statically from its `main(...)` signature.

The script is parsed with `ast` and never imported: importing would run its top-level
code (which may have side effects) and would need its third-party dependencies in
*this* process, while they are only installed in the script's own environment.

`script_schema` returns a JSON Schema 2020-12 object schema; the mapping from Python
annotations follows Windmill's conventions (see DESIGN.md, "Scripts").
"""

from __future__ import annotations

import ast
import base64
import math
import re
from typing import Any

from kernels.errors import ScriptError

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

NO_MAIN = "no function named `main` at the top level; Gristmill runs a script's main(...)"

# A type name means the same with or without these module prefixes, so `typing.List`,
# `t.List` and `List` (and `datetime.date` / `date`) all land on one table entry.
# fmt: off
_TRANSPARENT_PREFIXES = ("typing_extensions.", "typing.", "t.", "collections.abc.", "collections.",
                         "builtins.", "datetime.", "enum.", "dataclasses.", "pydantic.")
_SCALARS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
    "bool": {"type": "boolean"}, "bytes": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"}, "time": {"type": "string", "format": "time"},
    "Any": {}, "object": {},
}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping", "OrderedDict", "defaultdict"}
_SETS = {"set", "Set", "frozenset", "FrozenSet", "AbstractSet"}
_SEQUENCES = _SETS | {"list", "List", "Sequence", "MutableSequence", "Iterable", "Collection",
                      "tuple", "Tuple"}
# fmt: on
_ENUM_BASES = {"Enum", "StrEnum", "IntEnum", "Flag", "IntFlag"}
_NONE_NAMES = {"None", "NoneType"}

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments)\s*:$")
_ANY_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:$")
_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(.*)$")


class _Missing:
    """Marks "no usable value" (no default, or a default that is not a literal)."""


_NO_VALUE = _Missing()
# Stands for a default that exists but has no literal value (`Field(default_factory=...)`).
_NON_LITERAL = ast.Name("default_factory")


def script_schema(source: str, path: str = "") -> dict[str, Any]:
    """Return the JSON Schema (2020-12) of the inputs of the script's `main(...)`.

    Properties and `required` follow the parameter order. Raises `ScriptError` (with
    the 1-based line) for a syntax error, a missing `main`, or a `main` that is not a
    function.
    """
    tree = _parse(source, path)
    main = _find_main(tree, path)
    reader = _AnnotationReader(tree, path)
    doc = ast.get_docstring(main) or ""
    descriptions = _arg_descriptions(doc)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, default in _inputs(main):
        schema, optional = reader.annotation(arg.annotation)
        schema, has_default = reader.with_default(schema, default)
        if arg.arg in descriptions:
            schema["description"] = descriptions[arg.arg]
        properties[arg.arg] = schema
        if not (optional or has_default):
            required.append(arg.arg)
    result: dict[str, Any] = {"$schema": SCHEMA_DIALECT, "type": "object"}
    summary = _summary(doc)
    if summary:
        result["description"] = summary
    result.update(properties=properties, required=required, additionalProperties=False)
    return result


def main_parameters(source: str, path: str = "") -> list[str]:
    """Return the names of `main`'s inputs in order (`*args` / `**kwargs` excluded)."""
    return [arg.arg for arg, _ in _inputs(_find_main(_parse(source, path), path))]


def _parse(source: str, path: str) -> ast.Module:
    try:
        return ast.parse(source, filename=path or "<script>")
    except SyntaxError as exc:
        snippet = f" in `{exc.text.strip()}`" if exc.text and exc.text.strip() else ""
        raise ScriptError(f"syntax error: {exc.msg}{snippet}", path=path, line=exc.lineno) from exc
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise ScriptError(f"cannot parse the script: {exc}", path=path) from exc


def _find_main(tree: ast.Module, path: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    # The last `def main` wins, as at runtime; other bindings of `main` only matter when
    # there is no def at all (a later `main = wrap(main)` should not hide the signature).
    defs = [
        s
        for s in tree.body
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and s.name == "main"
    ]
    if defs:
        return defs[-1]
    for stmt in reversed(tree.body):
        what = _main_binding(stmt)
        if what:
            raise ScriptError(
                f"`main` is {what}, not a function; Gristmill calls main(...) with the "
                "inputs, so define it with `def main(...):`",
                path=path,
                line=stmt.lineno,
            )
    raise ScriptError(NO_MAIN, path=path)


def _main_binding(stmt: ast.stmt) -> str:
    """Say how `stmt` binds the name `main` other than by `def` ("" if it does not)."""
    if isinstance(stmt, ast.ClassDef) and stmt.name == "main":
        return "a class"
    if isinstance(stmt, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "main" for t in stmt.targets
    ):
        return "assigned a value"
    if (
        isinstance(stmt, ast.AnnAssign | ast.AugAssign)
        and isinstance(stmt.target, ast.Name)
        and stmt.target.id == "main"
    ):
        return "assigned a value"
    if isinstance(stmt, ast.Import | ast.ImportFrom) and any(
        (a.asname or a.name) == "main" for a in stmt.names
    ):
        return "imported from another module (Gristmill cannot read its signature)"
    return ""


def _inputs(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[ast.arg, ast.expr | None]]:
    """Pair each input parameter with its default; `*args` / `**kwargs` are not inputs."""
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    padded: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults))
    return [
        *zip(positional, [*padded, *a.defaults], strict=True),
        *zip(a.kwonlyargs, a.kw_defaults, strict=True),
    ]


class _AnnotationReader:
    """Maps annotation expressions to schemas, knowing the script's imports and classes."""

    def __init__(self, tree: ast.Module, path: str) -> None:
        self.path = path
        self.aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        self.classes = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}
        # Windmill's resource convention: `postgresql = dict` at the top level, then
        # `def main(db: postgresql)` takes a resource of type postgresql (picked by path).
        self.resource_types = {
            target.id
            for stmt in tree.body
            if isinstance(stmt, ast.Assign)
            and isinstance(stmt.value, ast.Name)
            and stmt.value.id == "dict"
            for target in stmt.targets
            if isinstance(target, ast.Name)
        }

    # -- names ---------------------------------------------------------------------------

    def canonical(self, node: ast.expr) -> str | None:
        """The dotted name of `node` with import aliases resolved and typing prefixes cut."""
        name = self._dotted(node)
        if name is None:
            return None
        for prefix in _TRANSPARENT_PREFIXES:
            if name.startswith(prefix):
                return name[len(prefix) :]
        return name

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def _script_class(self, node: ast.expr) -> ast.ClassDef | None:
        if isinstance(node, ast.Name) and node.id not in self.aliases:
            return self.classes.get(node.id)
        return None

    # -- annotations ---------------------------------------------------------------------

    def annotation(
        self, node: ast.expr | None, seen: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any], bool]:
        """Return `(schema, accepts_none)`; `accepts_none` makes a parameter optional."""
        if node is None:
            return {}, False
        if isinstance(node, ast.Constant):
            if node.value is None:
                return {}, True
            if isinstance(node.value, str):
                return self.annotation(self._parse_string(node), seen)
            return {}, False
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self._union([node.left, node.right], seen)
        if isinstance(node, ast.Subscript):
            args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
            return self._generic(self.canonical(node.value), args, seen)
        if isinstance(node, ast.Name) and node.id in self.resource_types:
            return {"type": "string", "format": f"resource-{node.id}"}, False
        cls = self._script_class(node)
        if cls is not None:
            return self._class_schema(cls, seen), False
        name = self.canonical(node)
        if name in _NONE_NAMES:
            return {}, True
        if name in _SCALARS:
            return dict(_SCALARS[name]), False
        if name in _MAPPINGS:
            return {"type": "object"}, False
        if name in _SEQUENCES:
            return (
                {"type": "array", "uniqueItems": True} if name in _SETS else {"type": "array"}
            ), False
        return {}, False  # a type Gristmill does not know (e.g. a third-party class): any

    def _parse_string(self, node: ast.Constant) -> ast.expr:
        try:
            return ast.parse(str(node.value).strip(), mode="eval").body
        except SyntaxError as exc:
            raise ScriptError(
                f"cannot read the annotation {node.value!r}: {exc.msg}",
                path=self.path,
                line=node.lineno,
            ) from exc

    def _value(self, node: ast.expr, seen: tuple[str, ...]) -> dict[str, Any]:
        """The schema of a value inside a container, where None is a value, not an omission."""
        schema, nullable = self.annotation(node, seen)
        return {"anyOf": [schema, {"type": "null"}]} if nullable and schema else schema

    def _union(self, members: list[ast.expr], seen: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
        flat: list[ast.expr] = []
        while members:
            m = members.pop(0)
            if isinstance(m, ast.BinOp) and isinstance(m.op, ast.BitOr):
                members[:0] = [m.left, m.right]
            else:
                flat.append(m)
        schemas: list[dict[str, Any]] = []
        nullable = False
        for m in flat:
            schema, none = self.annotation(m, seen)
            nullable = nullable or none
            if none and not schema:
                continue
            if not schema:
                return {}, nullable  # `X | Any` accepts anything
            for one in schema["anyOf"] if set(schema) == {"anyOf"} else [schema]:
                if one not in schemas:
                    schemas.append(one)
        if len(schemas) == 1:
            return schemas[0], nullable
        return ({"anyOf": schemas} if schemas else {}), nullable

    def _generic(
        self, origin: str | None, args: list[ast.expr], seen: tuple[str, ...]
    ) -> tuple[dict[str, Any], bool]:
        if origin == "Optional":
            return self._union([*args, ast.Constant(None)], seen)
        if origin == "Union":
            return self._union(args, seen)
        if origin == "Annotated":
            return self.annotation(args[0], seen)
        if origin == "Literal":
            values = [self.literal(a) for a in args]
            if any(v is _NO_VALUE for v in values):
                return {}, False
            present = [v for v in values if v is not None]
            return _enum_schema(present), len(present) < len(values)
        if origin in _MAPPINGS:
            schema: dict[str, Any] = {"type": "object"}
            if len(args) == 2 and (value := self._value(args[1], seen)):
                schema["additionalProperties"] = value
            return schema, False
        if origin in _SEQUENCES:
            schema = (
                {"type": "array", "uniqueItems": True} if origin in _SETS else {"type": "array"}
            )
            if origin in ("tuple", "Tuple") and not (len(args) == 2 and _is_ellipsis(args[1])):
                items = [self._value(a, seen) for a in args]
                schema.update(
                    prefixItems=items, items=False, minItems=len(items), maxItems=len(items)
                )
            elif args and (item := self._value(args[0], seen)):
                schema["items"] = item
            return schema, False
        return {}, False

    # -- classes defined in the script ----------------------------------------------------

    def _kind(self, cls: ast.ClassDef, visited: frozenset[str] = frozenset()) -> str:
        """ "enum", "dataclass", "pydantic" or "" for a class defined in the script."""
        if cls.name in visited:
            return ""  # a cycle of bases: not valid Python, so nothing to infer
        for deco in cls.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            if self.canonical(target) == "dataclass":
                return "dataclass"
        for base in cls.bases:
            name = self.canonical(base)
            if name in _ENUM_BASES:
                return "enum"
            if name == "BaseModel":
                return "pydantic"
            parent = self._script_class(base)
            if parent is not None and (kind := self._kind(parent, visited | {cls.name})):
                return kind
        return ""

    def _class_schema(self, cls: ast.ClassDef, seen: tuple[str, ...]) -> dict[str, Any]:
        kind = self._kind(cls)
        if kind == "enum":
            members = self.enum_members(cls)
            return _enum_schema(list(members.values())) if members else {}
        if not kind:
            return {}
        if cls.name in seen:  # a recursive model: stop at an untyped object of that name
            return {"type": "object", "title": cls.name}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, (annotation, value) in self._fields(cls, kind).items():
            schema, _ = self.annotation(annotation, (*seen, cls.name))
            default, description = self._field_default(value)
            schema, has_default = self.with_default(schema, default)
            if description:
                schema["description"] = description
            properties[name] = schema
            if not has_default:
                required.append(name)
        return {
            "type": "object",
            "title": cls.name,
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def _fields(
        self, cls: ast.ClassDef, kind: str, visited: frozenset[str] = frozenset()
    ) -> dict[str, tuple[ast.expr, ast.expr | None]]:
        fields: dict[str, tuple[ast.expr, ast.expr | None]] = {}
        for base in cls.bases:  # inherited fields come first, as in Python
            parent = self._script_class(base)
            if parent is not None and parent.name not in visited and self._kind(parent):
                fields.update(self._fields(parent, kind, visited | {cls.name}))
        for stmt in cls.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            name = stmt.target.id
            # ClassVars are not fields; pydantic treats underscore names as private attributes.
            if self.canonical(_origin(stmt.annotation)) == "ClassVar" or (
                kind == "pydantic" and name.startswith("_")
            ):
                continue
            fields[name] = (stmt.annotation, stmt.value)
        return fields

    def _field_default(self, value: ast.expr | None) -> tuple[ast.expr | None, str]:
        """Unwrap `Field(...)` / `field(...)`: the default expression and a description."""
        if not (isinstance(value, ast.Call) and self.canonical(value.func) in ("Field", "field")):
            return value, ""
        keywords = {k.arg: k.value for k in value.keywords if k.arg}
        description = self.literal(keywords["description"]) if "description" in keywords else ""
        default = keywords.get("default", value.args[0] if value.args else None)
        if default is None or _is_ellipsis(default):
            # `default_factory` makes a field optional without a literal default to show.
            default = _NON_LITERAL if "default_factory" in keywords else None
        return default, description if isinstance(description, str) else ""

    def enum_members(self, cls: ast.ClassDef) -> dict[str, Any]:
        """Member name -> value for an Enum class (empty if any value is not a literal)."""
        str_enum = any(self.canonical(b) == "StrEnum" for b in cls.bases)
        members: dict[str, Any] = {}
        for stmt in cls.body:
            if not (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                continue
            name = stmt.targets[0].id
            if name.startswith("_"):
                continue
            if isinstance(stmt.value, ast.Call) and self.canonical(stmt.value.func) == "auto":
                # What enum.auto() produces: the lower-cased name for StrEnum, else 1, 2, ...
                ints = [v for v in members.values() if isinstance(v, int)]
                value: Any = name.lower() if str_enum else max(ints, default=0) + 1
            else:
                value = self.literal(stmt.value)
            if value is _NO_VALUE:
                return {}
            members[name] = value
        return members

    # -- defaults -------------------------------------------------------------------------

    def literal(self, node: ast.expr) -> Any:
        """The JSON value of a literal expression (an Enum member gives its value), else _NO_VALUE."""
        if isinstance(node, ast.Attribute) and (cls := self._script_class(node.value)) is not None:
            return self.enum_members(cls).get(node.attr, _NO_VALUE)
        try:
            return _jsonable(ast.literal_eval(node))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return _NO_VALUE

    def with_default(
        self, schema: dict[str, Any], node: ast.expr | None
    ) -> tuple[dict[str, Any], bool]:
        """Add what a default says to `schema`; the bool is whether there is a default at all."""
        if node is None:
            return schema, False
        value = self.literal(node)
        if value is _NO_VALUE or value is None:
            return schema, True
        if not schema:  # no annotation: the default says what it is (`color=Color.RED` too)
            enum_cls = self._script_class(node.value) if isinstance(node, ast.Attribute) else None
            schema = self._class_schema(enum_cls, ()) if enum_cls else _infer(value)
        elif (
            schema == {"type": "array"}
            and isinstance(value, list)
            and "items" in (inferred := _infer(value))
        ):
            schema["items"] = inferred["items"]
        schema["default"] = value
        return schema, True


def _origin(node: ast.expr) -> ast.expr:
    return node.value if isinstance(node, ast.Subscript) else node


def _is_ellipsis(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def _jsonable(value: Any) -> Any:
    """Turn a Python literal into JSON data (tuples and sets -> lists, bytes -> base64)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NO_VALUE
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        if isinstance(value, set | frozenset):
            items.sort(key=repr)  # a set literal has no order; make the schema deterministic
        return _NO_VALUE if any(i is _NO_VALUE for i in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out = {k: _jsonable(v) for k, v in value.items()}
        return _NO_VALUE if any(v is _NO_VALUE for v in out.values()) else out
    return _NO_VALUE


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _infer(value: Any) -> dict[str, Any]:
    """The schema a default value implies (list items only when all share one type)."""
    if value is None:
        return {}
    schema: dict[str, Any] = {"type": _json_type(value)}
    if isinstance(value, list) and value:
        items = [_infer(v) for v in value]
        if all(i == items[0] for i in items):
            schema["items"] = items[0]
    return schema


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    types = {_json_type(v) for v in values}
    schema: dict[str, Any] = {"type": types.pop()} if len(types) == 1 else {}
    schema["enum"] = values
    return schema


def _summary(doc: str) -> str:
    """The first paragraph of a docstring, unless the docstring opens with a section."""
    paragraph: list[str] = []
    for line in doc.splitlines():
        if not line.strip():
            break
        paragraph.append(line.strip())
    if paragraph and _ANY_SECTION.match(paragraph[0]):
        return ""
    return " ".join(paragraph)


def _arg_descriptions(doc: str) -> dict[str, str]:
    """Per-parameter descriptions from Google-style `Args:` sections."""
    descriptions: dict[str, str] = {}
    lines = doc.splitlines()
    for i, header in enumerate(lines):
        if not _SECTION.match(header.strip()):
            continue
        # cleandoc strips the first line on its own, so a section opening the docstring
        # says nothing about the entries' indentation; the next section header ends it.
        header_indent = _indent(header) if i else -1
        entry_indent: int | None = None
        current = ""
        for line in lines[i + 1 :]:
            if not line.strip():
                continue
            indent = _indent(line)
            if entry_indent is None:
                entry_indent = indent
            if indent <= header_indent or (
                indent <= entry_indent and _ANY_SECTION.match(line.strip())
            ):
                break  # the next section (e.g. `Returns:`) or the end of this one
            entry = _ENTRY.match(line.strip())
            if entry and indent <= entry_indent:
                current = entry.group(1)
                descriptions[current] = entry.group(2).strip()
            elif current:
                descriptions[current] = f"{descriptions[current]} {line.strip()}".strip()
    return descriptions


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
