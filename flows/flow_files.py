"""Flow files: YAML (or JSON) into the models of `flows/spec.py`, and back.

`load_flow` checks a file completely before anything runs: structure and types through
pydantic, then what pydantic cannot see (duplicate step ids, expressions, `results.x`
references to unknown or later steps). A bad file raises one `FlowSpecError` for its
first problem, with the line, the step, the key, a "did you mean" and a snippet.
`dump_flow` writes a model back; `load_flow(dump_flow(flow)) == flow`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from flows.errors import ExpressionError, FlowSpecError
from flows.expressions import SCOPE_NAMES, check_expression
from flows.spec import (
    KIND_FIELDS,
    DataPath,
    FlowSpec,
    StepSpec,
    iter_steps,
)
from flows.templates import referenced_steps, template_expressions, whole_template

# Expanding YAML aliases can multiply a small file ("billion laughs"); stop early.
_MAX_NODES = 200_000


# ---------------------------------------------------------------- where things are in the file


@dataclass
class _Source:
    """A flow file's text and the line of every key and value in it (1-based)."""

    text: str
    path: str
    keys: dict[DataPath, int]
    values: dict[DataPath, int]
    duplicates: list[tuple[DataPath, int, int]]

    def line(self, path: DataPath) -> int | None:
        """The line of the key at `path`, else of its value, else of the nearest parent."""
        for end in range(len(path), -1, -1):
            found = self.keys.get(path[:end]) or self.values.get(path[:end])
            if found:
                return found
        return None

    def snippet(self, line: int | None) -> str:
        """The lines around `line`, numbered, with `>` on `line` itself."""
        lines = self.text.splitlines()
        if line is None or not 1 <= line <= len(lines) + 1:
            return ""
        line = min(line, len(lines))  # YAML reports an unexpected end just past the last line
        numbers = range(max(1, line - 2), min(len(lines), line + 2) + 1)
        width = len(str(numbers[-1]))
        return "\n".join(
            f"{'>' if n == line else ' '} {n:>{width}} | {lines[n - 1][:160]}" for n in numbers
        )

    def error(self, message: str, line: int | None, **where: str | None) -> FlowSpecError:
        return FlowSpecError(
            message, path=self.path, line=line, snippet=self.snippet(line), **where
        )


def _read_yaml(text: str, path: str) -> tuple[Any, _Source]:
    source = _Source(text, path, {}, {}, [])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
        if node is not None:
            _index(loader, node, (), source, [0])
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = error.problem or error.context or "cannot be read"
        raise source.error(f"not valid YAML: {problem}", line) from None
    except (yaml.YAMLError, RecursionError) as error:
        raise source.error(f"not valid YAML: {error or 'nested too deeply'}", None) from None
    finally:
        loader.dispose()
    return data, source


def _index(
    loader: yaml.SafeLoader, node: yaml.Node, path: DataPath, source: _Source, count: list[int]
) -> None:
    count[0] += 1
    if count[0] > _MAX_NODES:
        too_big = f"the flow file has over {_MAX_NODES:,} values once its YAML aliases are expanded"
        raise source.error(too_big, node.start_mark.line + 1)
    source.values.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(loader, item, (*path, index), source, count)
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[Any, int] = {}
    for key_node, value_node in node.value:
        try:
            key = loader.construct_object(key_node, deep=True)
            hash(key)
        except (yaml.YAMLError, TypeError):
            continue
        line = key_node.start_mark.line + 1
        if key in first:  # YAML would silently keep the last one
            source.duplicates.append(((*path, key), first[key], line))
        first.setdefault(key, line)
        source.keys.setdefault((*path, key), line)
        _index(loader, value_node, (*path, key), source, count)


def _field_named(model: type[BaseModel], name: Any) -> Any:
    for field_name, info in model.model_fields.items():
        if (info.validation_alias or field_name) == name:
            return info.annotation
    return None


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside a field's type, and whether the field is a list of it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if get_origin(annotation) is list:
        return _model_in(get_args(annotation)[0])[0], True
    if get_origin(annotation) in (Union, UnionType):
        for member in get_args(annotation):
            model, is_list = _model_in(member)
            if model is not None:
                return model, is_list
    return None, False


@dataclass(frozen=True)
class _Location:
    model: type[BaseModel] | None  # whose keys the last part of the path is among
    step: str | None  # the innermost step around the path
    key: str | None  # the path from that step (or the top), readable: retry.when


