"""Flow files: load into models, round-trip, and refuse bad files with helpful errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from flows.errors import FlowSpecError
from flows.flow_files import dump_flow, load_flow, load_flow_file
from flows.spec import (
    ApprovalSpec,
    BranchSpec,
    FlowSpec,
    MockSpec,
    RetrySpec,
    StepSpec,
    iter_steps,
)

# The example of DESIGN.md, "Flow files", as written there.
EXAMPLE = """\
summary: Nightly import
schema: {type: object, properties: {n: {type: integer, default: 3}}}
steps:
  - id: fetch
    python: |
      def main(n: int):
          return [{"id": i, "v": i * i} for i in range(n)]
    args: {n: "${{ flow_input.n }}"}
    retry: {attempts: 3, backoff: exponential, delay: 1, multiplier: 2, max_delay: 30}
  - id: big
    sql: select id, v from rows where v > $min order by id
    args: {rows: "${{ results.fetch }}", min: 1}
  - id: each
    for_each: "${{ results.big }}"
    parallel: true
    parallelism: 4
    steps:
      - id: show
        python: "def main(x): return x['id']"
        args: {x: "${{ iter.value }}"}
  - id: route
    branch_one:
      - when: "${{ len(results.each) > 1 }}"
        steps: [{id: many, python: "def main(): return 'many'"}]
    default: [{id: few, python: "def main(): return 'few'"}]
  - id: ok
    approval: {timeout: 86400, required: 1}
on_failure:
  - id: report
    python: "def main(error: dict): return {'recovered': error['message']}"
    args: {error: "${{ error }}"}
"""

EXPECTED = FlowSpec(
    summary="Nightly import",
    schema_={"type": "object", "properties": {"n": {"type": "integer", "default": 3}}},
    steps=[
        StepSpec(
            id="fetch",
            python='def main(n: int):\n    return [{"id": i, "v": i * i} for i in range(n)]\n',
            args={"n": "${{ flow_input.n }}"},
            retry=RetrySpec(attempts=3, backoff="exponential", delay=1, multiplier=2, max_delay=30),
        ),
        StepSpec(
            id="big",
            sql="select id, v from rows where v > $min order by id",
            args={"rows": "${{ results.fetch }}", "min": 1},
        ),
        StepSpec(
            id="each",
            for_each="${{ results.big }}",
            parallel=True,
            parallelism=4,
            steps=[
                StepSpec(
                    id="show",
                    python="def main(x): return x['id']",
                    args={"x": "${{ iter.value }}"},
                )
            ],
        ),
        StepSpec(
            id="route",
            branch_one=[
                BranchSpec(
                    when="${{ len(results.each) > 1 }}",
                    steps=[StepSpec(id="many", python="def main(): return 'many'")],
                )
            ],
            default=[StepSpec(id="few", python="def main(): return 'few'")],
        ),
        StepSpec(id="ok", approval=ApprovalSpec(timeout=86400, required=1)),
    ],
    on_failure=[
        StepSpec(
            id="report",
            python="def main(error: dict): return {'recovered': error['message']}",
            args={"error": "${{ error }}"},
        )
    ],
)


def problem(text: str) -> FlowSpecError:
    with pytest.raises(FlowSpecError) as caught:
        load_flow(text, "flows/bad.yaml")
    return caught.value


# ---------------------------------------------------------------- loading and round trips


def test_design_example_loads_whole() -> None:
    flow = load_flow(EXAMPLE)
    assert flow == EXPECTED
    assert flow.schema_["properties"]["n"]["default"] == 3
    assert [step.kind for step in flow.steps] == [
        "python",
        "sql",
        "for_each",
        "branch_one",
        "approval",
    ]
    assert [s.id for s in iter_steps(flow.steps)] == [
        "fetch",
        "big",
        "each",
        "show",
        "route",
        "many",
        "few",
        "ok",
    ]


def test_defaults() -> None:
    flow = load_flow("steps: [{id: a, identity: true}]")
    assert flow.schema_ == {"type": "object", "properties": {}}
    assert (
        flow.on_failure,
        flow.timeout,
        flow.concurrency,
        flow.priority,
        flow.output,
        flow.dedicated,
    ) == ([], None, None, 0, None, False)
    step = flow.steps[0]
    assert step.kind == "identity"
    assert (step.mode, step.args, step.retry, step.continue_on_error, step.mock) == (
        "read",
        {},
        None,
        False,
        None,
    )


def test_json_is_accepted() -> None:
    assert load_flow(json.dumps(EXPECTED.model_dump(by_alias=True))) == EXPECTED


def test_round_trip() -> None:
    text = dump_flow(EXPECTED)
    assert load_flow(text) == EXPECTED
    # Code stays readable as a block, and defaults are left out.
    assert "    python: |\n      def main(n: int):\n" in text
    assert "mode:" not in text and "multiplier" not in text


def test_round_trip_of_every_kind_and_option() -> None:
    text = """\
