"""First start of a workspace: the admin account, the admin token, the examples.

Run by `Services` each time it opens the workspace. Only the first start (a workspace
with no users) creates the `admin` account and loads `examples/`; the admin token from
`GRISTMILL_ADMIN_TOKEN` is ensured on every start, so automation can rely on it.
"""

from __future__ import annotations

import logging
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from studio.settings import Settings
from studio.workspace.errors import WorkspaceError
from studio.workspace.models import ItemKind
from studio.workspace.paths import SEGMENT
from studio.workspace.store import Workspace

log = logging.getLogger("gristmill.bootstrap")

ADMIN = "admin"
EXAMPLES_FOLDER = "examples"
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
_SCRIPT_LANGUAGES = {".py": "python", ".sh": "bash", ".sql": "sql"}


@dataclass
class Bootstrapped:
    """What this start did (for tests and the server's log)."""

    first_start: bool = False
    generated_password: bool = False
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def bootstrap(
    workspace: Workspace,
    settings: Settings,
    *,
    examples: Path | None = EXAMPLES_DIR,
    out: TextIO | None = None,
) -> Bootstrapped:
    """Prepare the workspace; prints a generated admin password to `out` (stderr) once."""
    done = Bootstrapped()
    if not workspace.list_users():
        done.first_start = True
        password = settings.admin_password
        if not password:
            password = secrets.token_urlsafe(16)
            done.generated_password = True
        workspace.create_user(ADMIN, password=password, role="admin")
        workspace.audit("system", "user.create", ADMIN, role="admin", first_start=True)
        if done.generated_password:
            print(
                f"Gristmill: created user '{ADMIN}' with password {password}\n"
                "  (shown this once; set GRISTMILL_ADMIN_PASSWORD to choose it)",
                file=out or sys.stderr,
                flush=True,
            )
        if examples is not None and examples.is_dir():
            _load_examples(workspace, examples, done)
    if settings.admin_token:
        workspace.ensure_token(settings.admin_token, ADMIN, label="GRISTMILL_ADMIN_TOKEN")
    return done


def _load_examples(workspace: Workspace, examples: Path, done: Bootstrapped) -> None:
    if EXAMPLES_FOLDER not in workspace.folders():
        workspace.create_folder(EXAMPLES_FOLDER, owner=ADMIN)
    found: list[tuple[ItemKind, Path, str]] = []
    for file in sorted((examples / "scripts").glob("*")):
        language = _SCRIPT_LANGUAGES.get(file.suffix)
        if language is not None and file.is_file():
            found.append(("script", file, language))
    for file in sorted((examples / "flows").glob("*.yaml")):
        if file.is_file():
            found.append(("flow", file, "yaml"))
    for kind, file, language in found:
        path = f"f/{EXAMPLES_FOLDER}/{file.stem}"
        if not SEGMENT.fullmatch(file.stem):
            log.warning("example %s skipped: its name is not a valid path segment", file.name)
            done.skipped.append(file.name)
            continue
        try:
            workspace.deploy(
                kind,
                path,
                file.read_text(encoding="utf-8"),
                author=ADMIN,
                language=language,
                summary=f"example {file.name}",
            )
        except (WorkspaceError, OSError, UnicodeDecodeError) as exc:
            log.warning("example %s skipped: %s", file.name, exc)
            done.skipped.append(file.name)
            continue
        done.loaded.append(path)
