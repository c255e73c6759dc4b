from __future__ import annotations

import pytest

from studio.vault import Vault
from studio.workspace import Invalid, NotFound, Schedule, Workspace

from .conftest import reopen

SECRET = "sk_live_9f8e7d6c5b4a39281706"
PLAIN = "plain-visible-value-4242"


def db_files(data):
    return {p.name: p.read_bytes() for p in data.glob("workspace.db*")}


def test_secrets_never_reach_the_sqlite_file_or_its_wal(data, ws):
    ws.set_variable("f/ops/plain", PLAIN)
    ws.set_variable("f/ops/stripe", SECRET, secret=True, description="live key")
    ws.set_webhook_signing("flow", "f/ops/hook", secret=SECRET + "-hmac")
    files = db_files(data)
    assert "workspace.db-wal" in files  # the write is still in the WAL: look there too
    # The grep works: the plain variable's value is found in the same bytes.
    assert any(PLAIN.encode() in content for content in files.values())
    assert not any(SECRET.encode() in content for content in files.values())
    ws.close()
    files = db_files(data)
    assert not any(SECRET.encode() in content for content in files.values())
    with reopen(data) as again:
        assert again.get_variable("f/ops/stripe", reveal=True).value == SECRET
        assert again.webhook_signing("flow", "f/ops/hook")[1] == SECRET + "-hmac"


def test_a_plain_value_made_secret_leaves_no_copy_in_the_main_file(data, ws):
    # Rows on both sides, so the old cell is left inside the page, not trimmed off its end.
    ws.set_variable("f/ops/a", "filler " * 10)
    ws.set_variable("f/ops/was_plain", SECRET)
    ws.set_variable("f/ops/z", "filler " * 10)
    ws.close()  # checkpointed into workspace.db
    assert SECRET.encode() in (data / "workspace.db").read_bytes()
    with reopen(data) as again:
        again.set_variable("f/ops/was_plain", SECRET, secret=True)
    assert SECRET.encode() not in (data / "workspace.db").read_bytes()


def test_secret_values_are_hidden_unless_revealed(ws):
    ws.set_variable("u/ana/token", SECRET, secret=True)
    ws.set_variable("u/ana/region", "eu-west")
    assert ws.get_variable("u/ana/token").value is None
    assert ws.get_variable("u/ana/token", reveal=True).value == SECRET
    assert [(v.path, v.value, v.secret) for v in ws.list_variables("u/ana/")] == [
        ("u/ana/region", "eu-west", False),
        ("u/ana/token", None, True),
    ]
    assert ws.secret_values() == [SECRET]
    ws.set_variable("u/ana/token", "changed-secret", secret=True)
    assert ws.secret_values() == ["changed-secret"]
    ws.delete_variable("u/ana/token")
    assert ws.secret_values() == []
    with pytest.raises(NotFound, match="variable 'u/ana/token' does not exist"):
        ws.get_variable("u/ana/token")


def test_a_secret_blob_moved_to_another_variable_does_not_decrypt(ws):
    ws.set_variable("u/ana/a", SECRET, secret=True)
    ws.set_variable("u/ana/b", "other-secret", secret=True)
    with ws._db.transaction() as con:
        con.execute(
            "UPDATE variables SET blob = (SELECT blob FROM variables WHERE path = 'u/ana/a') WHERE path = 'u/ana/b'"
        )
    with pytest.raises(Exception, match="u/ana/b"):
        ws.get_variable("u/ana/b", reveal=True)


def test_rotation_reencrypts_every_secret_and_survives_a_reopen(data, ws):
    ws.set_variable("f/ops/one", SECRET, secret=True)
    ws.set_variable("f/ops/two", "second-secret", secret=True)
    ws.set_webhook_signing("script", "f/ops/s", secret="h" * 20)
    old_key = ws.vault.current_key_id
    before = dict(ws._db.rows("SELECT path, blob FROM variables"))
    new_key = ws.rotate_secrets(actor="ana")
    assert new_key != old_key
    after = dict(ws._db.rows("SELECT path, blob FROM variables"))
    for path, blob in after.items():
        assert blob != before[path]
        assert not ws.vault.needs_reencrypt(blob)
    (signing,) = ws._db.row("SELECT blob FROM webhook_signing")
    assert not ws.vault.needs_reencrypt(signing)
    (entry,) = ws.audit_log(action="secrets.rotate")
    assert (entry.actor, entry.detail) == ("ana", {"key_id": new_key, "reencrypted": 3})
    ws.close()
    with reopen(data) as again:
        assert again.vault.current_key_id == new_key
        assert again.get_variable("f/ops/one", reveal=True).value == SECRET
        assert again.get_variable("f/ops/two", reveal=True).value == "second-secret"
        assert again.webhook_signing("script", "f/ops/s")[1] == "h" * 20


def test_reencrypt_after_a_new_environment_key(tmp_path):
    import base64
    import os

    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    with Workspace(tmp_path / "workspace.db", Vault.open(tmp_path, env_key=old)) as ws:
        ws.set_variable("u/a/s", SECRET, secret=True)
    with Workspace(tmp_path / "workspace.db", Vault.open(tmp_path, env_key=f"{new},{old}")) as ws:
        assert ws.reencrypt_secrets() == 1
    with Workspace(tmp_path / "workspace.db", Vault.open(tmp_path, env_key=new)) as ws:
        assert ws.get_variable("u/a/s", reveal=True).value == SECRET


