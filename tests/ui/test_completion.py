"""Completions from a live kernel in the script editor, in real Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.xdist_group("ui")


def _replace_code(page, code: str) -> None:
    editor = page.locator(".ace_text-input")
    editor.focus()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)


def test_ctrl_space_offers_module_members_from_the_kernel(admin_page):
    page = admin_page
    page.goto("/script")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/complete" in r.url else None)
    _replace_code(page, "import json\njson.du")
    page.keyboard.press("Escape")  # a popup opened while typing closes; Ctrl-Space reopens it
    page.keyboard.press("Control+Space")
    popup = page.locator(".ace_autocomplete")
    expect(popup).to_be_visible()
    expect(popup).to_contain_text("dumps")
    assert requests, "the completion did not come from /api/complete"
    # Choosing it replaces the partial name with the kernel's match.
    page.keyboard.press("ArrowDown")  # 'dump' is first, then 'dumps'
    page.keyboard.press("Enter")
    code = page.locator(".ace_editor:not(.ace_autocomplete) .ace_text-layer").first
    expect(code).to_contain_text("json.dumps")
    expect(code).not_to_contain_text("json.dudumps")
    assert not [e for e in page.console_errors if "Content Security Policy" in e]


def test_names_defined_in_the_script_are_offered_while_typing(admin_page):
    page = admin_page
    page.goto("/script")
    _replace_code(page, "def greet_someone(name):\n    return name\n\n")
    page.keyboard.type("greet_s")  # typed, not pasted: live completion opens the popup
    popup = page.locator(".ace_autocomplete")
    expect(popup).to_contain_text("greet_someone")
