"""The permission rules as one table: every role x every action x every kind of place.

Each row spells out (read, run, write, admin) for one role in one place. The actor is
"me" in groups ("team",); the folders below give "me" each right directly, or through
the group, or none.
"""

from __future__ import annotations

import pytest

from studio.auth.permissions import ACTIONS, Actor, Forbidden, can, require
from studio.workspace import Folder, Invalid

FOLDERS = {
    "mine": Folder("mine", {"u/me": "owner"}),
    "write": Folder("write", {"u/other": "owner", "u/me": "writer"}),
    "view": Folder("view", {"u/other": "owner", "u/me": "viewer"}),
    "none": Folder("none", {"u/other": "owner", "g/strangers": "writer"}),
    "gwrite": Folder("gwrite", {"u/other": "owner", "g/team": "writer"}),
    "gview": Folder("gview", {"u/other": "owner", "g/team": "viewer"}),
    "gown": Folder("gown", {"u/other": "owner", "g/team": "owner"}),
    # the strongest right counts: viewer directly, writer through the group
    "mixed": Folder("mixed", {"u/other": "owner", "u/me": "viewer", "g/team": "writer"}),
}

PLACES = {
    "own u/ item": "u/me/script",
    "own u/ tree root": "u/me",
    "another user's u/ item": "u/other/script",
    "folder item, owner right": "f/mine/sub/script",
    "folder root, owner right": "f/mine",
    "folder item, writer right": "f/write/script",
    "folder item, viewer right": "f/view/script",
    "folder item, no right": "f/none/script",
    "unknown folder": "f/ghost/script",
    "folder item, group writer": "f/gwrite/script",
    "folder item, group viewer": "f/gview/script",
    "folder item, group owner": "f/gown/script",
    "folder item, viewer + group writer": "f/mixed/script",
    "workspace level (path None)": None,
}

T, F = True, False
#                                          read run  write admin
EXPECTED: dict[tuple[str, str], tuple[bool, bool, bool, bool]] = {
    ("admin", "own u/ item"):                        (T, T, T, T),
    ("admin", "own u/ tree root"):                   (T, T, T, T),
    ("admin", "another user's u/ item"):             (T, T, T, T),
    ("admin", "folder item, owner right"):           (T, T, T, T),
    ("admin", "folder root, owner right"):           (T, T, T, T),
    ("admin", "folder item, writer right"):          (T, T, T, T),
    ("admin", "folder item, viewer right"):          (T, T, T, T),
    ("admin", "folder item, no right"):              (T, T, T, T),
    ("admin", "unknown folder"):                     (T, T, T, T),
    ("admin", "folder item, group writer"):          (T, T, T, T),
    ("admin", "folder item, group viewer"):          (T, T, T, T),
    ("admin", "folder item, group owner"):           (T, T, T, T),
    ("admin", "folder item, viewer + group writer"): (T, T, T, T),
    ("admin", "workspace level (path None)"):        (T, T, T, T),

    ("developer", "own u/ item"):                        (T, T, T, F),
    ("developer", "own u/ tree root"):                   (T, T, T, F),
    ("developer", "another user's u/ item"):             (F, F, F, F),
    ("developer", "folder item, owner right"):           (T, T, T, T),
    ("developer", "folder root, owner right"):           (T, T, T, T),
    ("developer", "folder item, writer right"):          (T, T, T, F),
    ("developer", "folder item, viewer right"):          (T, T, F, F),
    ("developer", "folder item, no right"):              (F, F, F, F),
    ("developer", "unknown folder"):                     (F, F, F, F),
    ("developer", "folder item, group writer"):          (T, T, T, F),
    ("developer", "folder item, group viewer"):          (T, T, F, F),
    ("developer", "folder item, group owner"):           (T, T, T, T),
    ("developer", "folder item, viewer + group writer"): (T, T, T, F),
    ("developer", "workspace level (path None)"):        (T, T, T, F),

    ("operator", "own u/ item"):                        (T, T, F, F),
    ("operator", "own u/ tree root"):                   (T, T, F, F),
    ("operator", "another user's u/ item"):             (F, F, F, F),
    ("operator", "folder item, owner right"):           (T, T, F, F),
    ("operator", "folder root, owner right"):           (T, T, F, F),
    ("operator", "folder item, writer right"):          (T, T, F, F),
    ("operator", "folder item, viewer right"):          (T, T, F, F),
    ("operator", "folder item, no right"):              (F, F, F, F),
    ("operator", "unknown folder"):                     (F, F, F, F),
    ("operator", "folder item, group writer"):          (T, T, F, F),
    ("operator", "folder item, group viewer"):          (T, T, F, F),
    ("operator", "folder item, group owner"):           (T, T, F, F),
    ("operator", "folder item, viewer + group writer"): (T, T, F, F),
    ("operator", "workspace level (path None)"):        (T, T, F, F),

    ("viewer", "own u/ item"):                        (T, F, F, F),
    ("viewer", "own u/ tree root"):                   (T, F, F, F),
    ("viewer", "another user's u/ item"):             (F, F, F, F),
    ("viewer", "folder item, owner right"):           (T, F, F, F),
    ("viewer", "folder root, owner right"):           (T, F, F, F),
    ("viewer", "folder item, writer right"):          (T, F, F, F),
    ("viewer", "folder item, viewer right"):          (T, F, F, F),
    ("viewer", "folder item, no right"):              (F, F, F, F),
    ("viewer", "unknown folder"):                     (F, F, F, F),
    ("viewer", "folder item, group writer"):          (T, F, F, F),
    ("viewer", "folder item, group viewer"):          (T, F, F, F),
    ("viewer", "folder item, group owner"):           (T, F, F, F),
    ("viewer", "folder item, viewer + group writer"): (T, F, F, F),
    ("viewer", "workspace level (path None)"):        (T, F, F, F),
}  # fmt: skip