DB_TYPE = {
    "type": "object",
    "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
    "required": ["host"],
}


def test_resources_are_checked_against_their_type(ws):
    ws.set_resource_type("postgres", DB_TYPE, "a database")
    resource = ws.set_resource("f/ops/db", "postgres", {"host": "db", "port": 5432})
    assert ws.get_resource("f/ops/db") == resource
    with pytest.raises(Invalid, match=r"value\.port: 'x' is not of type 'integer'") as caught:
        ws.set_resource("f/ops/db", "postgres", {"host": "db", "port": "x"})
    assert caught.value.field == "value.port"
    with pytest.raises(Invalid, match="'host' is a required property"):
        ws.set_resource("f/ops/db", "postgres", {})
    with pytest.raises(
        Invalid, match="resource_type 'mysql' is not a resource type; expected one of: postgres"
    ):
        ws.set_resource("f/ops/db2", "mysql", {})
    with pytest.raises(Invalid, match="schema of resource type 'bad' is not a valid JSON Schema"):
        ws.set_resource_type("bad", {"type": "nonsense"})
    assert [t.name for t in ws.list_resource_types()] == ["postgres"]
    assert [r.path for r in ws.list_resources("f/ops")] == ["f/ops/db"]
    ws.delete_resource("f/ops/db")
    with pytest.raises(NotFound, match="resource 'f/ops/db' does not exist"):
        ws.get_resource("f/ops/db")


def nightly(**changes) -> Schedule:
    base = {
        "path": "f/ops/nightly",
        "cron": "0 0 2 * * *",
        "timezone": "Europe/Paris",
        "target_kind": "flow",
        "target_path": "f/ops/import",
        "args": {"n": 3},
    }
    return Schedule(**{**base, **changes})


def test_schedules_round_trip_and_keep_their_last_fire(ws):
    stored = ws.set_schedule(nightly(on_failure="f/ops/alert"))
    assert stored.updated_at > 0 and stored.last_fire_at is None
    assert ws.get_schedule("f/ops/nightly") == stored
    ws.set_last_fire("f/ops/nightly", 1234.5)
    edited = ws.set_schedule(nightly(enabled=False))  # an edit from the API carries no last fire
    assert edited.last_fire_at == 1234.5 and not edited.enabled
    assert ws.list_schedules() == [edited]
    assert ws.set_schedule(nightly(cron="*/5 * * * *")).cron == "*/5 * * * *"
    ws.delete_schedule("f/ops/nightly")
    with pytest.raises(NotFound, match="schedule 'f/ops/nightly' does not exist"):
        ws.set_last_fire("f/ops/nightly", 1.0)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"cron": "0 2 * *"}, "cron", "cron '0 2 \\* \\*' has 4 fields; expected 5"),
        ({"cron": "61 * * * *"}, "cron", "cron '61 \\* \\* \\* \\*' is not valid"),
        ({"cron": "0 0 25 * * *"}, "cron", "is not valid"),  # 6 fields: seconds first, hour 25
        (
            {"timezone": "Mars/Olympus"},
            "timezone",
            "timezone 'Mars/Olympus' is not a known time zone",
        ),
        ({"target_kind": "app"}, "kind", "kind 'app' is not an item kind"),
        ({"target_path": "nowhere"}, "target_path", "target_path: path 'nowhere'"),
        ({"on_failure": "x"}, "on_failure", "on_failure: path 'x'"),
        ({"catch_up": "some"}, "catch_up", "catch_up 'some' is not a policy"),
        ({"args": {"when": object()}}, "args", "args is not JSON-serialisable"),
    ],
)
def test_a_bad_schedule_names_the_field(ws, changes, field, message):
    with pytest.raises(Invalid, match=message) as caught:
        ws.set_schedule(nightly(**changes))
    assert caught.value.field == field


def test_webhook_signing(ws):
    config = ws.set_webhook_signing("flow", "f/ops/hook", secret="x" * 32, tolerance_s=60)
    assert (config.path, config.kind, config.tolerance_s) == ("f/ops/hook", "flow", 60)
    assert ws.webhook_signing("flow", "f/ops/hook") == (config, "x" * 32)
    assert ws.webhook_signing("script", "f/ops/hook") is None
    with pytest.raises(
        Invalid, match="webhook secret for 'f/ops/hook' has 5 characters; expected at least 16"
    ):
        ws.set_webhook_signing("flow", "f/ops/hook", secret="short")
    with pytest.raises(Invalid, match="tolerance_s 0 is not valid"):
        ws.set_webhook_signing("flow", "f/ops/hook", secret="x" * 32, tolerance_s=0)
    assert ws.set_webhook_signing("flow", "f/ops/hook", secret=None) is None
    assert ws.webhook_signing("flow", "f/ops/hook") is None


def test_audit_log_newest_first_with_filters(ws):
    ws.audit("ana", "login", "", ip="127.0.0.1")
    ws.audit("bob", "deploy", "f/ops/x", version=2)
    ws.audit("ana", "deploy", "f/ops/y", version=1)
    assert [(e.actor, e.action, e.target) for e in ws.audit_log()] == [
        ("ana", "deploy", "f/ops/y"),
        ("bob", "deploy", "f/ops/x"),
        ("ana", "login", ""),
    ]
    assert [e.target for e in ws.audit_log(action="deploy", actor="bob")] == ["f/ops/x"]
    assert ws.audit_log(actor="ana", limit=1, offset=1)[0].detail == {"ip": "127.0.0.1"}