summary: all
description: every kind
timeout: 60
priority: 5
dedicated: true
concurrency: {limit: 2, key: "tenant-${{ flow_input.tenant }}"}
schema: {type: object, properties: {tenant: {type: string}}}
steps:
  - {id: a, bash: "echo hi", timeout: 5, continue_on_error: true, cache_ttl: 30}
  - {id: b, script: f/tools/clean.py, skip_if: "${{ flow_input.tenant == 'x' }}"}
  - {id: c, flow: f/sub/flow.yaml, mock: {value: {ok: true}}}
  - {id: d, sql: "delete from t", mode: write}
  - id: e
    while: "${{ iter.index < 3 }}"
    max_iterations: 10
    steps: [{id: e1, identity: true, stop_after_if: "${{ result is None }}"}]
  - id: f
    branch_all:
      - {steps: [{id: f1, sleep: 0}], skip_failure: true}
      - {when: "${{ true_value }}", summary: second, steps: [{id: f2, sleep: "${{ 1 + 1 }}"}]}
    parallel: true
  - {id: g, for_each: [1, 2], skip_failures: true, steps: [{id: g1, identity: true}]}
  - {id: h, approval: {form: {type: object}, message: "please", required: 2}}
  - {id: i, python: "def main(): pass", retry: {attempts: 2, when: "${{ error.name == 'X' }}", jitter: 0.5}}
