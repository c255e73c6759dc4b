from __future__ import annotations

import hashlib
import sqlite3
import time

import pytest

from studio.auth.permissions import Actor
from studio.workspace import Conflict, Invalid, NotFound, Workspace

from .conftest import reopen

PW = "correct horse"


@pytest.fixture
def people(ws: Workspace) -> Workspace:
    ws.create_user("ana", password=PW, role="admin", email="ana@example.com")
    ws.create_user("bob", password=PW, role="developer")
    return ws


def raw_bytes(data) -> bytes:
    return b"".join(p.read_bytes() for p in data.glob("workspace.db*"))


def test_users_are_created_listed_and_authenticated(people):
    assert [(u.name, u.role) for u in people.list_users()] == [
        ("ana", "admin"),
        ("bob", "developer"),
    ]
    assert people.authenticate("bob", PW).name == "bob"
    assert people.authenticate("bob", "wrong password") is None
    assert people.authenticate("nobody", PW) is None
    assert people.get_user("nobody") is None


def test_user_errors_name_the_field_and_value(people):
    with pytest.raises(Conflict, match="user 'bob' exists already"):
        people.create_user("bob", password=PW, role="viewer")
    with pytest.raises(
        Invalid,
        match="role 'root' is not a role; expected one of admin, developer, operator, viewer",
    ):
        people.create_user("cy", password=PW, role="root")  # type: ignore[arg-type]
    with pytest.raises(Invalid, match="password has 3 characters; expected at least 8"):
        people.create_user("cy", password="abc", role="viewer")
    with pytest.raises(Invalid, match="user name 'Cy Z' is not valid"):
        people.create_user("Cy Z", password=PW, role="viewer")
    with pytest.raises(NotFound, match="user 'zed' does not exist"):
        people.update_user("zed", role="viewer")


def test_passwords_are_stored_as_argon2id_only(data, people):
    (hashed,) = people._db.row("SELECT password_hash FROM users WHERE name = 'bob'")
    assert hashed.startswith("$argon2id$")
    people.close()
    assert PW.encode() not in raw_bytes(data)


def test_disabling_and_new_passwords(people):
    session = people.create_session("bob")
    people.update_user("bob", password="another password")
    assert people.authenticate("bob", PW) is None
    assert people.authenticate("bob", "another password").name == "bob"
    assert people.resolve_session(session, time.time()) is None  # a new password ends sessions
    people.update_user("bob", disabled=True)
    assert people.authenticate("bob", "another password") is None
    assert people.update_user("bob", disabled=False, role="operator").role == "operator"


def test_the_last_admin_cannot_be_demoted_or_disabled(people):
    with pytest.raises(Conflict, match="user 'ana' is the last enabled admin"):
        people.update_user("ana", role="developer")
    with pytest.raises(Conflict, match="last enabled admin"):
        people.update_user("ana", disabled=True)
    people.update_user("bob", role="admin")
    assert people.update_user("ana", role="developer").role == "developer"


def test_groups_and_actor(people):
    people.create_group("ops", ["bob"])
    people.create_group("dev")
    assert people.groups_of("bob") == ("ops",)
    people.set_group_members("dev", ["bob", "ana", "bob"])
    assert [(g.name, g.members) for g in people.list_groups()] == [
        ("dev", ("ana", "bob")),
        ("ops", ("bob",)),
    ]
    assert people.actor("bob") == Actor(name="bob", role="developer", groups=("dev", "ops"))
    assert people.actor("bob", ("run",)).scopes == ("run",)
    assert people.actor("bob", ()).scopes is None  # () is an unscoped token: full rights
    with pytest.raises(NotFound, match="member 'zed' does not exist"):
        people.set_group_members("ops", ["zed"])
    with pytest.raises(Conflict, match="group 'ops' exists already"):
        people.create_group("ops")


def test_folders_and_rights(people):
    people.create_group("ops", ["bob"])
    folder = people.create_folder("support", owner="ana")
    assert folder.rights == {"u/ana": "owner"}
    people.set_folder_right("support", "g/ops", "writer")
    people.set_folder_right("support", "u/bob", "viewer")
    assert people.folders()["support"].rights == {
        "g/ops": "writer",
        "u/ana": "owner",
        "u/bob": "viewer",
    }
    people.set_folder_right("support", "u/bob", None)
    assert people.folders()["support"].rights == {"g/ops": "writer", "u/ana": "owner"}
    copy = people.folders()
    copy["support"].rights["u/evil"] = "owner"  # a caller's copy: the cache is untouched
    assert "u/evil" not in people.folders()["support"].rights
    with pytest.raises(
        Invalid, match="principal 'ops' is not valid; expected u/<user> or g/<group>"
    ):
        people.set_folder_right("support", "ops", "viewer")
    with pytest.raises(Invalid, match="right 'root' is not a folder right"):
        people.set_folder_right("support", "u/bob", "root")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="folder 'nope' does not exist"):
        people.set_folder_right("nope", "u/bob", "viewer")
    with pytest.raises(NotFound, match="group 'zz' does not exist"):
        people.set_folder_right("support", "g/zz", "viewer")


