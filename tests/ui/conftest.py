"""UI tests: a real `gristmill serve` subprocess and Debian's Chromium through Playwright.

One server per test session (per xdist worker; the UI tests share the "ui" group so they
share one), with an admin whose password and API token come from the environment, as in
automation. Each test gets a fresh browser context (its own cookies).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serving import serving

CHROMIUM = Path("/usr/bin/chromium")
ADMIN = "admin"


@dataclass(frozen=True)
class Studio:
    base: str
    data: Path
    admin_password: str
    admin_token: str
    proc: subprocess.Popen[str]

    def api(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        """One API call; returns (status, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    data = tmp_path_factory.mktemp("studio") / "data"
    password = secrets.token_urlsafe(12)
    token = "gm_" + secrets.token_urlsafe(32)
    env = {"GRISTMILL_ADMIN_PASSWORD": password, "GRISTMILL_ADMIN_TOKEN": token}
    with (
        (data.parent / "server.log").open("w") as log,
        serving(data, env=env, pool_size=2, warm=True, log=log) as server,
    ):
        yield Studio(server.base, data, password, token, server.proc)


@pytest.fixture(scope="session")
def browser(studio: Studio) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any, studio: Studio) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=studio.base)
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A page that records console errors (CSP violations show up there)."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page


def sign_in(page: Any, name: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto("/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible(timeout=30_000)


@pytest.fixture
def admin_page(page: Any, studio: Studio) -> Any:
    sign_in(page, ADMIN, studio.admin_password)
    return page