def test_the_table_covers_every_role_and_place():
    roles = ("admin", "developer", "operator", "viewer")
    assert set(EXPECTED) == {(role, place) for role in roles for place in PLACES}


@pytest.mark.parametrize(("role", "place"), list(EXPECTED))
def test_permission_matrix(role, place):
    actor = Actor(name="me", role=role, groups=("team",))
    got = tuple(can(actor, action, PLACES[place], FOLDERS) for action in ACTIONS)
    assert got == EXPECTED[(role, place)], f"{role} in {place}: (read, run, write, admin)"


# Scoped tokens: scopes only ever narrow what the role and rights allow.
#          role, scopes, path, (read, run, write, admin)
SCOPED = [
    ("developer", ("read",), "u/me/x", (T, F, F, F)),
    ("developer", ("run",), "u/me/x", (F, T, F, F)),
    ("developer", ("write",), "u/me/x", (T, F, T, F)),  # write implies reading back
    ("developer", ("read", "run", "write"), "u/me/x", (T, T, T, F)),
    ("developer", ("admin",), "u/me/x", (T, T, T, F)),  # "admin" scope = the user's full rights
    ("developer", ("admin",), "f/mine/x", (T, T, T, T)),
    ("developer", ("run:f/write",), "f/write/x", (F, T, F, F)),
    ("developer", ("run:f/write/",), "f/write/deep/x", (F, T, F, F)),
    ("developer", ("run:f/write",), "f/writer/x", (F, F, F, F)),  # whole segments only
    ("developer", ("run:f/write",), "f/mine/x", (F, F, F, F)),
    ("developer", ("run:f/write/x",), "f/write/x", (F, T, F, F)),  # one item
    ("developer", ("run:f/none",), "f/none/x", (F, F, F, F)),  # a scope grants no right
    ("developer", ("run:u/other",), "u/other/x", (F, F, F, F)),
    ("developer", (), "u/me/x", (F, F, F, F)),  # an Actor with no scopes may do nothing
    ("developer", ("read",), None, (T, F, F, F)),
    ("developer", ("run:f/write",), None, (F, F, F, F)),
    ("operator", ("write",), "u/me/x", (T, F, F, F)),  # a scope does not lift the role's cap
    ("viewer", ("run",), "f/view/x", (F, F, F, F)),
    ("admin", ("run:f/none",), "f/none/x", (F, T, F, F)),
    ("admin", ("read",), None, (T, F, F, F)),
    ("admin", ("admin",), None, (T, T, T, T)),
]


@pytest.mark.parametrize(("role", "scopes", "path", "expected"), SCOPED)
def test_scoped_tokens(role, scopes, path, expected):
    actor = Actor(name="me", role=role, groups=("team",), scopes=scopes)
    got = tuple(can(actor, action, path, FOLDERS) for action in ACTIONS)
    assert got == expected, f"{role} with {scopes} on {path}: (read, run, write, admin)"


def test_require_names_actor_action_and_path():
    actor = Actor(name="sam", role="operator")
    require(actor, "read", "u/sam/x", FOLDERS)
    with pytest.raises(Forbidden, match=r"sam \(operator\) may not write on 'u/sam/x'") as caught:
        require(actor, "write", "u/sam/x", FOLDERS)
    assert isinstance(caught.value, PermissionError)
    assert (caught.value.action, caught.value.path) == ("write", "u/sam/x")
    with pytest.raises(Forbidden, match="may not admin on the workspace"):
        require(actor, "admin", None, FOLDERS)
    scoped = Actor(name="ci", role="developer", scopes=("run:f/a",))
    with pytest.raises(Forbidden, match="with a token scoped to run:f/a"):
        require(scoped, "write", "u/ci/x", FOLDERS)


def test_malformed_paths_and_actions_are_invalid_not_forbidden():
    actor = Actor(name="me", role="admin")
    with pytest.raises(Invalid, match="path 'x/y' is not a workspace path"):
        can(actor, "read", "x/y", FOLDERS)
    with pytest.raises(Invalid, match="action 'delete' is not known"):
        can(actor, "delete", "u/me/x", FOLDERS)  # type: ignore[arg-type]


def test_approval_refusal_follows_approvers_and_self_approval() -> None:
    from studio.auth.permissions import Actor, approval_refusal

    lead = Actor("lena", "developer", groups=("leads",))
    agent = Actor("sam", "operator", groups=("support",))
    admin = Actor("root", "admin")
    detail = {"approvers": ["g/leads", "u/ops_boss"], "self_approval": False}
    assert approval_refusal(lead, detail, started_by="sam") is None
    assert approval_refusal(Actor("ops_boss", "operator"), detail, started_by="sam") is None
    assert approval_refusal(agent, detail, started_by="lena") == (
        "sam is not among this step's approvers (g/leads, u/ops_boss)"
    )
    assert approval_refusal(lead, detail, started_by="lena") == (
        "lena started this run and its approval step refuses self-approval"
    )
    assert approval_refusal(admin, detail, started_by="root") is None
    assert (
        approval_refusal(agent, {}, started_by="sam") is None
    )  # no restriction: the run right decides
