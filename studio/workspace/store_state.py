"""State scripts keep between runs (`gristmill.get_state` / `set_state` inside a run)."""

from __future__ import annotations

import json
from typing import Any

from studio.workspace.errors import Invalid
from studio.workspace.store_base import StoreCore, to_json

# A state is a small memo (a cursor, the last id seen), not a data store.
MAX_STATE_BYTES = 1_000_000


class StateStore(StoreCore):
    """Part of `Workspace`: one JSON value per key."""

    def get_state(self, key: str) -> Any:
        """The value kept under `key`, or None."""
        found = self._db.row("SELECT value FROM state WHERE key = ?", (key,))
        return None if found is None else json.loads(found[0])

    def set_state(self, key: str, value: Any, *, author: str) -> None:
        """Keep `value` (JSON, at most 1 MB as text) under `key`; None deletes it."""
        with self._db.transaction() as con:
            if value is None:
                con.execute("DELETE FROM state WHERE key = ?", (key,))
                return
            text = to_json(value, "state")
            if len(text.encode()) > MAX_STATE_BYTES:
                raise Invalid(
                    f"state {key!r} is {len(text.encode())} bytes as JSON; keep it under "
                    f"{MAX_STATE_BYTES} bytes (put data in a table or a resource instead)",
                    field="value",
                )
            con.execute(
                "INSERT INTO state VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by",
                (key, text, self._now(), author),
            )
