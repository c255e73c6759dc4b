"""The `Workspace`: one SQLite file holding everything a team deploys and configures.

One object per process, opened as a context manager and kept by `Services`. Its
methods are synchronous: SQLite point operations take microseconds, so callers on the
event loop call them directly. The parts live by concern in `store_access.py` (users,
groups, folders, tokens, sessions), `store_items.py` (scripts and flows) and
`store_config.py` (variables, secrets, resources, schedules, webhook signing, audit)
and `store_state.py` (state scripts keep between runs).

Workspace itself audits nothing implicitly except `rotate_secrets`: the caller (the
API) knows who acted and why, and records it with `audit()`.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from studio.vault import Vault
from studio.workspace.db import Database
from studio.workspace.store_access import AccessStore
from studio.workspace.store_base import Caches
from studio.workspace.store_config import ConfigStore
from studio.workspace.store_items import ItemStore
from studio.workspace.store_state import StateStore


class Workspace(AccessStore, ItemStore, ConfigStore, StateStore):
    """Users and rights, scripts and flows with versions, variables and secrets,
    resources, schedules, webhook signing and the audit log, in `path` (workspace.db)."""

    def __init__(self, path: Path, vault: Vault) -> None:
        self.path = Path(path)
        self._vault = vault
        self._cache = Caches()
        self._last_used = {}
        self._closed = False
        self._db = Database(self.path)

    @property
    def vault(self) -> Vault:
        return self._vault

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write pending token use times and close the file. Safe to call twice."""
        if self._closed:
            return
        try:
            self._flush_last_used()
        finally:
            self._closed = True
            self._db.close()