def _locate(data: Any, path: DataPath) -> _Location:
    model: type[BaseModel] | None = FlowSpec
    node, step, start, index = data, None, 0, 0
    while index < len(path) and model is not None:
        inner, is_list = _model_in(_field_named(model, path[index]))
        if _field_named(model, path[index]) is None:
            break
        node = node.get(path[index]) if isinstance(node, dict) else None
        index += 1
        item = path[index] if index < len(path) else None
        if is_list and isinstance(item, int):
            node = node[item] if isinstance(node, list) and item < len(node) else None
            index += 1
        elif is_list:
            inner = None
        model = inner
        if model is StepSpec:
            found = node.get("id") if isinstance(node, dict) else None
            step, start = (found if isinstance(found, str) else None), index
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[start:]).lstrip(".")
    return _Location(model, step, key or None)


def _fail(
    source: _Source, data: Any, path: DataPath, message: str, key: str | None = None
) -> FlowSpecError:
    where = _locate(data, path)
    return source.error(message, source.line(path), step=where.step, key=key or where.key)


# ---------------------------------------------------------------- pydantic errors, readable

_WORDS = {
    "string_type": "a string", "float_type": "a number", "float_parsing": "a number",
    "int_type": "an integer", "int_parsing": "an integer", "bool_type": "true or false",
    "bool_parsing": "true or false", "list_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping",
}  # fmt: skip


def _data_path(data: Any, error: Any) -> DataPath:
    """The part of a pydantic `loc` that exists in the data (union member names dropped)."""
    path: DataPath = ()
    node = data
    for part in error["loc"]:
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_list or (isinstance(node, dict) and part in node):
            node = node[part]
        else:
            if error["type"] == "missing":
                path = (*path, part)
            break
        path = (*path, part)
    return path


def _readable(errors: list[Any], data: Any, path: DataPath) -> tuple[str, DataPath, str | None]:
    """Message, path to point at and key for the errors pydantic gave for one place."""
    first = errors[0]
    kind, name = first["type"], str(path[-1]) if path else "flow"
    if kind == "flow_spec":
        ctx = first["ctx"]
        key = ctx.get("key")
        return ctx["message"], (*path, *ctx.get("where", ()), *([key] if key else [])), None
    if kind == "extra_forbidden":
        model = _locate(data, path).model or FlowSpec
        allowed = [str(info.validation_alias or f) for f, info in model.model_fields.items()]
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; allowed keys: {', '.join(allowed)}"
        return f"unknown key '{name}'{hint}", path, None
    if kind == "missing":
        if path == ("steps",):
            return "a flow needs `steps`: the list of steps it runs", (), "steps"
        return f"missing required key '{name}'", path, None
    if kind == "too_short" and path == ("steps",):
        return "a flow needs at least one step", path, None
    got = repr(first["input"])[:80]
    words = [_WORDS[e["type"]] for e in errors if e["type"] in _WORDS]
    if len(words) > 1:
        return f"`{name}` should be {' or '.join(dict.fromkeys(words))}, got {got}", path, None
    message = first["msg"][0].lower() + first["msg"][1:]
    return f"{message}, got {got}", path, None


def _from_pydantic(error: ValidationError, data: Any, source: _Source) -> FlowSpecError:
    grouped: dict[DataPath, list[Any]] = {}
    for item in error.errors(include_url=False):
        grouped.setdefault(_data_path(data, item), []).append(item)
    found = [(_readable(items, data, path), items[0]["type"]) for path, items in grouped.items()]
    # A missing key is often explained by a misspelt one elsewhere: report that first.
    rank = {id(item): index for index, item in enumerate(found)}
    (message, path, key), _ = min(
        found, key=lambda f: (f[1] == "missing", source.line(f[0][1]) or 0, rank[id(f)])
    )
    return _fail(source, data, path, message, key)


# ---------------------------------------------------------------- checks pydantic cannot make


@dataclass(frozen=True)
class _Problem:
    path: DataPath
    message: str


@dataclass(frozen=True)
class _Here:
    """What an expression at one place may use: the ids it sees, and whose it is."""

    visible: frozenset[str]
    step: StepSpec | None = None
    who: str = ""


