"""Page state in-process: a real workspace file in tmp_path, users of each role, and a
`PageContext` per user (the pages' permission checks are the real ones)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from studio.pages.session import PageContext
from studio.vault import Vault
from studio.workspace import Workspace

PASSWORD = "correct horse battery"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    data = tmp_path / "data"
    with Workspace(data / "workspace.db", Vault.open(data)) as workspace:
        for name, role in (("ada", "admin"), ("dev", "developer"), ("op", "operator")):
            workspace.create_user(name, password=PASSWORD, role=role)
        yield workspace


@pytest.fixture
def ctx_for(ws: Workspace) -> Callable[[str], PageContext]:
    services = SimpleNamespace(workspace=ws, store=None, settings=None)
    return lambda user: PageContext(services=services, user=user)
