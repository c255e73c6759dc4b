"""The studio's remaining pages in real Chromium: webhooks and tokens, variables and
secrets, resources, users / groups / folders, the audit log, and what non-admins get."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import ADMIN, Studio, sign_in

pytestmark = pytest.mark.xdist_group("ui")


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def _audit(studio: Studio, action: str) -> list[dict]:
    status, body = studio.api("GET", f"/api/audit?action={action}&limit=1000")
    assert status == 200, body
    return body["items"]


def test_create_a_variable_and_a_secret_see_it_masked_then_reveal_it(admin_page, studio):
    page = admin_page
    plain = f"u/{ADMIN}/{_unique('region')}"
    secret = f"u/{ADMIN}/{_unique('api_key')}"
    value = "sk-" + secrets.token_hex(8)
    page.goto("/variables")
    page.get_by_label("Variable path").fill(plain)
    page.get_by_label("Value", exact=True).fill("eu-west-1")
    page.get_by_role("button", name="Save variable").click()
    expect(page.get_by_test_id("variable-saved")).to_contain_text(f"Saved variable {plain}")
    expect(page.locator(f"[data-variable='{plain}']")).to_contain_text("eu-west-1")

    page.get_by_label("Variable path").fill(secret)
    page.get_by_role("button", name="Secret: encrypted").click()
    page.get_by_label("Secret value").fill(value)
    page.get_by_role("button", name="Save variable").click()
    expect(page.get_by_test_id("variable-saved")).to_contain_text(f"Saved secret {secret}")
    row = page.locator(f"[data-variable='{secret}']")
    expect(row).to_contain_text("******")
    expect(row).not_to_contain_text(value)
    assert value not in page.content()

    page.get_by_label("Variable", exact=True).select_option(secret)
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.get_by_test_id("revealed")).to_have_text(value)
    assert any(e["target"] == secret for e in _audit(studio, "secret.reveal"))


def test_create_a_token_see_it_once_and_require_hmac_on_an_item(admin_page, studio):
    page = admin_page
    path = f"u/{ADMIN}/{_unique('hook')}"
    status, body = studio.api(
        "PUT", f"/api/scripts/{path}", {"content": "def main(n: int = 4):\n    return n * 2\n"}
    )
    assert status in (200, 201), body
    page.goto("/webhooks")
    block = page.locator(f"[data-webhook='{path}']")
    expect(block).to_contain_text(f"{studio.base}/api/run_wait/script/{path}")
    expect(block.get_by_test_id("curl")).to_contain_text(
        f"""-d '{{"n": 4}}' {studio.base}/api/run_wait/script/{path}"""
    )

    page.get_by_label("Script or flow").select_option(label=f"script {path}")
    page.get_by_role("button", name="Require signature").click()
    expect(page.get_by_test_id("signed-curl")).to_contain_text(
        "X-Gristmill-Signature: t=$TS,v1=$SIG"
    )
    expect(page.get_by_test_id("signing-secret")).to_be_visible()
    expect(block).to_contain_text("HMAC signature required")
    status, body = studio.api("POST", f"/api/run_wait/script/{path}", {"n": 1})
    assert status == 401 and "signature" in body["error"]["message"], body

    label = _unique("partner")
    page.get_by_label("Token label").fill(label)
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("token-created")).to_be_visible()
    shown = page.get_by_label("New token (shown once)")
    expect(shown).to_have_value(re.compile(r"^gm_"))
    token = shown.input_value()
    assert token.startswith("gm_")
    expect(page.get_by_role("button", name="Copy token")).to_be_visible()
    status, body = studio.api("GET", "/api/auth/me", token=token)
    assert status == 200 and body["name"] == ADMIN, body
    page.reload()
    expect(page.locator("table.gm-tokens")).to_contain_text(label)
    assert token not in page.content()


def test_define_a_resource_type_and_a_resource_with_errors_inline(admin_page, studio):
    page = admin_page
    kind = _unique("pg")
    path = f"u/{ADMIN}/{_unique('warehouse')}"
    page.goto("/resources")
    page.get_by_label("Type name").fill(kind)
    page.get_by_role("button", name="Save type").click()  # the example schema: host, port, user
    expect(page.get_by_test_id("type-saved")).to_contain_text(kind)
    page.get_by_label("Resource path").fill(path)
    page.get_by_role("button", name="Save resource").click()
    expect(page.get_by_role("alert").filter(has_text="host")).to_be_visible()
    page.get_by_label("host").fill("db.internal")
    page.get_by_label("user").fill("reporting")
    page.get_by_role("button", name="Save resource").click()
    expect(page.get_by_test_id("resource-saved")).to_contain_text(path)
    status, body = studio.api("GET", f"/api/resources/{path}")
    assert status == 200, body
    assert body["value"] == {"host": "db.internal", "port": 5432, "user": "reporting"}


def test_create_a_user_and_a_folder_right_and_see_them_in_the_audit_log(admin_page, studio):
    page = admin_page
    name = _unique("agent")
    folder = _unique("support")
    page.goto("/users")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(secrets.token_urlsafe(12))
    page.get_by_label("Role", exact=True).select_option("operator")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_test_id("user-created")).to_contain_text(f"Created user {name} (operator)")
    expect(page.locator(f"[data-user='{name}']")).to_contain_text("operator")

    page.get_by_label("Folder name").fill(folder)
    page.get_by_role("button", name="Create folder").click()
    expect(page.get_by_test_id("folder-created")).to_contain_text(f"f/{folder}")
    page.get_by_label("Folder", exact=True).select_option(folder)
    page.get_by_label("Principal").select_option(f"u/{name}")
    page.get_by_label("Right", exact=True).select_option("writer")
    page.get_by_role("button", name="Set right").click()
    expect(page.get_by_test_id("right-set")).to_contain_text(f"u/{name} is writer")
    expect(page.locator(f"[data-folder='{folder}']")).to_contain_text(f"u/{name}: writer")
    status, body = studio.api("GET", f"/api/folders/{folder}")
    assert status == 200 and body["rights"][f"u/{name}"] == "writer", body

    page.goto("/audit")
    page.get_by_label("Action").fill("folder.right")
    page.get_by_label("Action").press("Enter")
    table = page.locator("table.gm-audit")
    expect(table.locator("tr[data-action='folder.right']").first).to_contain_text(folder)
    page.get_by_label("Action").fill("user.create")
    page.get_by_label("Action").press("Enter")
    expect(table.locator("tr[data-action='user.create']").first).to_contain_text(name)


@pytest.mark.parametrize("role", ["developer", "operator"])
def test_non_admins_get_no_admin_pages_and_the_api_refuses_them(browser, studio, role):
    name = _unique(role[:3])
    password = secrets.token_urlsafe(12)
    status, body = studio.api(
        "POST", "/api/users", {"name": name, "password": password, "role": role}
    )
    assert status == 201, body
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=studio.base)
    try:
        page = ctx.new_page()
        sign_in(page, name, password)
        nav = page.get_by_role("navigation", name="Main")
        expect(nav).to_contain_text("Webhooks")
        expect(nav).not_to_contain_text("Audit log")
        page.goto("/users")
        expect(page.get_by_text("managed by admins only")).to_be_visible()
        expect(page.get_by_role("button", name="Create user")).to_have_count(0)
        page.goto("/audit")
        expect(page.get_by_text("The audit log is for admins only.")).to_be_visible()
        expect(page.locator("table.gm-audit")).to_have_count(0)
    finally:
        ctx.close()
    status, body = studio.api("POST", "/api/tokens", {"label": "probe", "owner": name})
    assert status == 201, body
    token = body["token"]
    for method, path, payload in (
        ("POST", "/api/users", {"name": "x" + name, "password": "long enough pw"}),
        ("GET", "/api/audit", None),
    ):
        status, body = studio.api(method, path, payload, token=token)
        assert status == 403, (method, path, body)


def test_the_admin_pages_fit_a_phone(browser, studio):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, base_url=studio.base)
    try:
        page = ctx.new_page()
        sign_in(page, ADMIN, studio.admin_password)
        for url, ready in (
            ("/webhooks", "Your API tokens"),
            ("/variables", "Add or change a variable"),
            ("/resources", "Resource types"),
            ("/users", "Folders and rights"),
            ("/audit", "Older"),
        ):
            page.goto(url)
            expect(page.get_by_text(ready).first).to_be_visible()
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], (url, widths)
    finally:
        ctx.close()


def test_home_search_filters_on_the_server_as_you_type(admin_page, studio):
    page = admin_page
    word = secrets.token_hex(4)
    mine = f"u/{ADMIN}/{_unique('find')}"
    other = f"u/{ADMIN}/{_unique('other')}"
    for path, summary in ((mine, f"Reconcile {word} ledger"), (other, "Something else")):
        status, body = studio.api(
            "PUT",
            f"/api/scripts/{path}",
            {"content": "def main():\n    return 1\n", "summary": summary},
        )
        assert status in (200, 201), body
    page.goto("/")
    search = page.get_by_placeholder("Search by path or summary")
    expect(page.locator(f"td[data-path='{other}']")).to_be_visible()
    search.press_sequentially(f"{word} LEDGER", delay=20)
    expect(page.locator(f"td[data-path='{other}']")).to_have_count(0)
    expect(page.locator(f"td[data-path='{mine}']")).to_be_visible()
    search.fill("no-such-thing-" + word)
    search.press("End")
    expect(page.get_by_test_id("no-match")).to_be_visible()
