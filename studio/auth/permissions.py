"""Who may do what where — pure rules, no I/O, the same for the pages and the API.

An action on a path is allowed when three things agree:

1. the actor's *right* on the path: their own `u/<self>/` tree counts as "writer";
   in `f/<folder>/` it is the strongest of the rights given to `u/<self>` and to each
   of their groups `g/<group>`; another user's `u/<other>/` tree gives none;
2. their *role*, which caps any right: a developer may read, run, write and (as folder
   owner) administer; an operator may read and run; a viewer may only read;
3. for a scoped token, its *scopes*.

Admins may do everything (a scoped admin token still only what its scopes allow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from studio.workspace.errors import Invalid
from studio.workspace.models import Folder, Right, Role
from studio.workspace.paths import SEGMENT, under

Action = Literal["read", "run", "write", "admin"]
ACTIONS: tuple[Action, ...] = get_args(Action)

# What each right allows in a folder ("admin" = change the folder's rights).
RIGHT_ALLOWS: dict[Right, frozenset[Action]] = {
    "owner": frozenset({"read", "run", "write", "admin"}),
    "writer": frozenset({"read", "run", "write"}),
    "viewer": frozenset({"read", "run"}),
}
# What each role can ever do, whatever right it holds.
ROLE_ALLOWS: dict[Role, frozenset[Action]] = {
    "admin": frozenset(ACTIONS),
    "developer": frozenset({"read", "run", "write", "admin"}),
    "operator": frozenset({"read", "run"}),
    "viewer": frozenset({"read"}),
}
# Workspace-level things (path None): listing is open to all; "admin" needs the admin role.
_UNPATHED_ALLOWS: dict[Role, frozenset[Action]] = {
    "admin": frozenset(ACTIONS),
    "developer": frozenset({"read", "run", "write"}),
    "operator": frozenset({"read", "run"}),
    "viewer": frozenset({"read"}),
}
_RANK: dict[Right, int] = {"viewer": 1, "writer": 2, "owner": 3}
SCOPES: tuple[str, ...] = ("read", "run", "write", "admin")


class Forbidden(PermissionError):
    """The actor may not do this; the message names the actor, the action and the path."""

    def __init__(self, actor: Actor, action: Action, path: str | None) -> None:
        where = f"on {path!r}" if path else "on the workspace"
        how = (
            f" with a token scoped to {', '.join(actor.scopes) or 'nothing'}"
            if actor.scopes is not None
            else ""
        )
        super().__init__(f"{actor.name} ({actor.role}) may not {action} {where}{how}")
        self.actor, self.action, self.path = actor, action, path


@dataclass(frozen=True)
class Actor:
    """Who is asking: a user with their role and groups, and the scopes of the token used
    (None when not a scoped token: a session or an unscoped token)."""

    name: str
    role: Role
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] | None = None


def check_scope(scope: str) -> str:
    """`scope` if it is one of read, run, write, admin or run:<path-prefix>; Invalid otherwise."""
    if scope in SCOPES:
        return scope
    if scope.startswith("run:"):
        prefix = scope[4:].rstrip("/")
        parts = prefix.split("/")
        if (
            parts[0] in ("u", "f")
            and len(parts) >= 2
            and all(SEGMENT.fullmatch(p) for p in parts[1:])
        ):
            return scope
    raise Invalid(
        f"scope {scope!r} is not valid; expected one of read, run, write, admin, or "
        "run:<path-prefix> such as run:f/support/",
        field="scopes",
    )


def right_in(actor: Actor, folder: Folder | None) -> Right | None:
    """The strongest right the actor holds in `folder`, directly or through a group."""
    if folder is None:
        return None
    principals = [f"u/{actor.name}", *(f"g/{group}" for group in actor.groups)]
    held: list[Right] = [folder.rights[p] for p in principals if p in folder.rights]
    if not held:
        return None
    strongest: Right = max(held, key=_RANK.__getitem__)
    return strongest


def can(actor: Actor, action: Action, path: str | None, folders: Mapping[str, Folder]) -> bool:
    """Whether `actor` may `action` on `path` (an item path, or a tree root `u/<user>` /
    `f/<folder>`; None for workspace-level things such as the list of users)."""
    if action not in ACTIONS:
        raise Invalid(f"action {action!r} is not known; expected one of {', '.join(ACTIONS)}")
    if not _scopes_allow(actor.scopes, action, path):
        return False
    if path is None:
        return action in _UNPATHED_ALLOWS[actor.role]
    tree, owner = _root(path)
    if actor.role == "admin":
        return True
    if tree == "u":
        # A user's own tree is theirs to author, but not to administer; nobody else's.
        right: Right | None = "writer" if owner == actor.name else None
    else:
        right = right_in(actor, folders.get(owner))
    if right is None:
        return False
    return action in RIGHT_ALLOWS[right] and action in ROLE_ALLOWS[actor.role]


def require(actor: Actor, action: Action, path: str | None, folders: Mapping[str, Folder]) -> None:
    """Nothing if `can(...)`; Forbidden naming the actor, action and path otherwise."""
    if not can(actor, action, path, folders):
        raise Forbidden(actor, action, path)


def _scopes_allow(scopes: tuple[str, ...] | None, action: Action, path: str | None) -> bool:
    if scopes is None:
        return True
    if "admin" in scopes or action in scopes:
        return True
    if action == "read" and "write" in scopes:
        return True  # writing a thing you cannot read back is never what a token is for
    if action == "run" and path is not None:
        return any(s.startswith("run:") and under(path, s[4:]) for s in scopes)
    return False


def _root(path: str) -> tuple[Literal["u", "f"], str]:
    parts = path.split("/")
    if (
        len(parts) < 2
        or parts[0] not in ("u", "f")
        or not all(SEGMENT.fullmatch(p) for p in parts[1:])
    ):
        raise Invalid(
            f"path {path!r} is not a workspace path; expected u/<user>/<name> or "
            "f/<folder>/<name> (or a tree root u/<user>, f/<folder>)",
            field="path",
        )
    return ("u" if parts[0] == "u" else "f"), parts[1]


def approval_refusal(actor: Actor, detail: Mapping[str, Any], started_by: str) -> str | None:
    """Why `actor` may not approve or reject a waiting approval step (its stored
    `detail`: `approvers`, `self_approval`) of a run `started_by` someone; None if they may.
    Admins may always; the run right is checked separately."""
    if actor.role == "admin":
        return None
    if detail.get("self_approval") is False and actor.name == started_by:
        return f"{actor.name} started this run and its approval step refuses self-approval"
    approvers = list(detail.get("approvers") or [])
    if (
        approvers
        and f"u/{actor.name}" not in approvers
        and not any(f"g/{group}" in approvers for group in actor.groups)
    ):
        return f"{actor.name} is not among this step's approvers ({', '.join(approvers)})"
    return None
