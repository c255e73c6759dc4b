"""The workspace store: users and rights, scripts and flows with immutable versions,
variables and encrypted secrets, resources, schedules, webhook signing, audit log.

`Workspace(data / "workspace.db", Vault.open(data))` is the one public entry point.
"""

from typing import TYPE_CHECKING, Any

from studio.workspace.errors import Conflict, Invalid, NotFound, WorkspaceError
from studio.workspace.models import (
    AuditEntry,
    Draft,
    Folder,
    Group,
    ItemKind,
    Resource,
    ResourceType,
    Right,
    Role,
    Schedule,
    Token,
    User,
    Variable,
    Version,
    WebhookSigning,
)
from studio.workspace.paths import check_path, owner_of

if TYPE_CHECKING:
    from studio.workspace.store import Workspace


def __getattr__(name: str) -> Any:
    # Imported on first use: the store needs studio.auth and studio.vault, which
    # themselves import this package's errors and models.
    if name == "Workspace":
        from studio.workspace.store import Workspace

        return Workspace
    raise AttributeError(f"module 'studio.workspace' has no attribute {name!r}")


__all__ = [
    "AuditEntry",
    "Conflict",
    "Draft",
    "Folder",
    "Group",
    "Invalid",
    "ItemKind",
    "NotFound",
    "Resource",
    "ResourceType",
    "Right",
    "Role",
    "Schedule",
    "Token",
    "User",
    "Variable",
    "Version",
    "WebhookSigning",
    "Workspace",
    "WorkspaceError",
    "check_path",
    "owner_of",
]