class _Checker:
    """Duplicate ids, expressions and `results.x` references, in file order.

    A step sees the results of steps that finish before it: earlier siblings, steps
    earlier in enclosing bodies, and (as the engine merges them) steps inside earlier
    branch steps; never its own, an enclosing step's, or a loop body's from outside.
    """

    def __init__(self, flow: FlowSpec, line_of: Callable[[DataPath], int | None]) -> None:
        self.flow, self.line_of = flow, line_of
        self.where: dict[str, tuple[DataPath, tuple[StepSpec, ...]]] = {}
        self.problems: list[_Problem] = []

    def run(self) -> list[_Problem]:
        flow = self.flow
        self.index(flow.steps, ("steps",), ())
        self.index(flow.on_failure, ("on_failure",), ())
        self.body(flow.steps, ("steps",), frozenset())
        self.body(flow.on_failure, ("on_failure",), frozenset(s.id for s in iter_steps(flow.steps)))
        self.value(flow.output, ("output",), _Here(_exposed(flow.steps), who="`output`"))
        if flow.concurrency is not None:
            self.value(flow.concurrency.key, ("concurrency", "key"), _Here(frozenset()))
        return self.problems

    def index(self, steps: list[StepSpec], path: DataPath, around: tuple[StepSpec, ...]) -> None:
        for number, step in enumerate(steps):
            here = (*path, number)
            if step.id in self.where:
                lines = [self.line_of((*p, "id")) for p in (self.where[step.id][0], here)]
                on = f" (lines {lines[0]} and {lines[1]})" if None not in lines else ""
                twice = f"step id '{step.id}' is used twice{on}; step ids are unique in a flow"
                self.problems.append(_Problem((*here, "id"), twice + ", nested steps included"))
            self.where.setdefault(step.id, (here, around))
            for body, body_path in _bodies(step, here):
                self.index(body, body_path, (*around, step))

    def body(self, steps: list[StepSpec], path: DataPath, visible: frozenset[str]) -> None:
        for number, step in enumerate(steps):
            self.step(step, (*path, number), _Here(visible, step, f"step '{step.id}'"))
            visible = visible | _exposed([step])

    def step(self, step: StepSpec, path: DataPath, here: _Here) -> None:
        self.value(step.args, (*path, "args"), here)
        for name in ("for_each", "while", "sleep", "skip_if"):
            self.condition(getattr(step, KIND_FIELDS.get(name, name)), (*path, name), here)
        # stop_after_if runs once the step is done, so its own result is there too.
        after = _Here(here.visible | {step.id}, step, here.who)
        self.condition(step.stop_after_if, (*path, "stop_after_if"), after)
        self.condition(step.retry and step.retry.when, (*path, "retry", "when"), here)
        for kind in ("branch_one", "branch_all"):
            for number, branch in enumerate(getattr(step, kind) or []):
                self.condition(branch.when, (*path, kind, number, "when"), here)
        for body, body_path in _bodies(step, path):
            self.body(body, body_path, here.visible)

    def condition(self, value: Any, path: DataPath, here: _Here) -> None:
        """A field holding one expression: `${{ expr }}` or the bare expression."""
        if not isinstance(value, str) or (path[-1] == "while" and value.strip().lower() == "true"):
            return
        expression = whole_template(value)
        if expression is None and "${{" in value:
            one = "one expression, `${{ expr }}` or bare, not text around templates"
            self.problems.append(_Problem(path, f"`{path[-1]}` takes {one}"))
            return
        self.expression(value.strip() if expression is None else expression, path, here)

    def value(self, value: Any, path: DataPath, here: _Here) -> None:
        """Every template in a value that is rendered (dicts and lists walked)."""
        if isinstance(value, dict | list):
            for key, item in value.items() if isinstance(value, dict) else enumerate(value):
                self.value(item, (*path, key), here)
        elif isinstance(value, str):
            try:
                for expression in template_expressions(value):
                    self.expression(expression, path, here)
            except ExpressionError as error:
                self.problems.append(_Problem(path, error.detail))

    def expression(self, expression: str, path: DataPath, here: _Here) -> None:
        queued = path == ("concurrency", "key")  # worked out before any step runs
        try:
            check_expression(expression, names=("flow_input",) if queued else SCOPE_NAMES)
        except ExpressionError as error:
            hint = " (it is worked out when a run is queued, from flow_input only)"
            message = f"`${{{{ {expression} }}}}`: {error.detail}{hint if queued else ''}"
            self.problems.append(_Problem(path, message))
            return
        for name in sorted(referenced_steps(f"${{{{ {expression} }}}}") - here.visible):
            why = self.unseen(name, here)
            self.problems.append(_Problem(path, f"{here.who} uses results.{name}, but {why}"))

    def unseen(self, name: str, here: _Here) -> str:
        """Why step `name` is not visible `here`, as the end of a sentence."""
        step = here.step
        if step is not None and name == step.id:
            return "that is its own result, which does not exist yet (a cycle)"
        if name not in self.where:
            close = difflib.get_close_matches(name, sorted(here.visible or self.where), n=1)
            return f"there is no step '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
        path, around = self.where[name]
        mine = {s.id for s in self.where[step.id][1]} if step is not None else set()
        if step is not None and name in mine:
            return f"'{name}' contains '{step.id}' and finishes after it (a cycle)"
        loop = next(
            (s for s in around if s.kind in ("for_each", "while") and s.id not in mine), None
        )
        if loop is not None:
            return (
                f"'{name}' runs inside {loop.kind} '{loop.id}', which is not visible here; "
                f"use results.{loop.id} (its iterations' results)"
            )
        if path[0] == "on_failure" and (step is None or self.where[step.id][0][0] != "on_failure"):
            return f"'{name}' is an on_failure step, which runs only when the flow fails"
        after = f"'{step.id}'" if step else "it"
        return f"'{name}' runs after {after}; a step can only use the results of steps that finish before it"


