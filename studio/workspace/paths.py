"""Workspace paths: `u/<user>/<name>` (a user's own items) or `f/<folder>/<name>`.

`<name>` may have sub-segments (`f/support/refunds/daily`). Every segment is lower
case letters, digits, `_`, `.` and `-`, and does not start with `.` or `-`, so a path
is safe in a URL, a file name (git sync) and a SQL LIKE prefix.
"""

from __future__ import annotations

import re
from typing import Literal

from studio.workspace.errors import Invalid

SEGMENT = re.compile(r"[a-z0-9_][a-z0-9_.-]*")
_EXPECTED = "expected u/<user>/<name> or f/<folder>/<name>"


def check_name(value: str, what: str = "name") -> str:
    """`value` if it is one valid segment (a user, group, folder or resource type name)."""
    if not isinstance(value, str) or not SEGMENT.fullmatch(value) or len(value) > 100:
        raise Invalid(
            f"{what} {value!r} is not valid; expected lower-case letters, digits, '_', '.' "
            "or '-', starting with a letter, digit or '_' (at most 100 characters)",
            field=what,
        )
    return value


def check_path(path: str) -> str:
    """`path` unchanged if it is a workspace path; Invalid naming the value otherwise."""
    if not isinstance(path, str):
        raise Invalid(f"path {path!r} is not a workspace path; {_EXPECTED}", field="path")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] not in ("u", "f"):
        raise Invalid(f"path {path!r} is not a workspace path; {_EXPECTED}", field="path")
    bad = [part for part in parts[1:] if not SEGMENT.fullmatch(part)]
    if bad:
        raise Invalid(
            f"path {path!r} is not a workspace path: segment {bad[0]!r} has characters other "
            "than lower-case letters, digits, '_', '.' and '-' (or starts with '.' or '-'); "
            f"{_EXPECTED}",
            field="path",
        )
    if len(path) > 255:
        raise Invalid(
            f"path {path[:40]!r}... is {len(path)} characters long; expected at most 255",
            field="path",
        )
    return path


def owner_of(path: str) -> tuple[Literal["u", "f"], str]:
    """("u", "alice") for `u/alice/...`, ("f", "support") for `f/support/...`."""
    check_path(path)
    kind, owner = path.split("/")[:2]
    return ("u" if kind == "u" else "f"), owner


def under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` itself or lies below it, segment-wise.

    `f/sup` is not a prefix of `f/support/x`; `f/support` and `f/support/` are.
    """
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")
