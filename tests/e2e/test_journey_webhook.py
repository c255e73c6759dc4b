"""Journey 3, partner webhook: a partner system POSTs JSON with an HMAC signature to a
flow's run_wait endpoint and gets the flow's result in the response; a forged or a
replayed request is refused with 401 and starts nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from studio.api.webhooks import SIGNATURE_HEADER, sign
from tests.e2e.conftest import Launcher, Response, Server

pytestmark = pytest.mark.xdist_group("e2e")

ORDER_FLOW = """
summary: a partner's order, priced
schema:
  type: object
  properties:
    sku: {type: string}
    quantity: {type: integer}
  required: [sku, quantity]
steps:
  - id: price
    python: |
      def main(sku: str, quantity: int):
          return {"sku": sku, "quantity": quantity, "total": quantity * 2.5}
    args: {sku: "${{ flow_input.sku }}", quantity: "${{ flow_input.quantity }}"}
  - id: accept
    python: |
      def main(order: dict):
          return {**order, "accepted": True}
    args: {order: "${{ results.price }}"}
"""

URL = "/api/run_wait/flow/f/partners/order"


def _post(server: Server, token: str, body: bytes, signature: str | None) -> Response:
    headers = {SIGNATURE_HEADER: signature} if signature is not None else {}
    return server.api("POST", URL, raw=body, token=token, headers=headers)


def _runs(server: Server) -> int:
    return int(server.ok("GET", "/api/jobs?path=f/partners/order")["total"])


def test_signed_webhook_answers_with_the_result_forged_and_replayed_are_refused(
    launch: Launcher, tmp_path: Path
) -> None:
    server = launch(tmp_path / "data", "webhook")
    server.ok(
        "POST", "/api/users", {"name": "acme", "password": "pw-acme-0123", "role": "operator"}
    )
    server.add_folder("partners", {"u/acme": "viewer"})
    server.deploy("flow", "f/partners/order", ORDER_FLOW)
    # The partner's token may only run things under f/partners/.
    token = server.ok(
        "POST", "/api/tokens", {"label": "acme", "owner": "acme", "scopes": ["run:f/partners/"]}
    )["token"]
    signing = server.ok("PUT", "/api/webhook_signing/flow/f/partners/order", {"tolerance_s": 300})
    secret = signing["secret"]
    assert "secret" not in server.ok("GET", "/api/webhook_signing/flow/f/partners/order")

    body = json.dumps({"sku": "A-1", "quantity": 4}).encode()
    signature = sign(secret, body, int(time.time()))
    valid = _post(server, token, body, signature)
    assert valid.status == 200, valid.body
    assert valid.body["result"] == {"sku": "A-1", "quantity": 4, "total": 10.0, "accepted": True}
    assert valid.seconds < 5.0, f"the signed webhook took {valid.seconds:.2f} s"
    job = server.job(valid.body["job_id"])
    assert job["trigger"] == "webhook" and job["actor"] == "acme", job
    assert _runs(server) == 1

    refused = {
        "replayed": _post(server, token, body, signature),
        "forged": _post(server, token, body, sign("not-the-secret", body, int(time.time()))),
        "body changed": _post(
            server, token, json.dumps({"sku": "A-1", "quantity": 400}).encode(), signature
        ),
        "too old": _post(server, token, body, sign(secret, body, int(time.time()) - 3600)),
        "unsigned": _post(server, token, body, None),
        "garbled": _post(server, token, body, "v1=abc"),
    }
    for what, response in refused.items():
        assert response.status == 401, (what, response.status, response.body)
        assert secret not in json.dumps(response.body), what
    assert "replay" in refused["replayed"].body["error"]["message"]
    assert _runs(server) == 1  # none of the refused requests started a run

    # A fresh signature of the same body is a new request, and is accepted.
    again = _post(server, token, body, sign(secret, body, int(time.time()) + 1))
    assert again.status == 200 and again.body["job_id"] != valid.body["job_id"], again.body
    # Without the token's right the signature alone is not enough.
    assert _post(server, "gm_not_a_token", body, sign(secret, body, int(time.time()))).status == 401
