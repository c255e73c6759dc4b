from __future__ import annotations

import hashlib

import pytest

from studio.workspace import Invalid, NotFound

from .conftest import reopen

SCRIPT = "def main(name: str = 'world'):\n    return f'hello {name}'\n"
FLOW = 'summary: demo\nsteps:\n  - id: a\n    python: "def main(): return 1"\n'


def test_deploy_makes_version_one_with_the_documented_hash(ws):
    version = ws.deploy("script", "u/ana/hello", SCRIPT, author="ana", summary="first")
    assert (version.version, version.kind, version.language, version.author) == (
        1,
        "script",
        "python",
        "ana",
    )
    assert version.hash == hashlib.sha256(("python\0" + SCRIPT).encode()).hexdigest()
    assert ws.get("script", "u/ana/hello") == version


def test_identical_content_twice_is_one_version_changed_content_is_the_next(ws):
    first = ws.deploy("script", "u/ana/hello", SCRIPT, author="ana")
    again = ws.deploy("script", "u/ana/hello", SCRIPT, author="bob", summary="no change")
    assert again == first
    changed = ws.deploy("script", "u/ana/hello", SCRIPT + "# v2\n", author="bob")
    assert changed.version == 2 and changed.hash != first.hash
    reverted = ws.deploy("script", "u/ana/hello", SCRIPT, author="ana")
    assert reverted.version == 3 and reverted.hash == first.hash  # compared with the latest only
    assert [v.version for v in ws.versions("script", "u/ana/hello")] == [1, 2, 3]
    assert ws.get("script", "u/ana/hello", 2).content == SCRIPT + "# v2\n"


def test_the_language_is_part_of_the_identity(ws):
    one = ws.deploy("script", "f/ops/q", "select 1", author="ana", language="sql")
    assert one.language == "sql"
    bash = ws.deploy("script", "f/ops/q", "echo hi\n", author="ana", language="bash")
    assert bash.version == 2


def test_versions_survive_a_restart(data, ws):
    ws.deploy("flow", "f/ops/nightly", FLOW, author="ana")
    ws.close()
    with reopen(data) as again:
        assert again.get("flow", "f/ops/nightly").content == FLOW


def test_a_script_without_main_is_invalid_with_the_scripts_message(ws):
    with pytest.raises(Invalid, match="main") as caught:
        ws.deploy("script", "u/ana/broken", "def helper():\n    return 1\n", author="ana")
    assert "u/ana/broken" in str(caught.value)
    with pytest.raises(Invalid, match="line"):
        ws.deploy("script", "u/ana/broken", "def main(:\n", author="ana")
    with pytest.raises(NotFound):
        ws.get("script", "u/ana/broken")


def test_a_bad_flow_is_invalid_with_the_loaders_message(ws):
    bad = 'steps:\n  - id: a\n    pyton: "def main(): return 1"\n'
    with pytest.raises(Invalid) as caught:
        ws.deploy("flow", "f/ops/bad", bad, author="ana")
    message = str(caught.value)
    assert message.startswith("f/ops/bad:")
    assert "pyton" in message


def test_sql_scripts_need_only_be_non_empty(ws):
    assert ws.deploy(
        "script", "f/ops/any", "whatever; this is not checked", author="a", language="sql"
    )
    with pytest.raises(Invalid, match="content is empty"):
        ws.deploy("script", "f/ops/empty", "  \n", author="a", language="sql")


def test_bad_kind_language_and_path_name_the_value(ws):
    with pytest.raises(
        Invalid, match="kind 'app' is not an item kind; expected one of script, flow"
    ):
        ws.deploy("app", "u/a/x", SCRIPT, author="a")  # type: ignore[arg-type]
    with pytest.raises(
        Invalid, match="language 'ruby' is not a script language; expected one of python, bash, sql"
    ):
        ws.deploy("script", "u/a/x", SCRIPT, author="a", language="ruby")
    with pytest.raises(Invalid, match="path 'x/y' is not a workspace path"):
        ws.deploy("script", "x/y", SCRIPT, author="a")


def test_missing_items_and_versions_are_named(ws):
    with pytest.raises(NotFound, match="script 'u/a/none' does not exist"):
        ws.get("script", "u/a/none")
    ws.deploy("script", "u/a/x", SCRIPT, author="a")
    with pytest.raises(NotFound, match="has no version 7; expected 1 to 1"):
        ws.get("script", "u/a/x", 7)


def test_diff_between_versions(ws):
    ws.deploy("script", "u/a/x", SCRIPT, author="a")
    ws.deploy("script", "u/a/x", SCRIPT.replace("hello", "bonjour"), author="a")
    diff = ws.diff("script", "u/a/x", 1, 2)
    assert diff.splitlines()[:2] == ["--- u/a/x v1", "+++ u/a/x v2"]
    assert "-    return f'hello {name}'" in diff
    assert "+    return f'bonjour {name}'" in diff
    assert ws.diff("script", "u/a/x", 2, 2) == ""


def test_one_shared_draft_per_item_last_save_wins(ws):
    assert ws.get_draft("script", "u/a/x") is None
    ws.save_draft("script", "u/a/x", "def main(:", author="ana")  # drafts may be broken
    ws.save_draft("script", "u/a/x", "def main(): pass", author="bob")
    draft = ws.get_draft("script", "u/a/x")
    assert (draft.content, draft.author) == ("def main(): pass", "bob")
    assert ws.get_draft("flow", "u/a/x") is None  # a flow of the same path is another item


def test_deploying_the_drafts_content_drops_the_draft_other_drafts_stay(ws):
    ws.save_draft("script", "u/a/x", SCRIPT, author="ana")
    ws.deploy("script", "u/a/x", SCRIPT, author="ana")
    assert ws.get_draft("script", "u/a/x") is None
    ws.save_draft("script", "u/a/x", SCRIPT + "# wip\n", author="ana")
    ws.deploy("script", "u/a/x", SCRIPT + "# other\n", author="bob")
    assert ws.get_draft("script", "u/a/x").content == SCRIPT + "# wip\n"


def test_list_items_gives_the_latest_of_each_under_a_prefix(ws):
    ws.deploy("script", "f/ops/a", SCRIPT, author="a")
    ws.deploy("script", "f/ops/a", SCRIPT + "#2\n", author="a")
    ws.deploy("script", "f/ops_x/b", SCRIPT, author="a")  # '_' is not a wildcard
    ws.deploy("flow", "f/ops/c", FLOW, author="a")
    assert [(v.kind, v.path, v.version) for v in ws.list_items()] == [
        ("flow", "f/ops/c", 1),
        ("script", "f/ops/a", 2),
        ("script", "f/ops_x/b", 1),
    ]
    assert [v.path for v in ws.list_items("script", "f/ops/")] == ["f/ops/a"]
    assert [v.path for v in ws.list_items("flow")] == ["f/ops/c"]


def test_delete_removes_versions_draft_and_signing(ws):
    ws.deploy("script", "u/a/x", SCRIPT, author="a")
    ws.save_draft("script", "u/a/x", "wip", author="a")
    ws.set_webhook_signing("script", "u/a/x", secret="s" * 32)
    ws.delete("script", "u/a/x")
    with pytest.raises(NotFound):
        ws.get("script", "u/a/x")
    assert ws.get_draft("script", "u/a/x") is None
    assert ws.webhook_signing("script", "u/a/x") is None
    with pytest.raises(NotFound, match="script 'u/a/x' does not exist"):
        ws.delete("script", "u/a/x")
