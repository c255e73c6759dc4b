"""The admin pages' state and actions in-process, against a real workspace: what each
action stores, what it audits, and what each role is refused (the UI hides buttons; the
actions must refuse anyway)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from types import SimpleNamespace

import pytest

from studio.api.webhooks import SIGNATURE_HEADER, verify
from studio.pages.audit import AuditView
from studio.pages.home import matches
from studio.pages.resources import ResourcesView
from studio.pages.users import UsersView
from studio.pages.variables import MASK, VariablesView
from studio.pages.webhooks import (
    WebhooksView,
    curl_line,
    example_args,
    signed_curl,
    webhook_urls,
)

BASE = "http://127.0.0.1:8123"
SCRIPT = "def main(name: str, times: int = 2, loud: bool = False):\n    return name * times\n"


def _actions(ws, action: str) -> list:
    return ws.audit_log(action=action)


# ------------------------------------------------------------------ webhooks: pure


def test_example_args_take_defaults_and_placeholders_for_required():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "times": {"type": "integer", "default": 2},
            "reason": {"type": "string", "enum": ["late", "damaged"]},
            "note": {"type": "string"},
        },
        "required": ["name", "reason"],
    }
    assert example_args(schema) == {"name": "", "times": 2, "reason": "late"}


def test_curl_line_quotes_the_body_for_the_shell():
    sync_url, async_url = webhook_urls(BASE + "/", "script", "u/ada/x")
    assert sync_url == f"{BASE}/api/run_wait/script/u/ada/x"
    assert async_url == f"{BASE}/api/run/script/u/ada/x"
    line = curl_line(sync_url, {"who": "O'Brien"})
    assert line == (
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        f"-d '{{\"who\": \"O'\\''Brien\"}}' {sync_url}"
    )
    # The shell gives curl exactly the JSON body.
    echoed = subprocess.run(
        ["bash", "-c", "curl() { printf '%s\\n' \"$@\"; }\n" + line],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert json.loads(echoed[echoed.index("-d") + 1]) == {"who": "O'Brien"}


def test_the_signed_curl_example_makes_a_signature_the_server_accepts():
    secret = "s3cret-for-the-partner-0123456789"
    snippet = signed_curl(f"{BASE}/api/run_wait/flow/f/ops/x", {"n": 3, "who": "it's me"})
    echoed = subprocess.run(
        ["bash", "-c", "curl() { printf '%s\\n' \"$@\"; }\n" + snippet],
        capture_output=True,
        text=True,
        check=True,
        env={"SECRET": secret, "TOKEN": "t", "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    header = next(a for a in echoed if a.startswith(SIGNATURE_HEADER + ":"))
    body = echoed[echoed.index("-d") + 1].encode()
    assert json.loads(body) == {"n": 3, "who": "it's me"}
    value = header.split(":", 1)[1].strip()
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", value)
    verify(value, body, secret, now=time.time(), tolerance_s=300)  # raises if wrong


# ------------------------------------------------------------------ webhooks: view


def test_webhooks_list_runnable_items_and_signing_is_set_audited_and_shown_once(ws, ctx_for):
    ws.deploy("script", "u/ada/greet", SCRIPT, author="ada", language="python")
    ws.deploy("script", "u/dev/mine", SCRIPT, author="dev", language="python")
    view = WebhooksView(ctx_for("dev"), BASE)
    assert "u/dev/mine" in view.listing.object
    assert "u/ada/greet" not in view.listing.object  # another user's private item
    assert list(view.item.options.values()) == ["script:u/dev/mine"]
    assert "run_wait/script/u/dev/mine" in view.listing.object
    assert "&quot;name&quot;: &quot;&quot;, &quot;times&quot;: 2" in view.listing.object

    view.tolerance.value = 60
    secret = view.enable_signing()
    assert secret and secret in view.signing_out.object
    config, stored = ws.webhook_signing("script", "u/dev/mine")
    assert stored == secret and config.tolerance_s == 60
    assert "signed-curl" in view.signing_out.object
    [entry] = _actions(ws, "webhook.signing_set")
    assert (entry.actor, entry.target, entry.detail) == (
        "dev",
        "u/dev/mine",
        {"kind": "script", "tolerance_s": 60},
    )
    assert secret not in json.dumps([e.detail for e in ws.audit_log()])
    view.refresh()  # a reload never shows the secret again
    assert secret not in view.signing_out.object
    assert "HMAC signature required" in view.listing.object

    view.disable_signing()
    assert ws.webhook_signing("script", "u/dev/mine") is None
    assert _actions(ws, "webhook.signing_removed")


def test_an_operator_may_not_turn_signing_on(ws, ctx_for):
    ws.create_folder("ops", owner="ada")
    ws.set_folder_right("ops", "u/op", "writer")  # the role caps it at read and run
    ws.deploy("script", "f/ops/refund", SCRIPT, author="ada", language="python")
    view = WebhooksView(ctx_for("op"), BASE)
    assert view.item.value == "script:f/ops/refund"
    assert view.enable.disabled
    assert view.enable_signing() is None
    assert "may not write" in view.signing_out.object
    assert ws.webhook_signing("script", "f/ops/refund") is None
    assert not _actions(ws, "webhook.signing_set")


def test_tokens_are_created_once_listed_and_revoked(ws, ctx_for):
    view = WebhooksView(ctx_for("op"), BASE)
    view.label.value = "partner"
    view.scopes.value = ["run"]
    view.days.value = 7
    plaintext = view.create_token()
    assert plaintext and view.plaintext.value == plaintext and view.plaintext.visible
    user, token = ws.resolve_token(plaintext, time.time())
    assert user.name == "op" and token.scopes == ("run",)
    assert token.expires_at == pytest.approx(time.time() + 7 * 86400, abs=60)
    assert plaintext not in view.tokens.object and token.id in view.tokens.object
    [entry] = _actions(ws, "token.create")
    assert entry.detail["token_id"] == token.id and plaintext not in json.dumps(entry.detail)

    view.label.value = "bad"
    view.scopes.value = []
    view.run_prefix.value = "not a prefix"
    assert view.create_token() is None
    assert "run:&lt;path-prefix&gt;" in view.token_out.object

    view.revoke_pick.value = token.id
    view.revoke_token()
    assert ws.resolve_token(plaintext, time.time()) is None
    assert not view.plaintext.visible and _actions(ws, "token.revoke")


def test_a_user_cannot_revoke_someone_elses_token(ws, ctx_for):
    _, theirs = ws.create_token("ada", label="admin's")
    view = WebhooksView(ctx_for("dev"), BASE)
    assert theirs.id not in view.revoke_pick.options.values()
    view.revoke_pick.options = {"forged": theirs.id}
    view.revoke_pick.value = theirs.id
    view.revoke_token()
    assert "not one of your tokens" in view.token_out.object
    assert not ws.list_tokens("ada")[0].revoked


# ------------------------------------------------------------------------ variables


def test_a_secret_is_masked_and_revealing_it_is_audited(ws, ctx_for):
    view = VariablesView(ctx_for("dev"))
    view.path.value = "u/dev/api_key"
    view.secret.value = True
    assert view.secret_value.visible and not view.value.visible
    view.secret_value.value = "sk-live-123456"
    view.description.value = "partner key"
    view.save()
    assert "variable-saved" in view.feedback.object
    assert MASK in view.table.object and "sk-live-123456" not in view.table.object
    assert ws.get_variable("u/dev/api_key").value is None  # stored as a secret
    assert _actions(ws, "secret.set")

    # Editing the description keeps the value when the secret box is left empty.
    view.pick.value = "u/dev/api_key"
    view.edit()
    assert view.secret.value and view.secret_value.value == ""
    view.description.value = "rotated monthly"
    view.save()
    assert ws.get_variable("u/dev/api_key", reveal=True).value == "sk-live-123456"
    assert ws.get_variable("u/dev/api_key").description == "rotated monthly"

    assert not _actions(ws, "secret.reveal")
    assert view.reveal() == "sk-live-123456"
    assert "sk-live-123456" in view.revealed.object
    [entry] = _actions(ws, "secret.reveal")
    assert (entry.actor, entry.target) == ("dev", "u/dev/api_key")

    view.delete()
    assert not ws.list_variables() and _actions(ws, "variable.delete")


def test_reading_a_secret_without_write_is_refused_and_not_audited(ws, ctx_for):
    ws.create_folder("ops", owner="ada")
    ws.set_folder_right("ops", "u/op", "viewer")
    ws.set_variable("f/ops/db_password", "hunter2-hunter2", secret=True)
    ws.set_variable("f/ops/region", "eu-west-1")
    view = VariablesView(ctx_for("op"))
    assert view.pick.options == ["f/ops/db_password", "f/ops/region"]
    assert "eu-west-1" in view.table.object and "hunter2" not in view.table.object
    view.pick.value = "f/ops/db_password"
    assert view.reveal_button.disabled and view.delete_button.disabled
    assert view.reveal() is None
    assert "may not write" in view.revealed.object and "hunter2" not in view.revealed.object
    assert not _actions(ws, "secret.reveal")
    view.delete()
    assert "may not write" in view.feedback.object
    view.path.value = "f/ops/region"
    view.value.value = "us-east-1"
    view.save()
    assert ws.get_variable("f/ops/region").value == "eu-west-1"


# ------------------------------------------------------------------------ resources


PG = {
    "type": "object",
    "properties": {"host": {"type": "string"}, "port": {"type": "integer", "default": 5432}},
    "required": ["host"],
}


def test_resource_types_and_resources_with_errors_next_to_the_form(ws, ctx_for):
    view = ResourcesView(ctx_for("dev"))
    view.type_name.value = "pg"
    view.type_schema.value = "{not json"
    view.save_type()
    assert "not valid JSON" in view.type_out.object
    view.type_schema.value = json.dumps({"type": "object", "properties": {"x": {"type": 3}}})
    view.save_type()
    assert "not a valid JSON Schema" in view.type_out.object
    view.type_schema.value = json.dumps(PG)
    view.save_type()
    assert "type-saved" in view.type_out.object and view.kind.value == "pg"
    assert set(view.form.fields) == {"host", "port"}

    view.path.value = "u/dev/warehouse"
    view.save()  # host is required
    assert "host" in view.feedback.object and "role='alert'" in view.feedback.object
    assert view.form.errors and "host" in view.form.errors
    view.form.value = {"host": "db.internal", "port": 6543}
    view.save()
    assert "resource-saved" in view.feedback.object
    assert ws.get_resource("u/dev/warehouse").value == {"host": "db.internal", "port": 6543}
    [entry] = _actions(ws, "resource.set")
    assert entry.detail == {"resource_type": "pg"}

    other = ResourcesView(ctx_for("dev"))
    other.pick.value = "u/dev/warehouse"
    other.edit()
    assert other.form.value == {"host": "db.internal", "port": 6543}
    other.delete()
    assert not ws.list_resources() and _actions(ws, "resource.delete")


def test_an_operator_may_not_define_types_or_write_resources(ws, ctx_for):
    ws.set_resource_type("pg", PG)
    view = ResourcesView(ctx_for("op"))
    assert view.type_save.disabled
    view.type_name.value = "evil"
    view.save_type()
    assert "may not define resource types" in view.type_out.object
    assert [t.name for t in ws.list_resource_types()] == ["pg"]
    view.path.value = "u/op/mine"  # their own tree: the operator role still cannot write
    view.form.value = {"host": "x"}
    view.save()
    assert "may not write" in view.feedback.object and not ws.list_resources()


# ------------------------------------------------------------------------ users


def test_admin_creates_users_groups_folders_and_rights_all_audited(ws, ctx_for):
    view = UsersView(ctx_for("ada"))
    view.new_name.value = "agent"
    view.new_password.value = "short"
    view.create_user()
    assert "at least 8" in view.user_out.object
    view.new_password.value = "long enough pw"
    view.new_role.value = "operator"
    view.create_user()
    assert ws.get_user("agent").role == "operator"
    view.user_pick.value = "agent"
    view.role_pick.value = "developer"
    view.change_role()
    assert ws.get_user("agent").role == "developer"
    view.toggle_disabled()
    assert ws.get_user("agent").disabled
    view.user_pick.value = "ada"
    view.toggle_disabled()  # never oneself
    assert "own account" in view.user_out.object and not ws.get_user("ada").disabled

    view.group_name.value = "support"
    view.group_members.value = ["agent", "op"]
    view.create_group()
    assert ws.list_groups()[0].members == ("agent", "op")
    view.group_members.value = ["op"]
    view.set_members()
    assert ws.list_groups()[0].members == ("op",)

    view.folder_name.value = "refunds"
    view.create_folder()
    assert ws.folders()["refunds"].rights == {"u/ada": "owner"}
    view.folder_pick.value = "refunds"
    view.principal.value = "g/support"
    view.right.value = "writer"
    view.set_right()
    assert ws.folders()["refunds"].rights["g/support"] == "writer"
    assert "g/support: writer" in view.folders.object

    actions = [e.action for e in reversed(ws.audit_log())]
    assert actions == [
        "user.create",
        "user.update",
        "user.update",
        "group.create",
        "group.members",
        "folder.create",
        "folder.right",
    ]
    assert all(e.actor == "ada" for e in ws.audit_log())
    assert "long enough pw" not in json.dumps([e.detail for e in ws.audit_log()])


@pytest.mark.parametrize("who", ["dev", "op"])
def test_non_admins_are_refused_every_users_action(ws, ctx_for, who):
    # The page is not even built for them; an action reached anyway must refuse.
    view = UsersView(ctx_for(who))
    view.new_name.value, view.new_password.value = "sneaky", "long enough pw"
    view.create_user()
    view.user_pick.value, view.role_pick.value = "op" if who == "dev" else "dev", "admin"
    view.change_role()
    view.group_name.value = "g1"
    view.create_group()
    view.folder_name.value = "f1"
    view.create_folder()
    for out in (view.user_out, view.group_out, view.folder_out):
        assert "may not admin on the workspace" in out.object
    assert ws.get_user("sneaky") is None and not ws.list_groups() and not ws.folders()
    assert ws.get_user("op").role == "operator" and ws.get_user("dev").role == "developer"
    assert not ws.audit_log()


# ------------------------------------------------------------------------ audit


def test_audit_log_pages_from_the_store_and_filters(ws, ctx_for):
    for i in range(5):
        ws.audit(["ada", "dev"][i % 2], "variable.set", f"u/x/v{i}")
    ws.audit("dev", "secret.reveal", "u/dev/k")
    view = AuditView(ctx_for("ada"), page_size=2)
    assert view.newer.disabled and not view.older.disabled
    assert "u/dev/k" in view.table.object and "u/x/v4" in view.table.object
    view.turn(1)
    assert "u/x/v3" in view.table.object and "u/x/v2" in view.table.object
    view.turn(1)
    assert "u/x/v1" in view.table.object and "u/x/v0" in view.table.object
    assert view.older.disabled and not view.newer.disabled
    assert "5–6" in view.where.object
    view.actor.value = "dev"
    assert view.offset == 0
    assert [e.target for e in view.refresh()] == ["u/dev/k", "u/x/v3"]
    view.action.value = "secret.reveal"
    assert [e.target for e in view.refresh()] == ["u/dev/k"]


def test_audit_log_refuses_non_admins(ws, ctx_for):
    ws.audit("ada", "user.create", "x")
    view = AuditView(ctx_for("dev"))
    assert view.refresh() == []
    assert "may not admin" in view.table.object and "user.create" not in view.table.object


# ------------------------------------------------------------------------ home


def test_home_search_matches_every_word_in_path_or_summary():
    item = SimpleNamespace(path="f/support/refund", summary="Refund an Order")
    assert matches(item, "")
    assert matches(item, "REFUND order")
    assert matches(item, "support")
    assert not matches(item, "refund invoice")
