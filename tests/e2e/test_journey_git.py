"""Journey 4, changes through git: `gristmill sync pull DIR`, edit a script in an editor,
`gristmill sync push DIR`, and the server has a new version; a secret's value never
reaches DIR.

While `sync` is not a subcommand of `gristmill` (studio/cli.py has no "sync" in its
command table), the commands run `studio.sync.sync_main` in a subprocess, as the CLI
would; once it is, they run `gristmill sync`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import Launcher, Server

pytestmark = pytest.mark.xdist_group("e2e")

TOOL = '''def main(name: str = "world"):
    """Say hello."""
    return f"hello {name}"
'''


def _sync(server: Server, action: str, directory: Path) -> subprocess.CompletedProcess[str]:
    from studio.cli import _COMMANDS

    argv = [action, str(directory), "--url", server.base, "--token", server.token]
    gristmill = Path(sys.executable).with_name("gristmill")
    if "sync" in _COMMANDS and gristmill.exists():  # the real command, once it is wired
        command = [str(gristmill), "sync", *argv]
    else:
        run = f"from studio.sync import sync_main; raise SystemExit(sync_main({argv!r}))"
        command = [sys.executable, "-c", run]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


def test_pull_edit_push_makes_a_new_version_and_secrets_stay_out(
    launch: Launcher, tmp_path: Path
) -> None:
    server = launch(tmp_path / "data", "git", pool_size=1)
    server.add_folder("tools", {})
    server.deploy("script", "f/tools/greet", TOOL)
    secret = "ghp_" + os.urandom(12).hex()
    server.ok("PUT", "/api/variables/f/tools/gh_token", {"value": secret, "secret": True})
    server.ok("PUT", "/api/variables/f/tools/greeting", {"value": "hi", "description": "plain"})

    ws = tmp_path / "ws"
    pulled = _sync(server, "pull", ws)
    assert pulled.returncode == 0, pulled.stderr
    code = ws / "f" / "tools" / "greet.py"
    assert code.read_text() == TOOL
    assert (ws / "f" / "tools" / "greet.script.yaml").is_file()
    secret_meta = (ws / "f" / "tools" / "gh_token.variable.yaml").read_text()
    assert "secret: true" in secret_meta, secret_meta
    assert "hi" in (ws / "f" / "tools" / "greeting.variable.yaml").read_text()

    # The developer edits the script in their editor.
    edited = TOOL.replace("hello {name}", "hello there, {name}")
    code.write_text(edited)
    pushed = _sync(server, "push", ws)
    assert pushed.returncode == 0, pushed.stderr
    assert "f/tools/greet" in pushed.stdout, pushed.stdout

    script = server.ok("GET", "/api/scripts/f/tools/greet")
    assert script["version"] == 2 and script["content"] == edited, script
    ran = server.ok("POST", "/api/run_wait/script/f/tools/greet", {"name": "git"})
    assert ran["result"] == "hello there, git"
    # The secret kept its value on the server, and a second push changes nothing.
    revealed = server.ok("GET", "/api/variables/f/tools/gh_token?reveal=true")
    assert revealed["value"] == secret
    again = _sync(server, "push", ws)
    assert again.returncode == 0 and again.stdout.strip() == "", again.stdout

    # Pull again (a second developer's checkout): the secret is nowhere in the files.
    assert _sync(server, "pull", ws).returncode == 0
    for path in ws.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in pulled.stdout + pulled.stderr + pushed.stdout + pushed.stderr