output: "${{ results.a }}"
""".replace("true_value", "flow_input.tenant")
    flow = load_flow(text)
    assert [s.kind for s in iter_steps(flow.steps)] == [
        "bash", "script", "flow", "sql", "while", "identity", "branch_all", "sleep", "sleep",
        "for_each", "identity", "approval", "python",
    ]  # fmt: skip
    assert flow.steps[2].mock == MockSpec(enabled=True, value={"ok": True})
    assert flow.steps[4].while_ == "${{ iter.index < 3 }}"
    assert flow.dedicated is True
    assert load_flow(dump_flow(flow)) == flow
    assert load_flow(json.dumps(flow.model_dump(by_alias=True))) == flow


@pytest.mark.parametrize(
    "text",
    [
        "yes",
        "null",
        "1.0",
        "  padded  ",
        "line\nwith trailing \nspaces ",
        "tab\there",
        "é ✓",
        "a: b",
        "- x",
        "\n",
    ],
)
def test_round_trip_of_awkward_strings(text: str) -> None:
    flow = FlowSpec(
        summary=text,
        steps=[StepSpec(id="a", bash=text + "\n" + text, args={text: [text, {"k": text}]})],
        output=text,
    )
    assert load_flow(dump_flow(flow)) == flow


def test_while_true_and_zero_sleep_are_kinds() -> None:
    flow = load_flow(
        "steps:\n  - {id: w, while: true, steps: [{id: s, sleep: 0}]}\n  - {id: x, while: 'true', steps: [{id: y, identity: true}]}"
    )
    assert [s.kind for s in iter_steps(flow.steps)] == ["while", "sleep", "while", "identity"]


def test_load_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text(EXAMPLE)
    assert load_flow_file(path) == EXPECTED
    with pytest.raises(FlowSpecError, match="cannot read the flow file") as caught:
        load_flow_file(tmp_path / "missing.yaml")
    assert caught.value.path == str(tmp_path / "missing.yaml")


def test_models_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        EXPECTED.steps[0].id = "other"


def test_retry_delays() -> None:
    retry = RetrySpec(attempts=6, backoff="exponential", delay=1, multiplier=2, max_delay=5)
    assert [retry.delay_before(n) for n in range(1, 7)] == [0, 1, 2, 4, 5, 5]
    assert RetrySpec(delay=3).delay_before(4) == 3
    assert RetrySpec(backoff="exponential", delay=1, multiplier=10).delay_before(10_000) == float(
        "inf"
    )
    jittered = RetrySpec(delay=10, jitter=0.5)
    delays = [jittered.delay_before(2, random.Random(seed)) for seed in range(50)]
    assert all(5 <= d <= 10 for d in delays) and len(set(delays)) > 1
    assert jittered.delay_before(2) == 10


# ---------------------------------------------------------------- errors: where and what


def test_misspelt_key() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    retyr: {attempts: 2}\n")
    assert (error.path, error.line, error.step, error.key) == ("flows/bad.yaml", 4, "a", "retyr")
    assert error.detail == "unknown key 'retyr'; did you mean 'retry'?"
    assert error.snippet == ("  2 |   - id: a\n  3 |     python: x\n> 4 |     retyr: {attempts: 2}")
    assert str(error).startswith("flows/bad.yaml:4, step 'a', key 'retyr': unknown key 'retyr'")


def test_misspelt_nested_key() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    retry:\n      atempts: 2\n")
    assert (error.line, error.step, error.key) == (5, "a", "retry.atempts")
    assert error.detail == "unknown key 'atempts'; did you mean 'attempts'?"


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    retry: {zzz: 2}\n")
    assert error.detail.startswith("unknown key 'zzz'; allowed keys: attempts, backoff, delay")


def test_misspelt_top_level_key_beats_missing_steps() -> None:
    error = problem("summary: x\nstepz:\n  - id: a\n")
    assert (error.line, error.key, error.detail) == (
        2,
        "stepz",
        "unknown key 'stepz'; did you mean 'steps'?",
    )


def test_step_with_two_kinds() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    sql: y\n")
    assert (error.line, error.step, error.key) == (4, "a", "sql")
    assert error.detail.startswith(
        "step 'a' has both `python` and `sql`; a step has exactly one kind: python, sql, bash"
    )


def test_step_without_kind() -> None:
    error = problem("steps:\n  - id: a\n    args: {}\n")
    assert (error.line, error.step, error.key) == (2, "a", None)
    assert error.detail.startswith("step 'a' has no kind; a step has exactly one of: python, sql")


def test_duplicate_ids_name_both_lines() -> None:
    text = "steps:\n  - id: a\n    python: x\n  - id: b\n    for_each: [1]\n    steps:\n      - id: a\n        python: y\n"
    error = problem(text)
    assert (error.line, error.step, error.key) == (7, "a", "id")
    assert "step id 'a' is used twice (lines 2 and 7)" in error.detail
    assert "> 7 |       - id: a" in error.snippet


def test_duplicate_id_in_on_failure() -> None:
    error = problem("steps: [{id: a, python: x}]\non_failure: [{id: a, python: y}]\n")
    assert error.line == 2 and "used twice" in error.detail


def test_duplicate_yaml_key() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    python: y\n")
    assert (error.line, error.step, error.key) == (3, "a", "python")
    assert error.detail == "key 'python' appears twice in one mapping (lines 3 and 4)"


@pytest.mark.parametrize(
    ("text", "line", "key", "detail"),
    [
        ("", None, None, "the flow file is empty; a flow needs at least `steps:`"),
        ("- a\n- b\n", 1, None, "a flow file is a mapping with `steps:` at the top, not a list"),
        ("summary: x\n", 1, "steps", "a flow needs `steps`: the list of steps it runs"),
        ("steps: []\n", 1, "steps", "a flow needs at least one step"),
    ],
)
def test_flow_shape(text: str, line: int | None, key: str | None, detail: str) -> None:
    error = problem(text)
    assert (error.line, error.key, error.detail) == (line, key, detail)


def test_dedicated_must_be_a_boolean() -> None:
    error = problem("dedicated: sometimes\nsteps: [{id: a, identity: true}]\n")
    assert (error.line, error.key) == (1, "dedicated")
    assert "valid boolean" in error.detail and "'sometimes'" in error.detail


def test_yaml_syntax_error_has_its_line() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    args: {a: [1, 2}\n  - id: b\n")
    assert error.line == 4 and error.detail.startswith("not valid YAML: ")
    assert "> 4 |     args: {a: [1, 2}" in error.snippet


def test_yaml_alias_bomb_is_refused() -> None:
    rows = ["a: &a [1,1,1,1,1,1,1,1,1,1]"] + [
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]" for p, n in zip("abcde", "bcdef", strict=True)
    ]
    error = problem("\n".join([*rows, "steps: *f"]))
    assert "aliases are expanded" in error.detail


@pytest.mark.parametrize(
    ("step", "key", "detail"),
    [
        ("{id: a, python: x, mode: write}", "mode", "`mode` is only for sql steps, not python"),
        (
            "{id: a, for_each: [1], parallelism: 2, steps: [{id: b, identity: true}]}",
            "parallelism",
            "`parallelism` needs `parallel: true`",
        ),
        (
            "{id: a, python: x, parallel: true}",
            "parallel",
            "`parallel` is only for for_each and branch_all steps, not python",
        ),
        (
            "{id: a, python: x, default: [{id: b, identity: true}]}",
            "default",
            "`default` is only for branch_one steps, not python",
        ),
        (
            "{id: a, for_each: [1]}",
            "for_each",
            "a for_each step needs `steps`: the steps its body runs",
        ),
        ("{id: a, while: true}", "while", "a while step needs `steps`: the steps its body runs"),
        (
            "{id: a, python: x, steps: [{id: b, identity: true}]}",
            "steps",
            "`steps` is only for for_each and while steps, not python; a branch keeps its steps under each branch",
        ),
        (
            "{id: a, branch_one: [{steps: []}]}",
            "branch_one[0].when",
            "every branch of branch_one needs `when` (use `default` for the fallback)",
        ),
        ("{id: a, sleep: [1]}", "sleep", "`sleep` should be a number or a string, got [1]"),
        ("{id: a, sleep: -1}", "sleep", "input should be greater than or equal to 0, got -1"),
        (
            "{id: a, python: x, retry: {attempts: 0}}",
            "retry.attempts",
            "input should be greater than or equal to 1, got 0",
        ),
        (
            "{id: a, python: x, retry: {backoff: linear}}",
            "retry.backoff",
            "input should be 'constant' or 'exponential', got 'linear'",
        ),
        (
            "{id: 1a, python: x}",
            "id",
            "step id '1a' is not valid: use letters, digits and _, not starting with a digit, since other steps read it as results.1a",
        ),
        ("{python: x}", "id", "missing required key 'id'"),
        (
            "{id: a, approval: {form: {type: 5}}}",
            "approval.form",
            "`form` is not a valid JSON Schema: 5 is not valid under any of the given schemas",
        ),
    ],
)
def test_step_option_errors(step: str, key: str, detail: str) -> None:
    error = problem(f"summary: x\nsteps:\n  - {step}\n")
    assert (error.line, error.key, error.detail) == (3, key, detail)


def test_invalid_json_schema() -> None:
    error = problem("schema: {type: objekt}\nsteps: [{id: a, identity: true}]\n")
    assert (error.line, error.key) == (1, "schema")
    assert error.detail.startswith("`schema` is not a valid JSON Schema: 'objekt' is not valid")


# ---------------------------------------------------------------- errors: expressions and references


def test_invalid_expression_in_args() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    args:\n      v: '${{ x.__class__ }}'\n")
    assert (error.line, error.step, error.key) == (5, "a", "args.v")
    assert error.detail == "`${{ x.__class__ }}`: attribute '__class__' is not allowed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("skip_if", "'${{ open(1) }}'"),
        ("stop_after_if", "'eval(1)'"),
        ("retry", "{when: '${{ error.__class__ }}'}"),
        ("for_each", "'${{ lambda: 1 }}'"),
        ("sleep", "'${{ 1 +  }}'"),
    ],
)
def test_invalid_expressions_in_conditions(field: str, value: str) -> None:
    kind = "" if field in ("for_each", "sleep") else "python: x, "
    body = ", steps: [{id: b, identity: true}]" if field == "for_each" else ""
    error = problem(f"steps:\n  - {{id: a, {kind}{field}: {value}{body}}}\n")
    assert (error.line, error.step) == (2, "a")
    assert "not allowed" in error.detail or "not a valid expression" in error.detail


def test_unknown_name_with_did_you_mean() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    skip_if: flow_inpt.n > 3\n")
    assert (error.line, error.key) == (4, "skip_if")
    assert error.detail.endswith(
        "name 'flow_inpt' is not defined; available: error, flow_input, iter, previous_result, result, results, resume; did you mean 'flow_input'?"
    )


def test_condition_must_be_one_expression() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    skip_if: 'n is ${{ flow_input.n }}'\n")
    assert error.key == "skip_if"
    assert error.detail.startswith("`skip_if` takes one expression")


def test_unclosed_template() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    args: {v: 'a ${{ 1'}\n")
    assert (error.line, error.key, error.detail) == (4, "args.v", "`${{` is not closed with `}}`")


def test_reference_to_unknown_step() -> None:
    text = "steps:\n  - id: fetch\n    python: x\n  - id: b\n    python: y\n    args: {v: '${{ results.fetc.rows }}'}\n"
    error = problem(text)
    assert (error.line, error.step, error.key) == (6, "b", "args.v")
    assert (
        error.detail
        == "step 'b' uses results.fetc, but there is no step 'fetc'; did you mean 'fetch'?"
    )


def test_reference_to_later_step() -> None:
    error = problem(
        "steps:\n  - id: a\n    python: x\n    args: {v: '${{ results[\"b\"] }}'}\n  - id: b\n    python: y\n"
    )
    assert (error.line, error.step) == (4, "a")
    assert (
        error.detail
        == "step 'a' uses results.b, but 'b' runs after 'a'; a step can only use the results of steps that finish before it"
    )


def test_reference_to_itself_is_a_cycle() -> None:
    error = problem("steps:\n  - id: a\n    python: x\n    skip_if: ${{ results.a }}\n")
    assert (
        error.detail
        == "step 'a' uses results.a, but that is its own result, which does not exist yet (a cycle)"
    )


def test_reference_to_enclosing_step_is_a_cycle() -> None:
    error = problem(
        "steps:\n  - id: each\n    for_each: [1]\n    steps:\n      - {id: show, python: x, args: {v: '${{ results.each }}'}}\n"
    )
    assert (error.line, error.step, error.key) == (5, "show", "args.v")
    assert (
        error.detail
        == "step 'show' uses results.each, but 'each' contains 'show' and finishes after it (a cycle)"
    )


def test_reference_into_a_loop_from_outside() -> None:
    text = "steps:\n  - id: each\n    for_each: [1]\n    steps: [{id: show, python: x}]\n  - {id: b, python: y, args: {v: '${{ results.show }}'}}\n"
    error = problem(text)
    assert error.detail.startswith(
        "step 'b' uses results.show, but 'show' runs inside for_each 'each'"
    )
    assert error.detail.endswith("use results.each (its iterations' results)")


def test_reference_to_on_failure_step_from_the_flow() -> None:
    error = problem(
        "steps: [{id: a, python: x, args: {v: '${{ results.rep }}'}}]\non_failure: [{id: rep, python: y}]\n"
    )
    assert (
        error.detail
        == "step 'a' uses results.rep, but 'rep' is an on_failure step, which runs only when the flow fails"
    )


def test_concurrency_key_sees_flow_input_only() -> None:
    error = problem(
        "concurrency: {limit: 1, key: '${{ results.a }}'}\nsteps: [{id: a, python: x}]\n"
    )
    assert (error.line, error.key) == (1, "concurrency.key")
    assert (
        "name 'results' is not defined" in error.detail and "from flow_input only" in error.detail
    )


def test_allowed_references() -> None:
    flow = load_flow(
        """\
steps:
  - {id: a, python: x}
  - id: loop
    for_each: "${{ results.a }}"
    steps:
      - {id: inner1, python: x, args: {v: "${{ results.a }}"}}
      - {id: inner2, python: x, args: {v: "${{ results.inner1 }}"}, stop_after_if: "${{ results.inner2 }}"}
  - id: route
    branch_one:
      - {when: "${{ results.loop }}", steps: [{id: picked, python: x}]}
    default: [{id: other, python: x, args: {v: "${{ results.loop }}"}}]
  - {id: after, python: x, args: {v: "${{ [results.picked, results.other, results.get('picked')] }}"}}
output: "${{ results.after }}"
on_failure:
  - {id: rep, python: x, args: {v: "${{ results.inner2 }}"}}
  - {id: rep2, python: x, args: {v: "${{ results.rep }}"}}
"""
    )
    assert [s.id for s in flow.on_failure] == ["rep", "rep2"]


def test_first_problem_in_the_file_wins() -> None:
    text = "steps:\n  - {id: a, python: x, args: {v: '${{ results.zz }}'}}\n  - {id: b, python: y, args: {v: '${{ open() }}'}}\n"
    assert problem(text).line == 2
