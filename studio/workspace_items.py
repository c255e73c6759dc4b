"""`flows.store.ItemSource` over the workspace: the scripts and flows that `script:` and
`flow:` steps name, as the person who started the run may run them."""

from __future__ import annotations

from typing import Any

from studio.auth.permissions import can
from studio.workspace import Workspace
from studio.workspace.errors import WorkspaceError
from studio.workspace.models import ItemKind, Version


class WorkspaceItems:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def script(self, path: str, actor: str) -> tuple[str, str] | None:
        found = self._latest("script", path, actor)
        return None if found is None else (found.content, found.language)

    def flow(self, path: str, actor: str) -> str | None:
        found = self._latest("flow", path, actor)
        return None if found is None else found.content

    def resource(self, path: str, actor: str) -> tuple[str, dict[str, Any]] | None:
        user = self.workspace.get_user(actor) if actor else None
        if user is None or user.disabled:
            return None
        try:
            if not can(self.workspace.actor(actor), "read", path, self.workspace.folders()):
                return None
            found = self.workspace.get_resource(path)
        except WorkspaceError:
            return None
        return found.resource_type, dict(found.value)

    def _latest(self, kind: ItemKind, path: str, actor: str) -> Version | None:
        user = self.workspace.get_user(actor) if actor else None
        if user is None or user.disabled:
            return None  # a run nobody started may use no workspace item
        try:
            if not can(self.workspace.actor(actor), "run", path, self.workspace.folders()):
                return None
            return self.workspace.get(kind, path)
        except WorkspaceError:  # a malformed path, or no such item
            return None