def test_tokens_store_only_a_hash_and_resolve(data, people):
    plaintext, token = people.create_token("bob", label="ci", scopes=["run:f/ops/"])
    assert plaintext.startswith("gm_") and len(plaintext) >= 3 + 43  # 256 bits in base64url
    assert token.scopes == ("run:f/ops/",)
    user, found = people.resolve_token(plaintext, time.time())
    assert (user.name, found.id) == ("bob", token.id)
    (stored,) = people._db.row("SELECT hash FROM tokens WHERE id = ?", (token.id,))
    assert stored == hashlib.sha256(plaintext.encode()).hexdigest()
    assert people.resolve_token("gm_unknown", time.time()) is None
    people.close()
    assert plaintext.encode() not in raw_bytes(data)


def test_expired_revoked_and_disabled_tokens_do_not_resolve(people):
    now = time.time()
    short, _ = people.create_token("bob", label="short", expires_at=now + 60)
    assert people.resolve_token(short, now) is not None
    assert people.resolve_token(short, now + 61) is None
    revoked, token = people.create_token("bob", label="r")
    assert people.resolve_token(revoked, now) is not None  # now cached
    people.revoke_token(token.id)
    assert people.resolve_token(revoked, now) is None
    live, _ = people.create_token("bob", label="l")
    assert people.resolve_token(live, now) is not None
    people.update_user("bob", disabled=True)
    assert people.resolve_token(live, now) is None
    with pytest.raises(NotFound, match="token 'tok_nope' does not exist"):
        people.revoke_token("tok_nope")
    with pytest.raises(Invalid, match=r"expires_at .* is in the past"):
        people.create_token("ana", label="x", expires_at=now - 1)
    with pytest.raises(Invalid, match="scope 'exec' is not valid"):
        people.create_token("ana", label="x", scopes=["exec"])


def test_a_cached_token_lookup_does_not_touch_sqlite(people):
    plaintext, _ = people.create_token("bob", label="hook")
    people.resolve_token(plaintext, time.time())  # warms the cache
    people.actor("bob")
    people.folders()
    statements: list[str] = []
    people._db._con.set_trace_callback(statements.append)
    try:
        for _ in range(100):
            user, token = people.resolve_token(plaintext, time.time())
            people.actor(user.name, token.scopes)
            people.folders()
    finally:
        people._db._con.set_trace_callback(None)
    assert statements == []
    people._db._con.set_trace_callback(statements.append)
    people.resolve_token("gm_not-a-token", time.time())  # a miss does read: proves the trace works
    people._db._con.set_trace_callback(None)
    assert statements


def test_last_use_is_recorded_without_writing_on_the_hot_path(data, people):
    plaintext, _ = people.create_token("bob", label="hook")
    people.resolve_token(plaintext, 1_000.0 + time.time())
    (listed,) = people.list_tokens("bob")
    assert listed.last_used_at is not None and listed.last_used_at > time.time()
    people.resolve_token(plaintext, 2_000.0 + time.time())
    people.close()
    with reopen(data) as again:
        assert again.list_tokens()[0].last_used_at > time.time() + 1_500


def test_ensure_token_is_idempotent_and_refuses_short_values(people):
    value = "a-long-admin-token-from-the-environment"
    first = people.ensure_token(value, "ana", label="GRISTMILL_ADMIN_TOKEN")
    again = people.ensure_token(value, "ana", label="GRISTMILL_ADMIN_TOKEN")
    assert first == again and len(people.list_tokens("ana")) == 1
    user, token = people.resolve_token(value, time.time())
    assert (user.name, token.scopes) == ("ana", ())
    with pytest.raises(Invalid, match="has 5 characters; expected at least 16"):
        people.ensure_token("short", "ana", label="GRISTMILL_ADMIN_TOKEN")


def test_sessions(data, people):
    session = people.create_session("bob", ttl_s=60)
    now = time.time()
    assert people.resolve_session(session, now).name == "bob"
    assert people.resolve_session(session, now + 61) is None
    assert people.resolve_session("forged", now) is None
    people.end_session(session)
    assert people.resolve_session(session, now) is None
    kept = people.create_session("ana")
    people.close()
    assert kept.encode() not in raw_bytes(data)
    with reopen(data) as again:
        assert again.resolve_session(kept, time.time()).name == "ana"


def test_database_is_shared_safely_with_a_second_connection(data, people):
    # Another process (git sync, a CLI) may read the file while the server holds it.
    con = sqlite3.connect(data / "workspace.db")
    assert con.execute("SELECT count(*) FROM users").fetchone() == (2,)
    con.close()
