"""Journey 1, support refund with approval, over the API of a real server.

A developer (the team lead) deploys `f/support/refund` and a flow whose second step is an
approval with a `note` form; a support agent (operator) submits the flow; the lead sees
it among the pending approvals and approves with a note; the refund step runs; the agent
sees the result and the whole trail; the agent may neither deploy nor edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Launcher, Server

pytestmark = pytest.mark.xdist_group("e2e")

REFUND = """
from typing import Literal


def main(order_id: int, amount: float, reason: Literal["damaged", "late", "other"], note: str = ""):
    print(f"refunding order {order_id}: {amount:.2f} ({reason})")
    return {"order_id": order_id, "refunded": amount, "reason": reason, "note": note}
"""

REFUND_FLOW = """
summary: Refund, approved by a team lead
schema:
  type: object
  properties:
    order_id: {type: integer}
    amount: {type: number}
    reason: {type: string, enum: [damaged, late, other]}
  required: [order_id, amount, reason]
steps:
  - id: request
    python: |
      def main(order_id: int, amount: float, reason: str):
          return {"order_id": order_id, "amount": amount, "reason": reason}
    args:
      order_id: "${{ flow_input.order_id }}"
      amount: "${{ flow_input.amount }}"
      reason: "${{ flow_input.reason }}"
  - id: approve
    approval:
      message: "Refund this order?"
      form:
        type: object
        properties: {note: {type: string}}
        required: [note]
  - id: refund
    python: |
      import gristmill

      def main(request: dict, note: str):
          return gristmill.run_script("f/support/refund", {**request, "note": note})
    args: {request: "${{ results.request }}", note: "${{ results.approve.note }}"}
"""

# The same flow, its last step naming the workspace script (DESIGN: "`script` (a
# workspace path or a file next to the flow)").
REFUND_FLOW_BY_PATH = """
summary: Refund through the script step kind
schema:
  type: object
  properties: {order_id: {type: integer}}
steps:
  - id: refund
    script: f/support/refund
    args: {order_id: "${{ flow_input.order_id }}", amount: 1.5, reason: late}
"""

ORDER = {"order_id": 1042, "amount": 19.9, "reason": "damaged"}


def _support(server: Server) -> tuple[str, str]:
    """The lead (developer, owner of f/support) and the agent (operator, may run it)."""
    lead = server.add_user("lead", "developer")
    agent = server.add_user("agent", "operator")
    server.add_folder("support", {"u/lead": "owner", "u/agent": "viewer"})
    server.deploy("script", "f/support/refund", REFUND, token=lead)
    server.deploy("flow", "f/support/refund_flow", REFUND_FLOW, token=lead)
    return lead, agent


def test_agent_submits_lead_approves_with_a_note_agent_sees_the_trail(
    launch: Launcher, tmp_path: Path
) -> None:
    server = launch(tmp_path / "data", "refund")
    lead, agent = _support(server)

    # The form the agent fills is generated from the flow's schema.
    schema = server.ok("GET", "/api/flows/f/support/refund_flow/schema", token=agent)
    assert "reason" in str(schema) and "damaged" in str(schema), schema
    bad = server.api(
        "POST", "/api/run/flow/f/support/refund_flow", {**ORDER, "reason": "bored"}, token=agent
    )
    assert bad.status == 400, bad.body
    job_id = server.ok("POST", "/api/run/flow/f/support/refund_flow", ORDER, token=agent)["job_id"]
    server.wait_job(job_id, ("suspended",), token=agent)

    pending = server.ok("GET", "/api/approvals", token=lead)["items"]
    mine = [item for item in pending if item["job_id"] == job_id]
    assert len(mine) == 1, pending
    assert mine[0]["actor"] == "agent" and mine[0]["args"] == ORDER
    assert mine[0]["step_id"] == "approve" and mine[0]["message"] == "Refund this order?"
    assert mine[0]["form"]["properties"] == {"note": {"type": "string"}}

    approved = server.api(
        "POST", f"/api/jobs/{job_id}/approve", {"note": "ok, customer sent photos"}, token=lead
    )
    assert approved.status == 200, approved.body

    done = server.wait_job(job_id, ("success", "failure", "cancelled"), token=agent)
    assert done["status"] == "success", done
    assert done["result"] == {
        "order_id": 1042,
        "refunded": 19.9,
        "reason": "damaged",
        "note": "ok, customer sent photos",
    }
    trail = [(s["step_id"], s["status"]) for s in done["steps"]]
    assert trail == [("request", "success"), ("approve", "success"), ("refund", "success")], trail
    approval = next(s for s in done["steps"] if s["step_id"] == "approve")
    assert approval["result"] == {"note": "ok, customer sent photos"}
    assert [a["approver"] for a in approval["detail"]["approvals"]] == ["lead"]
    assert server.ok("GET", "/api/approvals", token=lead)["items"] == []

    # The refund itself ran as its own job, started by the flow on the agent's behalf.
    refunds = server.ok("GET", "/api/jobs?path=f/support/refund&kind=script", token=agent)
    assert [r["actor"] for r in refunds["items"]] == ["agent"], refunds
    assert refunds["items"][0]["parent_run_id"] == job_id


def test_agent_may_not_deploy_or_edit(launch: Launcher, tmp_path: Path) -> None:
    server = launch(tmp_path / "data", "refund-rights")
    lead, agent = _support(server)
    attempts: list[tuple[str, str, Any]] = [
        ("PUT", "/api/scripts/f/support/refund", {"content": REFUND + "\n# agent\n"}),
        ("PUT", "/api/scripts/f/support/refund/draft", {"content": REFUND + "\n# draft\n"}),
        ("PUT", "/api/flows/f/support/refund_flow", {"content": REFUND_FLOW}),
        ("PUT", "/api/scripts/f/support/another", {"content": REFUND}),
        ("PUT", "/api/scripts/u/agent/mine", {"content": REFUND}),  # their own tree: still no
        ("DELETE", "/api/scripts/f/support/refund", None),
        ("PUT", "/api/webhook_signing/script/f/support/refund", {}),
    ]
    for method, url, body in attempts:
        response = server.api(method, url, body, token=agent)
        assert response.status == 403, (method, url, response.status, response.body)
        assert "agent" in response.body["error"]["message"], response.body
    script = server.ok("GET", "/api/scripts/f/support/refund", token=agent)
    assert script["version"] == 1 and script["content"] == REFUND
    # The lead, a developer who owns the folder, may.
    assert server.deploy("script", "f/support/refund", REFUND + "\n", token=lead)["version"] == 2


def test_a_flow_step_runs_a_workspace_script_by_path(launch: Launcher, tmp_path: Path) -> None:
    server = launch(tmp_path / "data", "refund-by-path", pool_size=1)
    lead, agent = _support(server)
    server.deploy("flow", "f/support/by_path", REFUND_FLOW_BY_PATH, token=lead)
    response = server.api(
        "POST", "/api/run_wait/flow/f/support/by_path", {"order_id": 7}, token=agent
    )
    assert response.status == 200, response.body
    assert response.body["result"]["refunded"] == 1.5
