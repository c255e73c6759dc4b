"""Pure parts of the API: webhook signatures and bodies, schedule fire times, the
OpenAPI document's shape, first-start bootstrap of a workspace."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from studio.api.config import next_fires
from studio.api.openapi import build_openapi
from studio.api.webhooks import SignatureError, sign, verify, webhook_args
from studio.bootstrap import EXAMPLES_DIR, bootstrap
from studio.settings import Settings
from studio.vault import Vault
from studio.workspace.store import Workspace

SECRET = "a-partner-secret-value"
BODY = b'{"order": 7}'


def test_a_fresh_signature_verifies_and_gives_a_stable_replay_key() -> None:
    header = sign(SECRET, BODY, 1_000_000)
    key = verify(header, BODY, SECRET, now=1_000_010, tolerance_s=300)
    assert key == verify(header, BODY, SECRET, now=1_000_020, tolerance_s=300)
    assert len(key) == 64


@pytest.mark.parametrize(
    ("header", "now", "message"),
    [
        (None, 1_000_000, "requires a signature"),
        ("", 1_000_000, "requires a signature"),
        ("v1=abc", 1_000_000, "must look like"),
        ("t=1000000", 1_000_000, "must look like"),
        ("t=soon,v1=abc", 1_000_000, "whole number"),
        (sign(SECRET, BODY, 1_000_000), 1_000_301, "300 s away"),
        (sign(SECRET, BODY, 1_000_000), 999_699, "300 s away"),
        (sign("another-secret", BODY, 1_000_000), 1_000_000, "does not match"),
        (sign(SECRET, b'{"order": 8}', 1_000_000), 1_000_000, "does not match"),
        (
            sign(SECRET, BODY, 1_000_000).replace("t=1000000", "t=1000001"),
            1_000_000,
            "does not match",
        ),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(
    header: str | None, now: int, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(header, BODY, SECRET, now=now, tolerance_s=300)


def test_any_of_several_v1_signatures_may_match_during_secret_rotation() -> None:
    good = sign(SECRET, BODY, 5).split("v1=")[1]
    header = f"t=5,v1={'0' * 64},v1={good}"
    assert verify(header, BODY, SECRET, now=5, tolerance_s=1)


@pytest.mark.parametrize(
    ("raw", "args"),
    [
        (b"", {}),
        (b"  \n", {}),
        (b'{"a": 1}', {"a": 1}),
        (b"[1, 2]", {"body": [1, 2]}),
        (b"null", {"body": None}),
        (b"3.5", {"body": 3.5}),
        (b"a=1&b=2", {"body": "a=1&b=2"}),
    ],
)
def test_webhook_bodies(raw: bytes, args: dict) -> None:
    assert webhook_args(raw) == args


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        webhook_args(b"\xff\xfe")


def test_next_fires_seconds_first_and_time_zones() -> None:
    start = datetime(2026, 3, 28, 23, 59, 50, tzinfo=UTC)
    assert next_fires("*/20 * * * * *", "UTC", 3, start) == [
        "2026-03-29T00:00:00+00:00",
        "2026-03-29T00:00:20+00:00",
        "2026-03-29T00:00:40+00:00",
    ]
    # 02:30 Paris does not exist on 2026-03-29 (DST starts): croniter fires at 03:00.
    assert next_fires("30 2 * * *", "Europe/Paris", 2, start) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert next_fires("not a cron", "UTC") == []
    assert next_fires("0 * * * *", "Nowhere/City") == []


def test_openapi_document_shape() -> None:
    doc = build_openapi("https://gm.example.com/")
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "https://gm.example.com"}]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)
            if operation.get("security") != []:
                assert "401" in operation["responses"], (method, path)
    run_wait = doc["paths"]["/api/run_wait/script/{path}"]["post"]["responses"]
    assert {"200", "202", "400", "401", "403", "404", "500"} <= set(run_wait)


def test_bootstrap_first_start_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data=data, admin_token="gm_bootstrap_token_abcdefghijklmnopqrstuvwxyz")
    out = io.StringIO()
    with Workspace(tmp_path / "ws.db", Vault.open(data)) as workspace:
        first = bootstrap(workspace, settings, out=out)
        assert first.first_start and first.generated_password
        password = out.getvalue().split("password ")[1].split()[0]
        assert workspace.authenticate("admin", password) is not None
        assert "f/examples/hello" in first.loaded
        assert any(p.startswith("f/examples/") for p in first.loaded)
        assert workspace.folders()["examples"].rights == {"u/admin": "owner"}
        expected = {
            f"f/examples/{p.stem}"
            for p in [
                *(EXAMPLES_DIR / "scripts").glob("*"),
                *(EXAMPLES_DIR / "flows").glob("*.yaml"),
            ]
        }
        assert set(first.loaded) | {f"f/examples/{Path(s).stem}" for s in first.skipped} == expected
        resolved = workspace.resolve_token(settings.admin_token or "", 0.0)
        assert resolved is not None and resolved[0].name == "admin"
    out2 = io.StringIO()
    with Workspace(tmp_path / "ws.db", Vault.open(data)) as workspace:
        again = bootstrap(workspace, settings, out=out2)
        assert not again.first_start and again.loaded == [] and out2.getvalue() == ""
        assert workspace.resolve_token(settings.admin_token or "", 0.0) is not None


def test_bootstrap_with_a_chosen_password_and_no_examples(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path, admin_password="chosen-password-1")
    out = io.StringIO()
    with Workspace(tmp_path / "ws.db", Vault.open(tmp_path)) as workspace:
        done = bootstrap(workspace, settings, examples=tmp_path / "absent", out=out)
        assert not done.generated_password and out.getvalue() == "" and done.loaded == []
        assert workspace.authenticate("admin", "chosen-password-1") is not None
