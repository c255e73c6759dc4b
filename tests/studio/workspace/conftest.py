"""A real workspace: SQLite file and key ring in the test's own tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.vault import Vault
from studio.workspace import Workspace


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def vault(data: Path) -> Vault:
    return Vault.open(data)


@pytest.fixture
def ws(data: Path, vault: Vault) -> Iterator[Workspace]:
    with Workspace(data / "workspace.db", vault) as workspace:
        yield workspace


def reopen(data: Path) -> Workspace:
    """The same data directory opened afresh, as after a restart."""
    return Workspace(data / "workspace.db", Vault.open(data))
