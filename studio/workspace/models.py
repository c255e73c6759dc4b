"""What the workspace stores, as frozen dataclasses that `dataclasses.asdict` turns into JSON.

These are the messages between the store and its callers (API, pages, git sync): plain
data, no connection or vault behind them. Secret values never travel in a `Variable`
unless the caller asked to reveal them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Role = Literal["admin", "developer", "operator", "viewer"]
Right = Literal["owner", "writer", "viewer"]
ItemKind = Literal["script", "flow"]
CatchUp = Literal["all", "latest", "none"]

ROLES: tuple[Role, ...] = get_args(Role)
RIGHTS: tuple[Right, ...] = get_args(Right)
ITEM_KINDS: tuple[ItemKind, ...] = get_args(ItemKind)
CATCH_UPS: tuple[CatchUp, ...] = get_args(CatchUp)


@dataclass(frozen=True)
class User:
    """A local account. The password hash never leaves the store."""

    name: str
    role: Role
    email: str = ""
    disabled: bool = False
    created_at: float = 0.0


@dataclass(frozen=True)
class Group:
    """Named set of users; folder rights can be given to `g/<name>`."""

    name: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Folder:
    """A folder and who may do what in it: principal (`u/alice`, `g/ops`) -> right."""

    name: str
    rights: dict[str, Right] = field(default_factory=dict)


@dataclass(frozen=True)
class Token:
    """An API token as listed; the plaintext is shown once at creation, only its hash is kept.

    `scopes == ()` means unscoped: the full rights of `owner`.
    """

    id: str
    owner: str
    label: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked: bool = False
    last_used_at: float | None = None


@dataclass(frozen=True)
class Version:
    """One immutable deployed version of a script or flow."""

    path: str
    kind: ItemKind
    version: int
    hash: str
    content: str
    language: str
    summary: str
    author: str
    created_at: float


@dataclass(frozen=True)
class Draft:
    """The one shared work-in-progress copy of an item (last save wins)."""

    path: str
    kind: ItemKind
    content: str
    language: str
    author: str
    updated_at: float


@dataclass(frozen=True)
class Variable:
    """A variable; for a secret, `value` is None unless it was explicitly revealed."""

    path: str
    value: str | None
    secret: bool
    description: str
    updated_at: float


@dataclass(frozen=True)
class Resource:
    """A JSON object typed by a resource type's JSON Schema (a database, an API account...)."""

    path: str
    resource_type: str
    value: dict[str, Any]
    description: str
    updated_at: float


@dataclass(frozen=True)
class ResourceType:
    """The JSON Schema resources of this type are checked against."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Schedule:
    """Run `target_path` with `args` at every fire of `cron` in `timezone`.

    `cron` has 5 fields (`min hour dom mon dow`) or 6 with the seconds first
    (`sec min hour dom mon dow`, Windmill's convention). `last_fire_at` is kept by the
    store across updates so that editing a schedule neither repeats nor skips a fire.
    """

    path: str
    cron: str
    timezone: str
    target_kind: ItemKind
    target_path: str
    args: dict[str, Any]
    enabled: bool = True
    no_overlap: bool = False
    catch_up: CatchUp = "latest"
    on_failure: str | None = None
    on_recovery: str | None = None
    last_fire_at: float | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class WebhookSigning:
    """HMAC signing required on an item's webhook; the secret only comes from
    `Workspace.webhook_signing()`."""

    path: str
    kind: ItemKind
    tolerance_s: int = 300


@dataclass(frozen=True)
class AuditEntry:
    """Who did what to which target, when."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
