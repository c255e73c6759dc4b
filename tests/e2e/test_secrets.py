"""Secrets never in clear: a script and a flow read a secret with `gristmill.get_variable`,
print it and return it; then the server is stopped and everything it wrote is searched
for the secret's bytes — every file under the data dir (key files excepted, they are key
material), the run store's contents, and the server's own stdout and stderr.

One scenario (module fixture), several tests, so that each place is reported on its own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from tests.e2e.conftest import Launcher, Response

pytestmark = pytest.mark.xdist_group("e2e")

LEAK_SCRIPT = """
import gristmill


def main():
    value = gristmill.get_variable("u/admin/api_key")
    print(f"the key is {value}")
    return {"key": value, "length": len(value)}
"""

LEAK_FLOW = """
summary: a step that reads a secret and hands it to the next
steps:
  - id: read
    python: |
      import gristmill

      def main():
          value = gristmill.get_variable("u/admin/api_key")
          print("read", value)
          return value
  - id: use
    python: |
      def main(key: str):
          return {"used": key}
    args: {key: "${{ results.read }}"}
"""

# The run store's columns that hold values a run produced or was given.
STORE_COLUMNS = {
    "runs": ("args", "result", "error", "definition"),
    "steps": ("args", "result", "error", "detail"),
    "logs": ("text",),
}


@dataclass
class Scenario:
    secret: str
    data: Path
    output: bytes = b""
    responses: dict[str, Response] = field(default_factory=dict)


@pytest.fixture(scope="module")
def scenario(
    module_launch: Launcher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    data = tmp_path_factory.mktemp("secrets") / "data"
    seen = Scenario("sk-live-" + secrets.token_hex(16), data)
    server = module_launch(data, "secrets")
    server.ok("PUT", "/api/variables/u/admin/api_key", {"value": seen.secret, "secret": True})
    server.deploy("script", "u/admin/leak", LEAK_SCRIPT)
    server.deploy("flow", "u/admin/leak_flow", LEAK_FLOW)
    r = seen.responses
    r["script run_wait"] = server.api("POST", "/api/run_wait/script/u/admin/leak", {})
    r["flow run_wait"] = server.api("POST", "/api/run_wait/flow/u/admin/leak_flow", {})
    for what in ("script", "flow"):
        job_id = r[f"{what} run_wait"].body["job_id"]
        r[f"{what} job"] = server.api("GET", f"/api/jobs/{job_id}")
        r[f"{what} logs"] = server.api("GET", f"/api/jobs/{job_id}/logs")
    r["jobs list"] = server.api("GET", "/api/jobs?limit=50")
    r["variable"] = server.api("GET", "/api/variables/u/admin/api_key")
    r["variables"] = server.api("GET", "/api/variables")
    r["audit"] = server.api("GET", "/api/audit?action=secret.read")
    assert server.stop() == 0
    seen.output = server.output()
    yield seen


def test_runs_read_the_secret_but_responses_never_show_it(scenario: Scenario) -> None:
    responses = scenario.responses
    script = responses["script run_wait"]
    assert script.status == 200, script.body
    # The run did read the real value (its length), it is only hidden from view.
    assert script.body["result"]["length"] == len(scenario.secret)
    assert responses["flow run_wait"].status == 200, responses["flow run_wait"].body
    logs = "".join(item["text"] for item in responses["script logs"].body["items"])
    assert "the key is" in logs
    for what, response in responses.items():
        assert response.status == 200, (what, response.body)
        assert scenario.secret not in json.dumps(response.body), f"{what} shows the secret"


def test_each_read_of_the_secret_is_audited(scenario: Scenario) -> None:
    entries = scenario.responses["audit"].body["items"]
    runs = {scenario.responses[f"{what} run_wait"].body["job_id"] for what in ("script", "flow")}
    read = sorted((e["action"], e["target"], e["detail"].get("run_id")) for e in entries)
    assert read == sorted(("secret.read", "u/admin/api_key", run) for run in runs), entries


def test_server_output_never_shows_the_secret(scenario: Scenario) -> None:
    assert scenario.output, "the server wrote nothing at all"
    assert scenario.secret.encode() not in scenario.output


def _files_holding(scenario: Scenario) -> tuple[list[str], list[str]]:
    """(files scanned, files holding the secret's bytes) under the data dir."""
    needle = scenario.secret.encode()
    scanned: list[str] = []
    holding: list[str] = []
    for path in sorted(scenario.data.rglob("*")):
        if not path.is_file():
            continue
        relative = str(path.relative_to(scenario.data))
        if path.parent == scenario.data / "keys" and path.suffix == ".key":
            continue  # key material, by design outside the databases
        scanned.append(relative)
        if needle in path.read_bytes():
            holding.append(relative)
    return scanned, holding


def test_no_file_but_the_run_store_holds_the_secret(scenario: Scenario) -> None:
    scanned, holding = _files_holding(scenario)
    assert "workspace.db" in scanned and "runs.duckdb" in scanned, scanned
    assert [f for f in holding if f != "runs.duckdb"] == [], f"the secret is in clear in {holding}"


def test_the_run_store_file_holds_no_secret_bytes(scenario: Scenario) -> None:
    _, holding = _files_holding(scenario)
    assert "runs.duckdb" not in holding


def test_run_store_holds_no_secret_in_clear(scenario: Scenario) -> None:
    con = duckdb.connect(str(scenario.data / "runs.duckdb"), read_only=True)
    found: dict[str, int] = {}
    try:
        for table, columns in STORE_COLUMNS.items():
            for column in columns:
                (count,) = con.execute(
                    f"select count(*) from {table} where strpos(cast({column} as varchar), ?) > 0",
                    [scenario.secret],
                ).fetchone() or (0,)
                if count:
                    found[f"{table}.{column}"] = int(count)
    finally:
        con.close()
    assert found == {}, f"the secret is stored in clear in {found}"