def _bodies(step: StepSpec, path: DataPath) -> list[tuple[list[StepSpec], DataPath]]:
    found = [(step.steps, (*path, "steps"))] if step.steps else []
    for kind in ("branch_one", "branch_all"):
        for number, branch in enumerate(getattr(step, kind) or []):
            found.append((branch.steps, (*path, kind, number, "steps")))
    return [*found, *([(step.default, (*path, "default"))] if step.default else [])]


def _exposed(steps: list[StepSpec]) -> frozenset[str]:
    """Ids visible after `steps` ran: theirs, and those inside branches (the engine merges them)."""
    ids = {step.id for step in steps}
    for step in steps:
        if step.kind in ("branch_one", "branch_all"):
            ids |= _exposed([s for body, _ in _bodies(step, ()) for s in body])
    return frozenset(ids)


# ---------------------------------------------------------------- public


def load_flow(text: str, path: str = "<flow>") -> FlowSpec:
    """Read a flow from YAML (or JSON) text; `path` names the file in errors.

    Raises `FlowSpecError` for the first problem in the file, with its line and snippet.
    """
    data, source = _read_yaml(text, path)
    if source.duplicates:
        key_path, first, again = source.duplicates[0]
        twice = f"key '{key_path[-1]}' appears twice in one mapping (lines {first} and {again})"
        raise _fail(source, data, key_path, twice)
    if data is None:
        raise source.error("the flow file is empty; a flow needs at least `steps:`", None)
    if not isinstance(data, dict):
        raise source.error(
            f"a flow file is a mapping with `steps:` at the top, not a {type(data).__name__}", 1
        )
    try:
        flow = FlowSpec.model_validate(data)
    except ValidationError as error:
        raise _from_pydantic(error, data, source) from None
    problems = _Checker(flow, source.line).run()
    if problems:
        order = {id(problem): number for number, problem in enumerate(problems)}
        earliest = min(problems, key=lambda p: (source.line(p.path) or 0, order[id(p)]))
        raise _fail(source, data, earliest.path, earliest.message)
    return flow


def load_flow_file(path: str | Path) -> FlowSpec:
    """Read a flow file (YAML or JSON)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FlowSpecError(f"cannot read the flow file: {error}", path=str(path)) from None
    return load_flow(text, str(path))


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Code reads best as a block: `python: |` followed by the lines as written.
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


class _Dumper(yaml.SafeDumper):
    yaml_representers: ClassVar[dict[Any, Any]] = {
        **yaml.SafeDumper.yaml_representers,
        str: _represent_str,
    }

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # indent list items under their key


def dump_flow(flow: FlowSpec) -> str:
    """The flow as YAML, defaults left out; `load_flow(dump_flow(flow)) == flow`."""
    data = flow.model_dump(by_alias=True, exclude_defaults=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
