from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from studio.vault import REDACTED, Vault, VaultError, redact


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_round_trip_bound_to_its_context(vault):
    blob = vault.encrypt("hunter2-password", context="u/alice/db")
    assert b"hunter2" not in blob
    assert vault.decrypt(blob, context="u/alice/db") == "hunter2-password"
    with pytest.raises(VaultError, match="u/bob/db"):
        vault.decrypt(blob, context="u/bob/db")


def test_every_encryption_uses_a_fresh_nonce(vault):
    assert vault.encrypt("same", context="c") != vault.encrypt("same", context="c")


def test_a_tampered_blob_does_not_decrypt(vault):
    blob = bytearray(vault.encrypt("value", context="c"))
    blob[-1] ^= 1
    with pytest.raises(VaultError, match="altered"):
        vault.decrypt(bytes(blob), context="c")
    with pytest.raises(VaultError, match="not a vault blob"):
        vault.decrypt(b"plain text", context="c")


def test_the_key_file_is_owner_only_in_an_owner_only_directory(data, vault):
    ring = data / "keys" / "secrets.key"
    assert mode(ring) == 0o600
    assert mode(ring.parent) == 0o700
    assert [p.name for p in ring.parent.iterdir()] == ["secrets.key"]  # no temp file left
    stored = json.loads(ring.read_text())
    assert stored["current"] == vault.current_key_id
    assert len(base64.b64decode(stored["keys"][vault.current_key_id])) == 32


def test_the_key_survives_a_reopen(data, vault):
    blob = vault.encrypt("kept", context="c")
    assert Vault.open(data).decrypt(blob, context="c") == "kept"


def test_a_keys_directory_made_by_someone_else_is_tightened(tmp_path):
    (tmp_path / "keys").mkdir(mode=0o755)
    (tmp_path / "keys").chmod(0o755)
    Vault.open(tmp_path)
    assert mode(tmp_path / "keys") == 0o700


def test_a_key_file_readable_by_others_is_refused(data, vault):
    ring = data / "keys" / "secrets.key"
    ring.chmod(0o644)
    with pytest.raises(VaultError, match=r"readable by others \(mode 0644\); expected 0600"):
        Vault.open(data)


def test_rotation_keeps_old_blobs_readable_and_marks_them_for_reencryption(data, vault):
    old = vault.encrypt("before", context="c")
    first = vault.current_key_id
    new_id = vault.rotate()
    assert new_id != first and vault.current_key_id == new_id
    assert vault.needs_reencrypt(old)
    assert vault.decrypt(old, context="c") == "before"
    fresh = vault.encrypt("after", context="c")
    assert not vault.needs_reencrypt(fresh)
    reopened = Vault.open(data)
    assert reopened.current_key_id == new_id
    assert reopened.decrypt(old, context="c") == "before"
    assert mode(data / "keys" / "secrets.key") == 0o600


def test_an_environment_key_is_used_instead_of_a_file(tmp_path):
    key = base64.b64encode(os.urandom(32)).decode()
    vault = Vault.open(tmp_path, env_key=key)
    blob = vault.encrypt("v", context="c")
    assert not (tmp_path / "keys").exists()
    assert Vault.open(tmp_path, env_key=key).decrypt(blob, context="c") == "v"
    with pytest.raises(VaultError, match="GRISTMILL_SECRET_KEY"):
        vault.rotate()


def test_an_environment_key_list_decrypts_with_older_keys(tmp_path):
    old_key, new_key = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    blob = Vault.open(tmp_path, env_key=old_key).encrypt("v", context="c")
    rotated = Vault.open(tmp_path, env_key=f"{new_key},{old_key}")
    assert rotated.decrypt(blob, context="c") == "v"
    assert rotated.needs_reencrypt(blob)
    with pytest.raises(VaultError, match="does not have"):
        Vault.open(tmp_path, env_key=new_key).decrypt(blob, context="c")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"short").decode(), "5 bytes long; expected 32"),
    ],
)
def test_a_bad_environment_key_is_explained(tmp_path, value, expected):
    with pytest.raises(VaultError, match=expected):
        Vault.open(tmp_path, env_key=value)


def test_redact_masks_every_occurrence_longest_first():
    text = "token=abcd1234 again abcd1234 and abcd and abc"
    assert redact(text, ["abcd1234", "abcd", "abc"]) == (
        f"token={REDACTED} again {REDACTED} and {REDACTED} and abc"
    )
    assert redact("nothing here", []) == "nothing here"
