"""CLI commands against a running `gristmill serve`: the run history in SQL (the server
holds the DuckDB file, so the CLI asks it) and git sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.serving import serving

TOKEN = "gm_cli_server_token_0123456789abcdef"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("cli-server") / "data"
    env = {"GRISTMILL_ADMIN_PASSWORD": "correct horse battery", "GRISTMILL_ADMIN_TOKEN": TOKEN}
    with serving(data, env=env) as server:
        yield server.base, data


def gristmill(
    *args: str, token: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    if token:
        env["GRISTMILL_TOKEN"] = token
    if url:
        env["GRISTMILL_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "studio.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_history_sql_goes_through_the_server_that_holds_the_store(served) -> None:
    url, data = served
    hello = gristmill("sync", "pull", str(data.parent / "ws"), "--url", url, token=TOKEN)
    assert hello.returncode == 0, hello.stderr  # the examples were loaded at first start
    query = "select kind, count(*) as n from runs group by kind order by kind"
    # Without a token the CLI cannot open the locked file and says how to ask the server.
    refused = gristmill("runs", "--sql", query, "--data", str(data))
    assert refused.returncode == 2
    assert "in use by another Gristmill process" in refused.stderr and "--token" in refused.stderr
    answered = gristmill("runs", "--sql", query, "--data", str(data), token=TOKEN, url=url)
    assert answered.returncode == 0, answered.stderr
    assert all("kind" in json.loads(line) for line in answered.stdout.splitlines())
    bad = gristmill("runs", "--sql", "delete from runs", "--url", url, token=TOKEN)
    assert bad.returncode == 2 and "delete" in bad.stderr.lower()


def test_sync_pull_edit_push_makes_a_new_version(served, tmp_path: Path) -> None:
    url, _ = served
    pulled = gristmill("sync", "pull", str(tmp_path), "--url", url, token=TOKEN)
    assert pulled.returncode == 0, pulled.stderr
    script = tmp_path / "f" / "examples" / "hello.py"
    assert script.exists(), sorted(str(p) for p in tmp_path.rglob("*"))
    script.write_text(script.read_text() + "\n# edited in git\n")
    pushed = gristmill("sync", "push", str(tmp_path), "--url", url, token=TOKEN)
    assert pushed.returncode == 0, pushed.stderr
    assert "f/examples/hello" in pushed.stdout
    again = gristmill("sync", "push", str(tmp_path), "--url", url, token=TOKEN)
    assert again.returncode == 0 and "f/examples/hello" not in again.stdout
