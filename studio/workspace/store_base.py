"""What every part of the `Workspace` shares: the database, the vault and the caches.

The caches exist for the hot path (a webhook authenticates a token, builds an actor and
checks folder rights, and should not touch SQLite to do it). They are plain per-object
dictionaries, emptied by every write that could change what they hold.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from studio.vault import Vault
from studio.workspace.db import Database
from studio.workspace.errors import Invalid
from studio.workspace.models import ITEM_KINDS, Folder, ItemKind, Token, User


@dataclass
class Caches:
    """In-memory copies of access data, valid until the next write to it."""

    tokens: dict[str, tuple[User, Token]] = field(default_factory=dict)  # sha256 -> ...
    users: dict[str, User] = field(default_factory=dict)
    groups_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    folders: dict[str, Folder] | None = None
    secrets: list[str] | None = None

    def clear_access(self) -> None:
        self.tokens.clear()
        self.users.clear()
        self.groups_of.clear()
        self.folders = None


class StoreCore:
    """State shared by the parts of `Workspace` (see store.py)."""

    _db: Database
    _vault: Vault
    _cache: Caches
    # token id -> last use seen since the last flush: recorded in memory so a cached
    # token lookup never writes to SQLite; flushed by list_tokens() and close().
    _last_used: dict[str, float]

    @staticmethod
    def _now() -> float:
        return time.time()


def check_kind(kind: str) -> ItemKind:
    if kind not in ITEM_KINDS:
        raise Invalid(
            f"kind {kind!r} is not an item kind; expected one of {', '.join(ITEM_KINDS)}",
            field="kind",
        )
    return kind


def to_json(value: Any, what: str) -> str:
    """`value` as JSON text; Invalid naming `what` if it is not JSON-able."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Invalid(
            f"{what} is not JSON-serialisable ({exc}); expected plain JSON values", field=what
        ) from None


PREFIX_SQL = "substr(path, 1, length(?)) = ?"
"""Filter on a path prefix without LIKE (paths contain `_`, a LIKE wildcard)."""
