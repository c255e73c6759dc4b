"""Git sync: the file mapping on its own, then pull and push against a real API server."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from studio.sync import (
    FlowItem,
    FolderItem,
    ResourceItem,
    ScheduleItem,
    ScriptItem,
    Snapshot,
    SyncError,
    VariableItem,
    content_hash,
    files_to_workspace,
    plan_push,
    sync_main,
    workspace_to_files,
    write_files,
)
from tests.portal import Portal
from tests.studio.api.conftest import ADMIN_TOKEN, Api, start_api, stop_api

HELLO = 'def main(name: str = "world"):\n    return f"hello {name}"\n'
FLOW = textwrap.dedent(
    """\
    summary: Nightly import
    steps:
      - id: a
        python: "def main(): return 1"
    """
)


def sample() -> Snapshot:
    return Snapshot(
        scripts={
            "f/ops/hello": ScriptItem("f/ops/hello", HELLO, "python", "Say hello"),
            "u/alice/count": ScriptItem("u/alice/count", "select 1 as n", "sql"),
        },
        flows={"f/ops/nightly": FlowItem("f/ops/nightly", FLOW)},
        variables={
            "f/ops/region": VariableItem("f/ops/region", "eu-west\nsecond line\n", False, "where"),
            "f/ops/api_key": VariableItem("f/ops/api_key", None, True, "the partner key"),
        },
        resources={
            "f/ops/db": ResourceItem("f/ops/db", "postgresql", {"port": 5432, "host": "db"}, "main")
        },
        schedules={
            "f/ops/nightly": ScheduleItem(
                "f/ops/nightly",
                "0 30 2 * * *",
                "f/ops/nightly",
                "flow",
                "Europe/Paris",
                {"n": 3},
                no_overlap=True,
                on_failure="f/ops/hello",
            )
        },
        folders={"ops": FolderItem("ops", {"u/alice": "owner", "g/ops": "writer"})},
    )


# ---------------------------------------------------------------------------- files


def test_workspace_to_files_whole_layout():
    files = workspace_to_files(sample())
    assert files == {
        "f/ops/hello.py": HELLO,
        "f/ops/hello.script.yaml": (
            f"summary: Say hello\nlanguage: python\nhash: {content_hash('python', HELLO)}\n"
        ),
        "u/alice/count.sql": "select 1 as n",
        "u/alice/count.script.yaml": (
            f"summary: ''\nlanguage: sql\nhash: {content_hash('sql', 'select 1 as n')}\n"
        ),
        "f/ops/nightly.flow.yaml": FLOW,
        "f/ops/region.variable.yaml": (
            "description: where\nsecret: false\nvalue: |\n  eu-west\n  second line\n"
        ),
        "f/ops/api_key.variable.yaml": "description: the partner key\nsecret: true\n",
        "f/ops/db.resource.yaml": (
            "description: main\nresource_type: postgresql\nvalue:\n  host: db\n  port: 5432\n"
        ),
        "f/ops/nightly.schedule.yaml": textwrap.dedent(
            """\
            cron: 0 30 2 * * *
            target_path: f/ops/nightly
            target_kind: flow
            timezone: Europe/Paris
            args:
              n: 3
            enabled: true
            no_overlap: true
            catch_up: latest
            on_failure: f/ops/hello
            on_recovery: null
            """
        ),
        "f/ops/folder.meta.yaml": "rights:\n  g/ops: writer\n  u/alice: owner\n",
    }


def test_hash_is_the_servers():
    from studio.workspace.store_items import content_hash as server_hash

    assert content_hash("python", HELLO) == server_hash("python", HELLO)


def test_round_trip_through_a_directory(tmp_path):
    snapshot = sample()
    write_files(tmp_path, workspace_to_files(snapshot))
    (tmp_path / "README.md").write_text("notes")
    back, ignored = files_to_workspace(tmp_path)
    assert back == snapshot
    assert ignored == ["README.md"]


def test_secret_value_never_written_even_if_given():
    leaked = Snapshot(variables={"u/a/k": VariableItem("u/a/k", "hunter2", True)})
    assert "hunter2" not in "".join(workspace_to_files(leaked).values())


def test_secret_value_in_a_file_is_refused(tmp_path):
    (tmp_path / "u/alice").mkdir(parents=True)
    (tmp_path / "u/alice/key.variable.yaml").write_text("secret: true\nvalue: hunter2\n")
    with pytest.raises(SyncError, match=r"u/alice/key.variable.yaml: a secret's value must not be"):
        files_to_workspace(tmp_path)


def test_code_file_without_meta_is_a_new_script(tmp_path):
    (tmp_path / "u/alice").mkdir(parents=True)
    (tmp_path / "u/alice/new.sh").write_text("echo hi\r\n")
    snapshot, _ = files_to_workspace(tmp_path)
    assert snapshot.scripts == {"u/alice/new": ScriptItem("u/alice/new", "echo hi\r\n", "bash")}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"u/alice/x.script.yaml": "language: python\n"}, "no code file u/alice/x(.py/.sh/.sql)"),
        (
            {"u/alice/x.py": HELLO, "u/alice/x.script.yaml": "language: sql\n"},
            "language 'sql' does not match the file u/alice/x.py",
        ),
        ({"u/alice/x.py": HELLO, "u/alice/x.sh": "echo"}, "the script u/alice/x also has"),
        ({"u/Alice/x.py": HELLO}, "u/Alice/x.py: path 'u/Alice/x' is not a workspace path"),
        (
            {"u/alice/db.resource.yaml": "resource_type: pg\nvalue: 3\n"},
            "key 'value' must be a dict",
        ),
        ({"u/alice/s.schedule.yaml": "cron: '* * * * *'\ntarget: x\n"}, "unknown key 'target'"),
        ({"u/alice/v.variable.yaml": "- a\n"}, "expected a mapping of keys, got list"),
    ],
)
def test_bad_files_are_named(tmp_path, files, message):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    with pytest.raises(SyncError) as caught:
        files_to_workspace(tmp_path)
    assert message in str(caught.value)


def test_write_files_touches_only_changes_and_deletes_only_when_asked(tmp_path):
    files = workspace_to_files(sample())
    assert len(write_files(tmp_path, files)) == len(files)
    assert write_files(tmp_path, files) == []
    (tmp_path / "u/alice/extra.py").write_text(HELLO)
    del files["u/alice/count.sql"], files["u/alice/count.script.yaml"]
    assert write_files(tmp_path, files) == []
    assert write_files(tmp_path, files, delete=True, dry_run=True) == [
        "- u/alice/count.script.yaml",
        "- u/alice/count.sql",
        "- u/alice/extra.py",
    ]
    assert (tmp_path / "u/alice/extra.py").exists()
    write_files(tmp_path, files, delete=True)
    assert not (tmp_path / "u/alice/extra.py").exists()
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------------------- push plan


def test_plan_of_identical_sides_is_empty():
    assert plan_push(sample(), sample()) == []


def test_plan_sends_only_what_changed_and_deletes_only_when_asked():
    local = sample()
    local.scripts["f/ops/hello"] = ScriptItem("f/ops/hello", HELLO + "# v2\n", "python")
    local.scripts["u/alice/new"] = ScriptItem("u/alice/new", "echo", "bash")
    del local.resources["f/ops/db"]
    lines = [change.line() for change in plan_push(local, sample())]
    assert lines == ["~ script f/ops/hello", "+ script u/alice/new"]
    lines = [change.line() for change in plan_push(local, sample(), delete=True)]
    assert lines[-1] == "- resource f/ops/db"


def test_plan_never_sends_a_secret():
    remote = sample()
    local = sample()
    local.variables["u/a/new_key"] = VariableItem("u/a/new_key", None, True)
    local.variables["f/ops/api_key"] = VariableItem("f/ops/api_key", None, True, "renamed")
    plan = plan_push(local, remote)
    assert [(c.symbol, c.path, c.method) for c in plan] == [
        ("!", "f/ops/api_key", ""),
        ("!", "u/a/new_key", ""),
    ]


def test_plan_folder_rights():
    local, remote = sample(), sample()
    local.folders["ops"] = FolderItem("ops", {"u/alice": "owner", "u/bob": "viewer"})
    local.folders["new"] = FolderItem("new", {"g/ops": "writer"})
    lines = [c.line() for c in plan_push(local, remote)]
    assert lines == [
        "+ folder new",
        "~ folder new  (g/ops: writer)",
        "~ folder ops  (u/bob: viewer)",
    ]
    lines = [c.line() for c in plan_push(local, remote, delete=True)]
    assert "~ folder ops  (g/ops: None)" in lines


# ---------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def api(portal: Portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    harness, server = start_api(portal, tmp_path_factory.mktemp("sync") / "data")
    ws = harness.workspace
    try:
        ws.create_folder("team", owner="admin")
        ws.deploy("script", "f/team/hello", HELLO, author="admin", summary="Say hello")
        ws.deploy("flow", "f/team/nightly", FLOW, author="admin")
        ws.set_variable("f/team/plain", "visible value", description="plain")
        ws.set_variable("f/team/password", "s3cr3t-hunter2", secret=True)
        yield harness
    finally:
        stop_api(harness, server)


def sync(api: Api, *argv: str) -> int:
    return sync_main([*argv, "--url", api.base, "--token", ADMIN_TOKEN])


def test_pull_then_push_round_trip(api, tmp_path, capsys):
    directory = tmp_path / "ws"
    assert sync(api, "pull", str(directory)) == 0
    out = capsys.readouterr().out
    assert "+ f/team/hello.py" in out
    assert (directory / "f/team/hello.py").read_text() == HELLO
    assert (directory / "f/team/nightly.flow.yaml").read_text() == FLOW
    assert (
        directory / "f/team/password.variable.yaml"
    ).read_text() == "description: ''\nsecret: true\n"
    everything = "".join(p.read_text() for p in directory.rglob("*") if p.is_file())
    assert "s3cr3t-hunter2" not in everything

    # Nothing changed on either side: neither direction does anything.
    assert sync(api, "pull", str(directory)) == 0
    assert sync(api, "push", str(directory)) == 0
    assert capsys.readouterr().out == ""

    (directory / "f/team/hello.py").write_text(HELLO + "# edited in git\n")
    (directory / "f/team/plain.variable.yaml").write_text(
        "description: plain\nsecret: false\nvalue: new\n"
    )
    (directory / "f/team/extra.sql").write_text("select 42 as answer")
    assert sync(api, "push", str(directory)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "+ script f/team/extra",
        "~ script f/team/hello",
        "~ variable f/team/plain",
    ]
    assert api.workspace.get("script", "f/team/hello").content.endswith("# edited in git\n")
    assert api.workspace.get("script", "f/team/extra").language == "sql"
    assert api.workspace.get_variable("f/team/plain").value == "new"
    assert api.workspace.get_variable("f/team/password", reveal=True).value == "s3cr3t-hunter2"

    assert sync(api, "push", str(directory)) == 0
    assert capsys.readouterr().out == ""


def test_push_refuses_a_secret_value_before_any_upload(api, tmp_path, capsys):
    directory = tmp_path / "ws"
    assert sync(api, "pull", str(directory)) == 0
    (directory / "f/team/hello.py").write_text(HELLO + "# not uploaded\n")
    (directory / "f/team/password.variable.yaml").write_text("secret: true\nvalue: leaked\n")
    assert sync(api, "push", str(directory)) == 2
    err = capsys.readouterr().err
    assert "f/team/password.variable.yaml: a secret's value must not be in the files" in err
    assert "not uploaded" not in api.workspace.get("script", "f/team/hello").content


def test_schedule_and_delete_through_files(api, tmp_path, capsys):
    ws = api.workspace
    ws.deploy("script", "f/team/doomed", HELLO, author="admin")
    directory = tmp_path / "ws"
    assert sync(api, "pull", str(directory)) == 0
    (directory / "f/team/hello.schedule.yaml").write_text(
        "cron: 0 30 2 * * *\ntimezone: Europe/Paris\ntarget_path: f/team/hello\nargs: {name: night}\n"
    )
    (directory / "f/team/doomed.py").unlink()
    (directory / "f/team/doomed.script.yaml").unlink()
    assert sync(api, "push", str(directory)) == 0
    assert "+ schedule f/team/hello" in capsys.readouterr().out
    assert ws.get_schedule("f/team/hello").args == {"name": "night"}
    assert ws.get("script", "f/team/doomed")  # not deleted without --delete

    assert sync(api, "push", str(directory), "--delete", "--dry-run") == 0
    assert "- script f/team/doomed" in capsys.readouterr().out
    assert ws.get("script", "f/team/doomed")
    assert sync(api, "push", str(directory), "--delete") == 0
    assert [i.path for i in ws.list_items("script", "f/team/doomed")] == []


def test_failed_pull_leaves_old_files(api, tmp_path, capsys):
    directory = tmp_path / "ws"
    assert sync(api, "pull", str(directory)) == 0
    (directory / "f/team/hello.py").write_text("local edit")
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    code = sync_main(["pull", str(directory), "--url", api.base, "--token", "gm_wrong_token"])
    assert code == 1
    assert "401" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before


def test_no_token_is_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GRISTMILL_TOKEN", raising=False)
    assert sync_main(["pull", str(tmp_path)]) == 2
    assert "pass --token or set GRISTMILL_TOKEN" in capsys.readouterr().err


def test_unreachable_server_is_a_failure(tmp_path, capsys):
    code = sync_main(["pull", str(tmp_path), "--url", "http://127.0.0.1:9", "--token", "x"])
    assert code == 1
    assert "cannot reach the server at http://127.0.0.1:9" in capsys.readouterr().err
