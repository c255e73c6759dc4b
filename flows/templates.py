"""`${{ expr }}` templates in flow files: finding, rendering and reading them.

`render` walks a step's arguments: a string that is exactly one template becomes the
expression's value (any type); templates inside longer text are interpolated as text;
everything else is returned unchanged. `referenced_steps` reads which step results a
value uses, without running anything, so bad references are refused before a run.
The expressions themselves are evaluated by `flows.expressions`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from flows.errors import ExpressionError
from flows.expressions import (
    ALL_METHODS,
    MAX_SIZE,
    Refused,
    evaluate,
    measure,
    parse_expression,
)

OPEN, CLOSE = "${{", "}}"


def _templates(text: str) -> list[tuple[int, int, str]]:
    """(start, end, expression) of every `${{ expr }}` in `text`.

    An expression may contain `}}` itself (`${{ {'a': {'b': 1}} }}`), so each `}}` after
    an opening is tried in turn and the first that closes a valid expression wins.
    """
    found: list[tuple[int, int, str]] = []
    position = 0
    while (start := text.find(OPEN, position)) >= 0:
        chosen = close = text.find(CLOSE, start + len(OPEN))
        if close < 0:
            raise Refused("`${{` is not closed with `}}`")
        while close >= 0:
            try:
                ast.parse(text[start + len(OPEN) : close].strip(), mode="eval")
            except (SyntaxError, RecursionError, MemoryError, ValueError):
                close = text.find(CLOSE, close + 1)
                continue
            chosen = close
            break
        found.append((start, chosen + len(CLOSE), text[start + len(OPEN) : chosen].strip()))
        position = chosen + len(CLOSE)
    return found


def template_expressions(text: str) -> list[str]:
    """The expression of every `${{ expr }}` in `text`; `ExpressionError` if one is unclosed."""
    try:
        return [expression for _, _, expression in _templates(text)]
    except Refused as refused:
        raise ExpressionError(text, str(refused)) from None


def whole_template(text: str) -> str | None:
    """The expression if `text` is exactly one `${{ expr }}` (spaces around allowed), else None."""
    try:
        found = _templates(text)
    except Refused:
        return None
    stripped = text.strip()
    whole = len(found) == 1 and found[0][1] - found[0][0] == len(stripped)
    return found[0][2] if whole and stripped.startswith(OPEN) else None


def is_template(text: str) -> bool:
    """Whether `text` holds a `${{ ... }}` template (so it is rendered, not taken as is)."""
    return isinstance(text, str) and OPEN in text


def _render_text(text: str, scope: Mapping[str, Any], step: str | None, arg: str | None) -> Any:
    try:
        found = _templates(text)
    except Refused as refused:
        raise ExpressionError(text, str(refused), step=step, argument=arg) from None
    expression = whole_template(text)
    if expression is not None:
        return evaluate(expression, scope, step=step, argument=arg)
    pieces, position = [], 0
    for start, end, inner in found:
        value = evaluate(inner, scope, step=step, argument=arg)
        if measure(value, MAX_SIZE, text=True) > MAX_SIZE:
            too_long = f"the value is too long to put in text (over {MAX_SIZE:,} characters)"
            raise ExpressionError(inner, too_long, step=step, argument=arg)
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str, ensure_ascii=False)
        pieces += [text[position:start], str(value)]
        position = end
    return "".join([*pieces, text[position:]])


def render(
    value: Any, scope: Mapping[str, Any], *, step: str | None = None, argument: str | None = None
) -> Any:
    """Render every template inside `value`, walking dicts and lists.

    A string that is exactly one `${{ expr }}` becomes the expression's value, whatever
    its type; templates inside longer text are interpolated (dicts and lists as JSON);
    other values come back unchanged. Errors inside a dict name the key path as the
    argument (`options.limit`).
    """
    if isinstance(value, str):
        return _render_text(value, scope, step, argument)
    if isinstance(value, Mapping):
        return {
            key: render(item, scope, step=step, argument=f"{argument}.{key}" if argument else key)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [render(item, scope, step=step, argument=argument) for item in value]
    return value


def _referenced(tree: ast.AST) -> set[str]:
    steps: set[str] = set()
    methods: set[int] = set()  # results.get(...) and results.keys() are calls, not step ids
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _on_results(node.func):
            assert isinstance(node.func, ast.Attribute)
            if node.func.attr in ALL_METHODS:
                methods.add(id(node.func))
                first = node.args[0] if node.args else None
                if node.func.attr == "get" and isinstance(first, ast.Constant):
                    steps.add(str(first.value))
        if isinstance(node, ast.Attribute) and _on_results(node) and id(node) not in methods:
            steps.add(node.attr)
        elif isinstance(node, ast.Subscript) and _on_results(node):
            key = node.slice.value if isinstance(node.slice, ast.Constant) else None
            steps.update([key] if isinstance(key, str) else [])
    return steps


def _on_results(node: ast.AST) -> bool:
    if not isinstance(node, ast.Attribute | ast.Subscript):
        return False
    return isinstance(node.value, ast.Name) and node.value.id == "results"


def referenced_steps(value: Any) -> set[str]:
    """Step ids named statically (`results.x`, `results["x"]`) by the templates in `value`.

    Walks dicts and lists; templates that do not parse are skipped (`check_expression`
    reports them).
    """
    if isinstance(value, Mapping | list | tuple):
        items = value.values() if isinstance(value, Mapping) else value
        return set().union(*(referenced_steps(item) for item in items))
    steps: set[str] = set()
    try:
        found = _templates(value) if isinstance(value, str) else []
    except Refused:
        return steps
    for _, _, expression in found:
        try:
            steps |= _referenced(parse_expression(expression))
        except Refused:
            continue
    return steps
