"""The engine on real kernels and a real DuckDB store: every step kind and option."""

from __future__ import annotations

import time

import pytest

from flows.errors import ApprovalError


def test_design_example_runs_end_to_end(flows):
    outcome = flows.run(
        """
        summary: Nightly import
        schema: {type: object, properties: {n: {type: integer, default: 3}}}
        steps:
          - id: fetch
            python: |
              def main(n: int):
                  return [{"id": i, "v": i * i} for i in range(n)]
            args: {n: "${{ flow_input.n }}"}
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
        """,
        {"n": 4},
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == "many"
    steps = {s.key: s for s in flows.steps(outcome.run.id)}
    assert steps["fetch"].result == [{"id": i, "v": i * i} for i in range(4)]
    assert steps["big"].result == [{"id": 2, "v": 4}, {"id": 3, "v": 9}]
    assert steps["each"].result == [2, 3]
    assert steps["each/1/show"].result == 3
    assert "route/0/many" in steps and "route/default/few" not in steps


def test_default_input_and_output_expression(flows):
    outcome = flows.run(
        """
        schema: {type: object, properties: {who: {type: string, default: "world"}}}
        steps:
          - id: greet
            python: "def main(who): return 'hello ' + who"
            args: {who: "${{ flow_input.who }}"}
        output: {greeting: "${{ results.greet }}", text: "said ${{ results.greet }}!"}
        """
    )
    assert outcome.run.result == {"greeting": "hello world", "text": "said hello world!"}


def test_retry_until_success_counts_attempts_and_waits(flows, tmp_path):
    counter = tmp_path / "count"
    started = time.monotonic()
    outcome = flows.run(
        f"""
        steps:
          - id: flaky
            python: |
              def main():
                  from pathlib import Path
                  p = Path({str(counter)!r})
                  n = int(p.read_text()) + 1 if p.exists() else 1
                  p.write_text(str(n))
                  if n < 3:
                      raise RuntimeError(f"attempt {{n}} failed")
                  return n
            retry: {{attempts: 3, backoff: exponential, delay: 0.2, multiplier: 2}}
        """
    )
    elapsed = time.monotonic() - started
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == 3
    attempts = [
        s for s in flows.steps(outcome.run.id) if s.key == "flaky" and s.status != "running"
    ]
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, "failure"),
        (2, "failure"),
        (3, "success"),
    ]
    assert elapsed >= 0.2 + 0.4


def test_retry_when_decides_from_the_error(flows):
    outcome = flows.run(
        """
        steps:
          - id: bad
            python: "def main(): raise ValueError('permanent')"
            retry: {attempts: 5, delay: 0, when: "${{ error.name != 'ValueError' }}"}
        """
    )
    assert outcome.run.status == "failure"
    assert [
        s.status for s in flows.steps(outcome.run.id) if s.key == "bad" and s.status != "running"
    ] == ["failure"]
    assert outcome.run.error is not None and outcome.run.error["message"] == "permanent"
    assert outcome.run.error["step_id"] == "bad"


def test_on_failure_handler_recovers_the_run(flows):
    outcome = flows.run(
        """
        steps:
          - id: ok
            python: "def main(): return 1"
          - id: boom
            python: |
              def main():
                  raise RuntimeError("disk full")
        on_failure:
          - id: report
            python: "def main(error: dict): return {'recovered': error['message'], 'step': error['step_id']}"
            args: {error: "${{ error }}"}
        """
    )
    assert outcome.run.status == "success"
    assert outcome.run.recovered is True
    assert outcome.run.result == {"recovered": "disk full", "step": "boom"}
    assert "RuntimeError: disk full" in (outcome.run.error or {}).get("traceback", "")


