"""The pages' run form offers, for a resource argument, the resources of its type the
signed-in user may read."""

from __future__ import annotations

from kernels.scripts import Script
from studio.pages.parts import run_form

SOURCE = "postgresql = dict\n\ndef main(db: postgresql):\n    return db\n"


def test_resource_picker_lists_readable_resources_of_the_type(ws, ctx_for) -> None:
    ws.create_user("bob", password="password-bob", role="developer")  # dev comes with ws
    ws.create_folder("team", owner="dev")
    ws.set_resource_type("postgresql", {"type": "object"})
    ws.set_resource_type("smtp", {"type": "object"})
    ws.set_resource("f/team/warehouse", "postgresql", {"host": "a"})
    ws.set_resource("f/team/mail", "smtp", {"host": "b"})
    ws.set_resource("u/bob/own", "postgresql", {"host": "c"})
    form = run_form(Script.inline(SOURCE).schema, ctx_for("dev"))
    picker = form.field("db").widget
    assert [v for v in picker.options.values() if v] == ["f/team/warehouse"]
    picker.value = "f/team/warehouse"
    assert form.value == {"db": "f/team/warehouse"}
