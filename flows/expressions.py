"""Restricted Python expressions: the `${{ expr }}` templates of flow files.

An expression is parsed with `ast` and evaluated by walking the tree here; nothing is
compiled or handed to `eval`. Only an allow-list of node types runs, names starting
with `__` and attributes starting with `_` are refused, calls reach only a few guarded
builtins and non-mutating methods of str/list/dict/int/float, so the usual escapes
(`().__class__.__bases__`, `f.__globals__`) have nothing to start from. Work is bounded:
each node, iteration and element walked costs a step (`MAX_STEPS`), no string or
sequence built may exceed `MAX_SIZE` items, text built in total `MAX_TEXT` characters,
and integers from `*` / `**` `MAX_INT_BITS` bits.

Scope values are plain data (dict, list, str, numbers, bool, None); an attribute of a
mapping reads a key, so `results.fetch.rows` is `results["fetch"]["rows"]`.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import math
import operator
import re
from collections.abc import (
    Callable,
    Collection,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any

from flows.errors import ExpressionError

SCOPE_NAMES = ("flow_input", "results", "previous_result", "iter", "resume", "error", "result")
SAFE_BUILTINS = (
    "len", "min", "max", "sum", "sorted", "str", "int", "float", "bool", "list", "dict",
    "round", "abs", "any", "all", "range", "enumerate", "zip",
)  # fmt: skip
MAX_STEPS = 1_000_000
MAX_SIZE = 1_000_000
MAX_TEXT = 10_000_000
MAX_INT_BITS = 4096
MAX_DEPTH = 100
MAX_LENGTH = 20_000

# Methods by receiver type, checked in order (a bool is an int): none mutates its
# receiver, takes a callback or a format string.
_STR_METHODS = """lower upper strip lstrip rstrip split rsplit splitlines join startswith
    endswith replace count index find rfind title capitalize isdigit isalpha isalnum isspace"""
_METHODS: tuple[tuple[type, frozenset[str]], ...] = (
    (str, frozenset(_STR_METHODS.split())),
    (Mapping, frozenset({"get", "keys", "values", "items"})),
    (list, frozenset({"count", "index"})),
    (tuple, frozenset({"count", "index"})),
    (int, frozenset({"bit_length"})),
    (float, frozenset({"is_integer"})),
)
ALL_METHODS = frozenset().union(*(names for _, names in _METHODS))
_KEYWORDS: Mapping[str, frozenset[str]] = {
    "min": frozenset({"key", "default"}), "max": frozenset({"key", "default"}),
    "sorted": frozenset({"key", "reverse"}), "sum": frozenset({"start"}),
    "round": frozenset({"ndigits"}), "enumerate": frozenset({"start"}),
    "zip": frozenset({"strict"}), "int": frozenset({"base"}),
}  # fmt: skip
_BINOPS: Mapping[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip
_COMPARE: Mapping[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_UNARY: Mapping[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}  # fmt: skip
_ALLOWED_NODES = frozenset({
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.Attribute, ast.Subscript,
    ast.Slice, ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.UnaryOp, ast.IfExp,
    ast.List, ast.Tuple, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp, ast.comprehension, ast.Call, ast.keyword, ast.JoinedStr,
    ast.FormattedValue, *_BINOPS, *_COMPARE, *_UNARY,
})  # fmt: skip
_REFUSED: Mapping[type, str] = {
    ast.Lambda: "lambda", ast.NamedExpr: "assignment (:=)", ast.Starred: "unpacking with *",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.BitOr: "operator '|'",
    ast.BitAnd: "operator '&'", ast.BitXor: "operator '^'", ast.LShift: "operator '<<'",
    ast.RShift: "operator '>>'", ast.MatMult: "operator '@'",
}  # fmt: skip
_CONTAINERS = (Mapping, list, tuple, set, frozenset)
_VIEWS = (KeysView, ValuesView, ItemsView)


class Refused(Exception):
    """Raised inside the walker; the public functions turn it into an `ExpressionError`."""


def _suggest(name: str, choices: Iterable[Any], unlisted: Iterable[str] = ()) -> str:
    """ "; available: ...; did you mean ...?" for a missing name (`unlisted` only guessed)."""
    options = sorted({str(choice) for choice in choices})
    text = f"; available: {', '.join(options[:20])}{', ...' if len(options) > 20 else ''}"
    close = difflib.get_close_matches(name, [*options, *unlisted], n=1)
    return (text if options else "") + (f"; did you mean '{close[0]}'?" if close else "")


def _type_name(value: Any) -> str:
    return "function" if isinstance(value, _Builtin) else type(value).__name__


def measure(value: Any, limit: int, *, text: bool = False) -> int:
    """Elements in `value`, nested included (or, with `text`, about the characters of its
    str()); stops soon after `limit`, so measuring a huge value stays cheap."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2 if text else 1 + len(item) // 256
        elif isinstance(item, _CONTAINERS):
            total += 2 + 2 * len(item) if text else 1 + len(item)
            if len(item) <= limit:
                stack.extend(item.items() if isinstance(item, Mapping) else item)
        elif isinstance(item, int) and text:
            total += item.bit_length() // 3 + 2
        else:
            total += 32 if text else 1
    return total