def test_continue_on_error_and_skip_if(flows):
    outcome = flows.run(
        """
        steps:
          - id: fails
            python: "def main(): raise KeyError('x')"
            continue_on_error: true
          - id: skipped
            python: "def main(): return 'ran'"
            skip_if: "${{ True }}"
          - id: after
            python: "def main(prev): return prev"
            args: {prev: "${{ results.fails.error.name }}"}
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == "KeyError"
    statuses = {s.key: s.status for s in flows.steps(outcome.run.id)}
    assert statuses["skipped"] == "skipped"


def test_while_loop_stops_after_if_and_max_iterations(flows):
    outcome = flows.run(
        """
        steps:
          - id: loop
            while: "true"
            steps:
              - id: tick
                python: "def main(i): return i * 10"
                args: {i: "${{ iter.index }}"}
                stop_after_if: "${{ result >= 30 }}"
          - id: capped
            while: "${{ True }}"
            max_iterations: 2
            steps: [{id: t, identity: true, args: {v: 1}}]
        output: ["${{ results.loop }}", "${{ results.capped }}"]
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == [[0, 10, 20, 30], [{"v": 1}, {"v": 1}]]


def test_parallel_for_each_runs_at_once_and_keeps_order(flows):
    started = time.monotonic()
    outcome = flows.run(
        """
        steps:
          - id: each
            for_each: [4, 3, 2, 1]
            parallel: true
            parallelism: 4
            steps:
              - id: nap
                python: |
                  import time
                  def main(x):
                      time.sleep(1.0)
                      return x * 2
                args: {x: "${{ iter.value }}"}
        """
    )
    elapsed = time.monotonic() - started
    assert outcome.run.result == [8, 6, 4, 2]
    assert elapsed < 3.0  # sequential would take 4 s or more


def test_for_each_skip_failures_keeps_going(flows):
    outcome = flows.run(
        """
        steps:
          - id: each
            for_each: [1, 0, 2]
            skip_failures: true
            steps:
              - id: inv
                python: "def main(x): return 10 // x"
                args: {x: "${{ iter.value }}"}
        """
    )
    result = outcome.run.result
    assert result[0] == 10 and result[2] == 5
    assert result[1]["error"]["name"] == "ZeroDivisionError"


def test_branch_all_with_skip_failure(flows):
    outcome = flows.run(
        """
        steps:
          - id: all
            branch_all:
              - steps: [{id: a, python: "def main(): return 'a'"}]
              - skip_failure: true
                steps: [{id: b, python: "def main(): raise RuntimeError('b broke')"}]
            parallel: true
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result[0] == "a"
    assert outcome.run.result[1]["error"]["message"] == "b broke"


def test_sql_and_bash_and_identity_steps(flows):
    outcome = flows.run(
        """
        steps:
          - id: make
            sql: create or replace table t as select 42 as answer
            mode: write
          - id: read
            sql: select answer from t
          - id: shell
            bash: |
              x="$1"
              echo "got $x"
            args: {x: "${{ results.read[0].answer }}"}
          - id: same
            identity: true
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == "got 42"


def test_mock_and_cache_ttl(flows, tmp_path):
    counter = tmp_path / "cached"
    flow = f"""
        steps:
          - id: mocked
            python: "def main(): raise RuntimeError('never runs')"
            mock: {{enabled: true, value: {{fake: true}}}}
          - id: costly
            python: |
              def main():
                  from pathlib import Path
                  p = Path({str(counter)!r})
                  p.write_text(p.read_text() + "x" if p.exists() else "x")
                  return 7
            cache_ttl: 600
        output: ["${{{{ results.mocked }}}}", "${{{{ results.costly }}}}"]
        """
    assert flows.run(flow, name="cached.yaml").run.result == [{"fake": True}, 7]
    assert flows.run(flow, name="cached.yaml").run.result == [{"fake": True}, 7]
    assert counter.read_text() == "x"  # the second run took the cached result


def test_step_timeout_fails_the_step(flows):
    outcome = flows.run(
        """
        steps:
          - id: slow
            python: "import time\\ndef main(): time.sleep(20)"
            timeout: 0.5
        """
    )
    assert outcome.run.status == "failure"
    assert "timeout of 0.5 s" in outcome.run.error["message"]


def test_sleep_suspends_without_holding_a_kernel_and_resumes(flows):
    outcome = flows.run(
        """
        steps:
          - id: nap
            sleep: 1.5
          - id: after
            python: "def main(): return 'woke'"
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == "woke"
    nap = [s for s in flows.steps(outcome.run.id) if s.key == "nap"]
    assert [s.status for s in nap][-1] == "success"


APPROVAL_FLOW = """
steps:
  - id: request
    python: "def main(amount): return {'amount': amount}"
    args: {amount: "${{ flow_input.amount }}"}
  - id: ok
    approval:
      timeout: 3600
      required: 2
      form: {type: object, properties: {note: {type: string}}, required: [note]}
  - id: refund
    python: "def main(req, note): return {'refunded': req['amount'], 'note': note}"
    args: {req: "${{ results.request }}", note: "${{ resume.note }}"}
schema: {type: object, properties: {amount: {type: number}}, required: [amount]}
"""


def test_approval_needs_its_approvers_and_passes_the_payload(flows):
    outcome = flows.run(APPROVAL_FLOW, {"amount": 12.5}, name="refund.yaml")
    run_id = outcome.run.id
    assert outcome.waiting == "approval"
    assert outcome.run.status == "suspended"
    assert set(outcome.links) == {"resume", "cancel"}
    with pytest.raises(Exception, match="argument 'note': missing"):
        flows.portal.run(flows.engine.resume(run_id, {}, approver="lead"))
    flows.portal.run(flows.engine.resume(run_id, {"note": "fine"}, approver="lead"))
    with pytest.raises(ApprovalError, match="lead has already approved"):
        flows.portal.run(flows.engine.resume(run_id, {"note": "again"}, approver="lead"))
    run = flows.portal.run(flows.engine.resume(run_id, {"note": "ok by me"}, approver="manager"))
    assert run.status == "queued"
    final = flows.wait(run_id)
    assert final.run.status == "success", final.run.error
    assert final.run.result == {"refunded": 12.5, "note": "ok by me"}


def test_approval_links_are_single_use_and_tamper_proof(flows):
    outcome = flows.run(
        APPROVAL_FLOW.replace("required: 2", "required: 1"), {"amount": 1}, name="refund1.yaml"
    )
    resume = outcome.links["resume"]
    body, _, signature = resume.partition(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    with pytest.raises(ApprovalError, match="altered"):
        flows.portal.run(flows.engine.use_link(forged, {"note": "x"}))
    action, run = flows.portal.run(flows.engine.use_link(resume, {"note": "yes"}, approver="lead"))
    assert (action, run.status) == ("resume", "queued")
    with pytest.raises(ApprovalError, match="already been used"):
        flows.portal.run(flows.engine.use_link(resume, {"note": "yes"}))
    assert flows.wait(run.id).run.status == "success"


def test_cancel_link_cancels_and_expired_links_are_refused(flows):
    from flows import approvals

    outcome = flows.run(APPROVAL_FLOW, {"amount": 3}, name="refund2.yaml")
    expired = approvals.sign(flows.engine.key, outcome.run.id, "ok", "resume", time.time() - 1)
    with pytest.raises(ApprovalError, match="expired"):
        flows.portal.run(flows.engine.use_link(expired, {"note": "late"}))
    action, run = flows.portal.run(flows.engine.use_link(outcome.links["cancel"]))
    assert (action, run.status) == ("cancel", "cancelled")


def test_approval_timeout_fails_the_run(flows):
    outcome = flows.run(
        """
        steps:
          - id: ok
            approval: {timeout: 1}
        """
    )
    assert outcome.waiting == "approval"
    final = flows.wait(outcome.run.id)
    assert final.run.status == "failure"
    assert "within its timeout" in final.run.error["message"]


def test_bad_arguments_are_refused_before_the_run(flows):
    with pytest.raises(Exception, match="argument 'amount'"):
        flows.run(APPROVAL_FLOW, {"amount": "lots"}, name="refund3.yaml")


def test_expression_error_names_step_and_argument(flows):
    outcome = flows.run(
        """
        steps:
          - id: a
            python: "def main(x): return x"
            args: {x: "${{ flow_input.missing }}"}
        """
    )
    assert outcome.run.status == "failure"
    message = outcome.run.error["message"]
    assert "step 'a'" in message and "argument 'x'" in message and "missing" in message


def test_script_steps_run_files_next_to_the_flow(flows):
    flows.write("double.py", "def main(x: int) -> int:\n    return x * 2\n")
    flows.write("greet.sh", 'who="$1"\necho "hi $who"\n')
    flows.write("top.sql", "-- $n (int) = 2\nselect range as i from range($n)\n")
    outcome = flows.run(
        """
        steps:
          - id: d
            script: double.py
            args: {x: 21}
          - id: g
            script: greet.sh
            args: {who: "${{ results.d }}"}
          - id: q
            script: top.sql
            args: {n: 3}
        output: ["${{ results.d }}", "${{ results.g }}", "${{ len(results.q) }}"]
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == [42, "hi 42", 3]


def test_subflow_runs_inside_the_run_with_its_own_input(flows):
    flows.write(
        "child.yaml",
        """
schema: {type: object, properties: {n: {type: integer}}, required: [n]}
steps:
  - id: sq
    python: "def main(n): return n * n"
    args: {n: "${{ flow_input.n }}"}
output: {square: "${{ results.sq }}"}
""",
    )
    outcome = flows.run(
        """
        steps:
          - id: sub
            flow: child.yaml
            args: {n: 7}
        """
    )
    assert outcome.run.status == "success", outcome.run.error
    assert outcome.run.result == {"square": 49}
    assert "sub/sq" in {s.key for s in flows.steps(outcome.run.id)}


def test_flow_timeout_fails_the_run_and_runs_the_handler(flows):
    outcome = flows.run(
        """
        timeout: 1
        steps:
          - id: slow
            python: "import time\\ndef main(): time.sleep(30)"
        on_failure:
          - id: r
            python: "def main(e): return e['message']"
            args: {e: "${{ error }}"}
        """
    )
    assert outcome.run.status == "success" and outcome.run.recovered
    assert "timeout of 1 s" in outcome.run.result


def test_concurrency_limit_and_priority_order_the_queue(flows):
    # Both runs are queued (no room to start at once), then claimed one at a time.
    flow = """
        concurrency: {limit: 1, key: "${{ flow_input.tenant }}"}
        schema: {type: object, properties: {tenant: {type: string}}}
        steps:
          - id: nap
            python: "import time\\ndef main(): time.sleep(0.5); return time.time()"
    """
    path = flows.write("limited.yaml", flow)

    async def two_runs() -> list:
        runs = [
            await flows.dispatcher.submit(path.read_text(), {"tenant": "acme"}, path=str(path))
            for _ in range(2)
        ]
        return [await flows.dispatcher.wait(r.id) for r in runs]

    first, second = flows.portal.run(two_runs())
    assert first.run.status == second.run.status == "success"
    # The second started only after the first had finished: the limit held.
    steps_second = next(
        s for s in flows.steps(second.run.id) if s.key == "nap" and s.status == "success"
    )
    assert steps_second.started_at >= first.run.result - 0.05
