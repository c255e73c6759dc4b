"""The error root of the workspace store and its three branches.

Messages are written for the person who reads them: the field, the value given and
what was expected. `field` carries the field's name for callers (the API) that want to
point at it separately.
"""

from __future__ import annotations


class WorkspaceError(Exception):
    """Root of every error raised by `studio.workspace` (and the vault)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(WorkspaceError):
    """The user, item, variable, ... named does not exist."""


class Conflict(WorkspaceError):
    """The thing to create exists already, or the change contradicts the stored state."""


class Invalid(WorkspaceError):
    """A value does not fit: a bad path, a script without `main`, a cron that cannot fire."""
