"""Restricted expressions: what they can do, every escape refused, work bounded."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flows.errors import ExpressionError
from flows.expressions import check_expression, evaluate
from flows.templates import (
    is_template,
    referenced_steps,
    render,
    template_expressions,
    whole_template,
)

SCOPE: dict[str, Any] = {
    "flow_input": {"n": 3, "name": "Ada"},
    "results": {
        "fetch": {"rows": [1, 2, 3]},
        "big": [{"id": 1, "v": 4}, {"id": 2, "v": 9}],
    },
    "previous_result": "last",
    "iter": {"value": {"id": 7}, "index": 2},
    "resume": None,
    "error": {"message": "boom", "name": "ValueError"},
}


def run(expression: str) -> Any:
    return evaluate(expression, SCOPE)


def refused(expression: str, scope: dict[str, Any] | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, SCOPE if scope is None else scope)
    return caught.value


# ---------------------------------------------------------------- allowed constructs


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("42", 42),
        ("'text'", "text"),
        ("None", None),
        ("[1, 'a', True]", [1, "a", True]),
        ("(1, 2)", (1, 2)),
        ("{1, 2}", {1, 2}),
        ("{'a': 1}", {"a": 1}),
        ("flow_input.n", 3),
        ("flow_input['n']", 3),
        ("results.fetch.rows", [1, 2, 3]),
        ("results['fetch']['rows'][1:]", [2, 3]),
        ("results.big[-1].v", 9),
        ("'abc'[::-1]", "cba"),
        ("iter.value.id + iter.index", 9),
        ("previous_result", "last"),
        ("error.message", "boom"),
        ("resume is None", True),
        ("1 + 2 * 3 - 4 / 2", 5.0),
        ("7 // 2, 7 % 2, 2 ** 10", (3, 1, 1024)),
        ("-flow_input.n", -3),
        ("not flow_input.n", False),
        ("1 < flow_input.n <= 3", True),
        ("'a' in 'cat' and 2 not in [1]", True),
        ("flow_input.n > 5 or 'fallback'", "fallback"),
        ("'many' if len(results.big) > 1 else 'few'", "many"),
        ("[x * 2 for x in results.fetch.rows if x > 1]", [4, 6]),
        ("{r.id: r.v for r in results.big}", {1: 4, 2: 9}),
        ("{x % 2 for x in results.fetch.rows}", {0, 1}),
        ("sum(x for x in results.fetch.rows)", 6),
        ("[(i, j) for i in range(3) for j in range(i)]", [(1, 0), (2, 0), (2, 1)]),
        ("[k for k, v in {'a': 1, 'b': 2}.items() if v > 1]", ["b"]),
        ("len(results.big), min(3, 1), max([4, 5]), abs(-2)", (2, 1, 5, 2)),
        ("sorted(['bb', 'a'], key=len)", ["a", "bb"]),
        ("sorted(results.fetch.rows, reverse=True)", [3, 2, 1]),
        ("max([], default=0)", 0),
        ("str(5) + str([1])", "5[1]"),
        ("int('42') + float('1.5')", 43.5),
        ("bool(0), round(2.567, 2)", (False, 2.57)),
        ("list('ab'), dict(a=1), dict([('b', 2)])", (["a", "b"], {"a": 1}, {"b": 2})),
        ("any(x > 2 for x in results.fetch.rows), all([])", (True, True)),
        ("list(enumerate('ab', start=1))", [(1, "a"), (2, "b")]),
        ("list(zip([1, 2], 'ab'))", [(1, "a"), (2, "b")]),
        ("range(3)", [0, 1, 2]),
        ("(x for x in [1, 2])", [1, 2]),
        ("results.keys()", ["fetch", "big"]),
        ("results.get('nope', 'default')", "default"),
        ("flow_input.name.lower().startswith('a')", True),
        ("' a,b '.strip().split(',')", ["a", "b"]),
        ("'-'.join(['a', 'b'])", "a-b"),
        ("'aXa'.replace('X', 'y').upper()", "AYA"),
        ("[3, 1, 3].count(3), (1, 2).index(2)", (2, 1)),
        ("(5).bit_length(), (2.0).is_integer()", (3, True)),
        ("f'{flow_input.name}: {flow_input.n:>3} {flow_input.name!r}'", "Ada:   3 'Ada'"),
    ],
)
def test_allowed_constructs(expression: str, expected: Any) -> None:
    assert run(expression) == expected


def test_comprehension_variables_are_local() -> None:
    assert run("[x for x in [1]] + [x for x in [2]]") == [1, 2]
    assert "name 'x' is not defined" in refused("[x for x in [1]] and x").detail


def test_attribute_reads_mapping_keys_at_any_depth() -> None:
    scope = {"results": {"a": {"b": {"c": [10, 20]}}}}
    assert evaluate("results.a.b.c[1]", scope) == 20


# ---------------------------------------------------------------- escapes refused


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("().__class__", "attribute '__class__' is not allowed"),
        ("().__class__.__bases__", "attribute '__bases__' is not allowed"),
        ("results.__dict__", "attribute '__dict__' is not allowed"),
        ("results._private", "attribute '_private' is not allowed"),
        ("[1]['__globals__']", "subscript '__globals__' is not allowed on a list"),
        ("'abc'['__len__']", "subscript '__len__' is not allowed on a str"),
        ("__builtins__", "name '__builtins__' is not allowed"),
        ("open('/etc/passwd')", "calls to 'open' are not allowed"),
        ("eval('1')", "calls to 'eval' are not allowed"),
        ("exec('1')", "calls to 'exec' are not allowed"),
        ("__import__('os')", "calls to '__import__' are not allowed"),
        ("getattr(1, 'real')", "calls to 'getattr' are not allowed"),
        ("type(1)", "calls to 'type' are not allowed"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("[(y := 1)]", "assignment (:=) is not allowed"),
        ("[*results]", "unpacking with * is not allowed"),
        ("{**results}", "unpacking with ** is not allowed"),
        ("len(*[[1]])", "unpacking with * is not allowed"),
        ("dict(**results)", "unpacking with * or ** in calls is not allowed"),
        ("len.__self__", "attribute '__self__' is not allowed"),
        ("len.__call__(1)", "attribute '__call__' is not allowed"),
        ("sorted.x", "`sorted` is a function, which has no attribute 'x'"),
        ("'{0.__class__}'.format(1)", "method 'format' is not allowed"),
        ("results.fetch.rows.append(4)", "method 'append' is not allowed"),
        ("results.fetch.rows.count.x", "is a list, which has no attribute 'count'"),
        ("[len][0]([])", "only builtins"),
        ("previous_result('x')", "calls to 'previous_result' are not allowed"),
        ("import os", "not a valid expression"),
        ("x = 1", "not a valid expression"),
        ("'%s' % 1", "formatting with % is not allowed"),
        ("1 | 2", "operator '|' is not allowed"),
        ("[x for x.y in [1]]", "cannot loop into `x.y`"),
        ("[x for x in len]", "cannot loop over a function"),
        ("len", "`len` is a function"),
    ],
)
def test_escapes_are_refused(expression: str, message: str) -> None:
    assert message in refused(expression).detail


def test_mutating_methods_leave_scope_data_alone() -> None:
    rows = SCOPE["results"]["fetch"]["rows"]
    refused("results.fetch.rows.append(4)")
    refused("results.fetch.update({})")
    assert rows == [1, 2, 3]


def test_refused_in_branches_that_would_not_run() -> None:
    # Checked before running, so dead code cannot hide a refused construct.
    assert "calls to 'open'" in refused("1 if True else open('x')").detail


def test_dunder_keys_of_dicts_are_just_keys() -> None:
    assert evaluate("d['__class__']", {"d": {"__class__": 1}}) == 1


# ---------------------------------------------------------------- work bounded


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("2 ** 10 ** 9", "over 4096 bits"),
        ("(10 ** 64) ** 64", "over 4096 bits"),
        ("(2 ** 4000) * (2 ** 4000)", "over 4096 bits"),
        ("'a' * 10 ** 9", "would have 1,000,000,000 items"),
        ("[0] * 10 ** 7", "would have 10,000,000 items"),
        ("'a' * 10 ** 6 + 'b'", "would have 1,000,001 items"),
        ("('a' * 999999).replace('a', 'aa')", "would have 1,999,998 items"),
        ("range(10 ** 12)", "the range would have"),
        ("str(['a' * 10 ** 6] * 2)", "the text would have"),
        ("f'{1:>100000}'", "asks for over 1000 characters"),
        ("round(1.5, -100)", "ndigits between -64 and 64"),
        ("sum([[1]] * 3, [])", "adds numbers only"),
        ("[[0 for a in range(10 ** 6)] for b in range(10 ** 6)]", "too much work"),
        ("sum(range(10 ** 6))", "too much work"),
        ("sorted(['a' * 999999] * 1000, key=str)", "too much work"),
        ("[s + 'x' for s in ['a' * 999999] * 100]", "characters of text"),
        ("[x in b for b in [list(range(10 ** 5))] for x in range(100)]", "too much work"),
    ],
)
def test_work_is_bounded(expression: str, message: str) -> None:
    started = time.monotonic()
    assert message in refused(expression).detail
    assert time.monotonic() - started < 5


def test_deep_nesting_is_refused() -> None:
    assert "nested" in refused("-" * 150 + "1").detail


def test_long_expressions_are_refused() -> None:
    assert "longer than" in refused("1" + " + 1" * 10_000).detail


# ---------------------------------------------------------------- errors are readable


def test_errors_name_step_argument_and_expression() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(" results.fetc.rows ", SCOPE, step="load", argument="rows")
    error = caught.value
    assert (error.step, error.argument, error.expression) == ("load", "rows", "results.fetc.rows")
    assert str(error) == (
        "step 'load', argument 'rows': expression `results.fetc.rows`: `results` has no key "
        "'fetc'; available: big, fetch; did you mean 'fetch'?"
    )


def test_unknown_name_lists_what_exists() -> None:
    detail = refused("flow_inpt.n").detail
    assert detail.startswith("name 'flow_inpt' is not defined; available: error, flow_input")
    assert detail.endswith("did you mean 'flow_input'?")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("'a' + 1", 'TypeError: can only concatenate str (not "int") to str'),
        ("results.fetch.rows[5]", "index 5 is out of range for `results.fetch.rows`"),
        ("flow_input.n.x", "`flow_input.n` is a int, which has no attribute 'x'"),
        ("int('x')", "ValueError: invalid literal for int()"),
        ("{[1]: 2}", "TypeError: unhashable type: 'list'"),
        ("results[[1]]", "a list cannot be a key"),
        ("1 +", "not a valid expression"),
        ("   ", "the expression is empty"),
    ],
)
def test_runtime_failures_are_wrapped(expression: str, message: str) -> None:
    assert message in refused(expression).detail


# ---------------------------------------------------------------- check_expression


def test_check_expression_checks_without_running() -> None:
    check_expression("len(results.x) > 0 and [y for y in flow_input.items]")
    check_expression("1 / 0")  # fails only when run
    with pytest.raises(ExpressionError, match=r"name 'flow_inpt' is not defined.*did you mean"):
        check_expression("flow_inpt.n")
    with pytest.raises(ExpressionError, match="attribute '__globals__' is not allowed"):
        check_expression("x.__globals__", names=None)
    with pytest.raises(ExpressionError, match="name 'results' is not defined; available: n"):
        check_expression("results.a", names=("n",))


# ---------------------------------------------------------------- templates and render


def test_render_whole_template_keeps_type() -> None:
    assert render("${{ results.fetch.rows }}", SCOPE) == [1, 2, 3]
    assert render("  ${{ flow_input.n }}  ", SCOPE) == 3
    assert render("${{ {'a': {'b': 1}} }}", SCOPE) == {"a": {"b": 1}}
    assert render("${{ '}}' }}", SCOPE) == "}}"


def test_render_embedded_templates_interpolate_as_text() -> None:
    text = "n=${{ flow_input.n }} rows=${{ results.fetch }} none=${{ resume }}"
    assert render(text, SCOPE) == 'n=3 rows={"rows": [1, 2, 3]} none=None'


def test_render_walks_dicts_and_lists() -> None:
    value = {"a": ["${{ flow_input.n }}", {"b": "x${{ iter.index }}"}], "c": 5, "d": "plain"}
    assert render(value, SCOPE) == {"a": [3, {"b": "x2"}], "c": 5, "d": "plain"}


def test_render_names_the_argument_path() -> None:
    with pytest.raises(ExpressionError) as caught:
        render({"options": {"limit": "${{ results.nope }}"}}, SCOPE, step="s")
    assert (caught.value.step, caught.value.argument) == ("s", "options.limit")


def test_render_refuses_unclosed_template() -> None:
    with pytest.raises(ExpressionError, match="not closed"):
        render("${{ 1 + 1", SCOPE, argument="a")


def test_template_helpers() -> None:
    assert is_template("a ${{ b }}") and not is_template("a {{ b }}")
    assert template_expressions("${{ a }} and ${{ {'b': 1} }}") == ["a", "{'b': 1}"]
    assert whole_template(" ${{ a }} ") == "a"
    assert whole_template("${{ a }} ${{ b }}") is None
    assert whole_template("x ${{ a }}") is None


def test_referenced_steps_finds_static_references() -> None:
    value = {
        "a": "${{ results.one + results['two'] }} and ${{ results.get('three') }}",
        "b": ["${{ len(results.four.rows) }}", "${{ results.keys() }}", 5],
        "c": "results.not_a_template ${{ flow_input.n }}",
        "d": "${{ results[flow_input.dynamic] }} ${{ broken( }}",
    }
    assert referenced_steps(value) == {"one", "two", "three", "four"}