@dataclass(frozen=True)
class _Builtin:
    """A safe builtin used as a value (`sorted(x, key=len)`); calling it stays guarded."""

    name: str
    evaluator: _Evaluator

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.evaluator.call_builtin(self.name, list(args), kwargs)


class _Evaluator:
    """Walks one expression's tree over one scope, counting the work it does."""

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope
        self.steps = self.text = self.depth = 0

    def charge(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise Refused(
                f"the expression does too much work (over {MAX_STEPS:,} steps); "
                "do heavy processing in a python or sql step"
            )

    def charge_value(self, value: Any) -> None:
        self.charge(measure(value, MAX_STEPS - self.steps))

    def check_size(self, size: int, what: str = "the result") -> None:
        if size > MAX_SIZE:
            raise Refused(f"{what} would have {size:,} items; the limit is {MAX_SIZE:,}")

    def produced(self, value: Any) -> Any:
        """Account for a value just built: text against MAX_TEXT, items as steps."""
        if isinstance(value, str | bytes):
            self.check_size(len(value))
            self.text += len(value)
            if self.text > MAX_TEXT:
                raise Refused(f"the expression builds over {MAX_TEXT:,} characters of text")
            self.charge(1 + len(value) // 256)
        elif isinstance(value, list | tuple | dict | set):
            self.check_size(len(value))
            self.charge(len(value))
        return value

    def as_text(self, value: Any, convert: Callable[[Any], str] = str) -> str:
        if isinstance(value, str) and convert is str:
            return value
        self.check_size(measure(value, MAX_SIZE, text=True), "the text")
        return str(self.produced(convert(value)))

    def iterate(self, value: Any) -> Iterator[Any]:
        if not isinstance(value, (str, bytes, range, *_VIEWS, Iterator, *_CONTAINERS)):
            raise Refused(f"cannot loop over a {_type_name(value)} value")
        for item in value:
            self.charge()
            yield item

    def collect(self, value: Any) -> list[Any]:
        items = list(self.iterate(value))
        self.check_size(len(items))
        return items

    def eval(self, node: ast.AST, local: Mapping[str, Any]) -> Any:
        self.charge()
        handler = getattr(self, "_" + type(node).__name__, None)
        if handler is None or type(node) not in _ALLOWED_NODES:
            raise Refused(_refusal(node))
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise Refused(f"the expression is nested more than {MAX_DEPTH} levels deep")
            return handler(node, local)
        finally:
            self.depth -= 1

    def _Constant(self, node: ast.Constant, local: Mapping[str, Any]) -> Any:
        return node.value

    def _Name(self, node: ast.Name, local: Mapping[str, Any]) -> Any:
        if node.id.startswith("__"):
            raise Refused(f"name '{node.id}' is not allowed")
        for names in (local, self.scope):
            if node.id in names:
                return names[node.id]
        if node.id in SAFE_BUILTINS:
            return _Builtin(node.id, self)
        hint = _suggest(node.id, [*local, *self.scope], SAFE_BUILTINS)
        raise Refused(f"name '{node.id}' is not defined{hint}")

    def lookup(self, mapping: Mapping[Any, Any], key: Any, what: ast.AST) -> Any:
        try:
            return mapping[key]
        except KeyError:
            missing = f"`{ast.unparse(what)}` has no key {key!r}"
            raise Refused(missing + _suggest(str(key), mapping)) from None
        except TypeError:
            raise Refused(f"a {_type_name(key)} cannot be a key") from None

    def _Attribute(self, node: ast.Attribute, local: Mapping[str, Any]) -> Any:
        if node.attr.startswith("_"):
            raise Refused(f"attribute '{node.attr}' is not allowed")
        value = self.eval(node.value, local)
        if isinstance(value, Mapping):
            return self.lookup(value, node.attr, node.value)
        raise Refused(
            f"`{ast.unparse(node.value)}` is a {_type_name(value)}, which has no attribute "
            f"'{node.attr}' (attributes read the keys of mappings)"
        )

    def _Subscript(self, node: ast.Subscript, local: Mapping[str, Any]) -> Any:
        value, index = self.eval(node.value, local), self.eval(node.slice, local)
        if isinstance(value, Mapping):
            return self.lookup(value, index, node.value)
        if isinstance(index, str) and index.startswith("_"):
            raise Refused(f"subscript {index!r} is not allowed on a {_type_name(value)}")
        if not isinstance(value, str | bytes | list | tuple | range):
            raise Refused(f"a {_type_name(value)} value cannot be indexed")
        try:
            item = value[index]
        except IndexError:
            raise Refused(
                f"index {index} is out of range for `{ast.unparse(node.value)}` "
                f"({_type_name(value)} of {len(value)} items)"
            ) from None
        return self.produced(item) if isinstance(index, slice) else item

    def _Slice(self, node: ast.Slice, local: Mapping[str, Any]) -> slice:
        bounds = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else self.eval(part, local) for part in bounds))

    def _BinOp(self, node: ast.BinOp, local: Mapping[str, Any]) -> Any:
        left, right, op = self.eval(node.left, local), self.eval(node.right, local), type(node.op)
        sequence = str | bytes | list | tuple
        if op is ast.Mult and isinstance(left, int) and isinstance(right, sequence):
            left, right = right, left
        if op is ast.Mult and isinstance(left, sequence) and isinstance(right, int):
            self.check_size(len(left) * max(right, 0))
        elif op is ast.Add and isinstance(left, sequence) and isinstance(right, sequence):
            self.check_size(len(left) + len(right))
        elif op is ast.Mult and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise Refused(f"`{ast.unparse(node)}` would be over {MAX_INT_BITS} bits")
        elif op is ast.Pow and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and (
                right > MAX_INT_BITS or right * math.log2(abs(left)) > MAX_INT_BITS
            ):
                raise Refused(f"`{ast.unparse(node)}` would be over {MAX_INT_BITS} bits")
        elif op is ast.Mod and isinstance(left, str | bytes):
            raise Refused("formatting with % is not allowed; use an f-string or +")
        return self.produced(_BINOPS[op](left, right))

    def _UnaryOp(self, node: ast.UnaryOp, local: Mapping[str, Any]) -> Any:
        return _UNARY[type(node.op)](self.eval(node.operand, local))

    def _BoolOp(self, node: ast.BoolOp, local: Mapping[str, Any]) -> Any:
        value: Any = None
        for operand in node.values:
            value = self.eval(operand, local)
            if bool(value) is isinstance(node.op, ast.Or):
                return value
        return value

    def _Compare(self, node: ast.Compare, local: Mapping[str, Any]) -> bool:
        left = self.eval(node.left, local)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator, local)
            # Comparing or searching containers walks them; a set or dict is only hashed into.
            self.charge_value(left)
            if not isinstance(right, Mapping | set | frozenset):
                self.charge_value(right)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp, local: Mapping[str, Any]) -> Any:
        return self.eval(node.body if self.eval(node.test, local) else node.orelse, local)

    def _List(self, node: ast.List, local: Mapping[str, Any]) -> list[Any]:
        return [self.eval(element, local) for element in node.elts]

    def _Tuple(self, node: ast.Tuple, local: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(self.eval(element, local) for element in node.elts)

    def hashed(self, value: Any) -> Any:
        self.charge_value(value)  # hashing a tuple walks it
        return value

    def _Set(self, node: ast.Set, local: Mapping[str, Any]) -> set[Any]:
        return {self.hashed(self.eval(element, local)) for element in node.elts}

    def _Dict(self, node: ast.Dict, local: Mapping[str, Any]) -> dict[Any, Any]:
        pairs = zip(node.keys, node.values, strict=True)
        return {self.hashed(self.eval(k, local)): self.eval(v, local) for k, v in pairs if k}

    def bindings(
        self, generators: list[ast.comprehension], local: Mapping[str, Any]
    ) -> Iterator[Mapping[str, Any]]:
        first, rest = generators[0], generators[1:]
        for item in self.iterate(self.eval(first.iter, local)):
            inner = dict(local)  # comprehension variables stay local to it
            self.assign(first.target, item, inner)
            if all(self.eval(condition, inner) for condition in first.ifs):
                yield from self.bindings(rest, inner) if rest else (inner,)

    def assign(self, target: ast.AST, value: Any, local: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            local[target.id] = value
            return
        assert isinstance(target, ast.Tuple | ast.List)  # _check_tree refused other targets
        items = self.collect(value)
        if len(items) != len(target.elts):
            raise Refused(f"cannot unpack {len(items)} values into {len(target.elts)} names")
        for element, item in zip(target.elts, items, strict=True):
            self.assign(element, item, local)

    def _ListComp(self, node: ast.ListComp, local: Mapping[str, Any]) -> list[Any]:
        return [self.eval(node.elt, inner) for inner in self.bindings(node.generators, local)]

    def _SetComp(self, node: ast.SetComp, local: Mapping[str, Any]) -> set[Any]:
        found = self.bindings(node.generators, local)
        return {self.hashed(self.eval(node.elt, inner)) for inner in found}

    def _DictComp(self, node: ast.DictComp, local: Mapping[str, Any]) -> dict[Any, Any]:
        found = self.bindings(node.generators, local)
        return {self.hashed(self.eval(node.key, i)): self.eval(node.value, i) for i in found}

    def _GeneratorExp(self, node: ast.GeneratorExp, local: Mapping[str, Any]) -> Iterator[Any]:
        return (self.eval(node.elt, inner) for inner in self.bindings(node.generators, local))

    def _JoinedStr(self, node: ast.JoinedStr, local: Mapping[str, Any]) -> str:
        parts = [self.as_text(self.eval(part, local)) for part in node.values]
        return str(self.produced("".join(parts)))

    def _FormattedValue(self, node: ast.FormattedValue, local: Mapping[str, Any]) -> str:
        value = self.eval(node.value, local)
        spec = "" if node.format_spec is None else self.as_text(self.eval(node.format_spec, local))
        if any(int(number) > 1000 for number in re.findall(r"\d+", spec)):
            raise Refused(f"format spec {spec!r} asks for over 1000 characters")
        if node.conversion != -1:
            value = self.as_text(value, {ord("r"): repr, ord("a"): ascii}.get(node.conversion, str))
        self.check_size(measure(value, MAX_SIZE, text=True), "the text")
        return str(self.produced(format(value, spec)))

    def _Call(self, node: ast.Call, local: Mapping[str, Any]) -> Any:
        _check_call(node)
        args = [self.eval(argument, local) for argument in node.args]
        kwargs = {kw.arg: self.eval(kw.value, local) for kw in node.keywords if kw.arg}
        if isinstance(node.func, ast.Attribute):
            return self.call_method(self.eval(node.func.value, local), node.func.attr, args, kwargs)
        assert isinstance(node.func, ast.Name)  # _check_call refused every other form
        if node.func.id in local or node.func.id in self.scope:
            raise Refused(f"'{node.func.id}' is a value, not a function; only builtins are called")
        return self.call_builtin(node.func.id, args, kwargs)

    def call_method(self, obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        base, allowed = next(((b, m) for b, m in _METHODS if isinstance(obj, b)), (None, None))
        if base is None or allowed is None:
            raise Refused(f"methods cannot be called on a {_type_name(obj)} value")
        if name not in allowed:
            available = ", ".join(sorted(allowed))
            raise Refused(f"method '{name}' is not allowed on a {_type_name(obj)}; use {available}")
        if base is Mapping:  # the Mapping mixins work for any mapping and are O(1) here
            return getattr(Mapping, name)(obj, *args, **kwargs)
        self.charge_value(obj)
        if isinstance(obj, str) and name == "join":
            args[:1] = [self.collect(args[0])] if args else []
            pieces = args[0] if args else []
            self.check_size(
                sum(len(p) for p in pieces if isinstance(p, str)) + len(obj) * len(pieces)
            )
        if isinstance(obj, str) and name == "replace" and all(isinstance(a, str) for a in args[:2]):
            old, new = [*args, "", ""][:2]
            found = obj.count(old) if old else len(obj) + 1
            self.check_size(len(obj) + found * (len(new) - len(old)))
        # The method is taken from the base type, so a subclass cannot swap in its own.
        result = getattr(base, name)(obj, *args, **kwargs)
        return self.produced(result) if base is str else result

    def call_builtin(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        unexpected = sorted(set(kwargs) - _KEYWORDS.get(name, frozenset()))
        if unexpected and name != "dict":
            raise Refused(f"{name}() does not take the argument '{unexpected[0]}' here")
        if kwargs.get("key") is not None and not isinstance(kwargs["key"], _Builtin):
            raise Refused(f"key= must be a builtin such as len, not a {_type_name(kwargs['key'])}")
        if (name in ("min", "max") and len(args) == 1) or (
            name in ("sum", "sorted", "list") and args
        ):
            args[0] = self.collect(args[0])
        if name in ("any", "all", "enumerate", "zip") and args:
            # Builtins that loop go through iterate() so every element is charged.
            lazy = args if name == "zip" else args[:1]
            args = [self.iterate(argument) for argument in lazy] + args[len(lazy) :]
        if name == "dict" and args and not isinstance(args[0], Mapping):
            args[0] = self.collect(args[0])
        if name in ("min", "max", "sum", "sorted") and args:
            # Comparing or adding the items walks them, sorting about log2(n) times over.
            passes = len(args[0]).bit_length() if name == "sorted" else 1
            self.charge(measure(args[0], MAX_STEPS - self.steps) * max(1, passes))
        start = args[1] if name == "sum" and len(args) > 1 else kwargs.get("start", 0)
        if not isinstance(start, int | float):
            raise Refused("sum() adds numbers only; its start must be a number")
        digits = args[1] if name == "round" and len(args) > 1 else kwargs.get("ndigits", 0)
        if not isinstance(digits, int) or abs(digits) > 64:
            raise Refused("round() takes ndigits between -64 and 64")
        if name == "str":
            return self.as_text(args[0]) if args else ""
        if name == "range":
            bounds = range(*args)
            self.check_size(len(bounds), "the range")
            return bounds
        return self.produced(getattr(builtins, name)(*args, **kwargs))


def _check_call(node: ast.Call) -> None:
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        kw.arg is None for kw in node.keywords
    ):
        raise Refused("unpacking with * or ** in calls is not allowed")
    if isinstance(node.func, ast.Name) and node.func.id not in SAFE_BUILTINS:
        callable_names = ", ".join(SAFE_BUILTINS)
        raise Refused(f"calls to '{node.func.id}' are not allowed; you can call: {callable_names}")
    if isinstance(node.func, ast.Attribute) and node.func.attr not in ALL_METHODS:
        if node.func.attr.startswith("_"):
            raise Refused(f"attribute '{node.func.attr}' is not allowed")
        methods = ", ".join(sorted(ALL_METHODS))
        raise Refused(f"method '{node.func.attr}' is not allowed; methods allowed: {methods}")
    if not isinstance(node.func, ast.Name | ast.Attribute):
        raise Refused("only builtins (len, ...) and methods (s.lower(), ...) can be called")


def _refusal(node: ast.AST) -> str:
    refused = next((text for kind, text in _REFUSED.items() if isinstance(node, kind)), None)
    return f"{refused or type(node).__name__} is not allowed in an expression"


def parse_expression(expression: str) -> ast.Expression:
    if len(expression) > MAX_LENGTH:
        raise Refused(f"the expression is longer than {MAX_LENGTH:,} characters")
    if not expression.strip():
        raise Refused("the expression is empty")
    try:
        return ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        where = f" (column {error.offset})" if error.offset else ""
        raise Refused(
            f"not a valid expression: {error.msg}{where}; statements (import, =, def) are not allowed"
        ) from None
    except (RecursionError, MemoryError, ValueError) as error:
        raise Refused(f"not a valid expression: {error}") from None


def _check_tree(tree: ast.Expression, names: Collection[str] | None) -> None:
    """Refuse what the walker would refuse, before running anything (dead branches too)."""
    for node in ast.walk(tree):  # first, so `(lambda: 1)()` is refused as a lambda
        if type(node) not in _ALLOWED_NODES:
            raise Refused(_refusal(node))
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise Refused(f"attribute '{node.attr}' is not allowed")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise Refused(f"name '{node.id}' is not allowed")
        if isinstance(node, ast.Call):
            _check_call(node)
        if isinstance(node, ast.Dict) and None in node.keys:
            raise Refused("unpacking with ** is not allowed")
        if isinstance(node, ast.comprehension):
            if node.is_async or not all(
                isinstance(n, ast.Name | ast.Tuple | ast.List | ast.Store)
                for n in ast.walk(node.target)
            ):
                raise Refused(f"cannot loop into `{ast.unparse(node.target)}`")
            bound.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
    if names is None:
        return
    known = {*names, *bound}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in known and node.id not in SAFE_BUILTINS:
            hint = _suggest(node.id, known, SAFE_BUILTINS)
            raise Refused(f"name '{node.id}' is not defined{hint}")


def check_expression(expression: str, *, names: Collection[str] | None = SCOPE_NAMES) -> None:
    """Parse `expression` and check it against the allow-list, without running it.

    Names must be in `names` (the scope names by default; `None` skips that check),
    builtins or comprehension variables. Raises `ExpressionError` saying what is refused.
    """
    try:
        _check_tree(parse_expression(expression), names)
    except Refused as refused:
        raise ExpressionError(expression.strip(), str(refused)) from None


def evaluate(
    expression: str,
    scope: Mapping[str, Any],
    *,
    step: str | None = None,
    argument: str | None = None,
) -> Any:
    """Evaluate one expression (no `${{ }}` around it) over `scope` and return its value.

    Lazy values (generators, range, dict views) come back as lists. Raises
    `ExpressionError` naming the expression, `step` and `argument` when the expression
    is refused or fails (a missing key, a division by zero, a type error...).
    """
    evaluator = _Evaluator(scope)
    try:
        tree = parse_expression(expression)
        _check_tree(tree, None)
        value = evaluator.eval(tree.body, {})
        if isinstance(value, _Builtin):
            raise Refused(f"`{value.name}` is a function; call it to get a value")
        if isinstance(value, (Iterator, range, *_VIEWS)):
            value = evaluator.collect(value)
        return value
    except Refused as refused:
        message = str(refused)
    except RecursionError:
        message = "the expression or its data is nested too deeply"
    except ZeroDivisionError:
        message = "division by zero"
    except Exception as error:  # whatever the data makes fail becomes one readable error
        message = f"{type(error).__name__}: {error}"
    raise ExpressionError(expression.strip(), message, step=step, argument=argument)
