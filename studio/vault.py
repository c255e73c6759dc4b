"""Secrets at rest: AES-256-GCM under a key kept outside the database.

A blob is `b"\\x01" | len(key id) | key id | 96-bit nonce | ciphertext+tag`. The
associated data binds the format version, the key id and a caller-given context (the
variable's path), so a blob copied onto another variable does not decrypt.

Keys come from `GRISTMILL_SECRET_KEY` (base64 of 32 bytes; a comma-separated list puts
the current key first and older ones after it, so blobs under them still decrypt) or,
without it, from the key ring `<data>/keys/secrets.key`: a JSON file created owner-only
(0600) in an owner-only directory (0700), written atomically. `rotate()` adds a key to
that ring and makes it current; the old keys stay to decrypt until everything has been
re-encrypted (`Workspace.rotate_secrets`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from studio.workspace.errors import WorkspaceError

_FORMAT = 1
_NONCE = 12
REDACTED = "********"
_MIN_REDACT = 4


class VaultError(WorkspaceError):
    """A key cannot be loaded or a blob cannot be decrypted."""


class Vault:
    """Encrypts and decrypts secret values; open with `Vault.open(data_dir, env_key)`."""

    def __init__(self, keys: dict[str, bytes], current: str, ring: Path | None) -> None:
        if current not in keys:
            raise VaultError(f"the current key id {current!r} is not among the keys loaded")
        self._keys = dict(keys)
        self._current = current
        # None when the keys come from the environment: nothing on disk to rotate.
        self._ring = ring

    @classmethod
    def open(cls, data_dir: Path, env_key: str | None = None) -> Vault:
        """The vault for a data directory: keys from `env_key` (the value of
        GRISTMILL_SECRET_KEY, read by the caller's settings) or from the key ring file,
        created on first use."""
        if env_key:
            keys = _env_keys(env_key)
            return cls(keys, next(iter(keys)), None)
        ring = Path(data_dir) / "keys" / "secrets.key"
        _private_dir(ring.parent)
        try:
            current, keys = _read_ring(ring)
        except FileNotFoundError:
            key_id = _new_key_id()
            _create_ring(ring, key_id, {key_id: AESGCM.generate_key(bit_length=256)})
            current, keys = _read_ring(ring)  # another process may have won the race
        return cls(keys, current, ring)

    @property
    def current_key_id(self) -> str:
        return self._current

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        """A fresh blob of `plaintext` under the current key, bound to `context`."""
        key_id = self._current
        header = bytes([_FORMAT, len(key_id)]) + key_id.encode("ascii")
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._keys[key_id]).encrypt(
            nonce, plaintext.encode("utf-8"), _aad(key_id, context)
        )
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        """The plaintext of a blob made by `encrypt` with the same context."""
        key_id, nonce, sealed = _split(blob)
        key = self._keys.get(key_id)
        if key is None:
            raise VaultError(
                f"secret for {context!r} was encrypted with key {key_id!r}, which this server "
                f"does not have (it has {sorted(self._keys)}); restore the key file or "
                "GRISTMILL_SECRET_KEY that was in use"
            )
        try:
            return AESGCM(key).decrypt(nonce, sealed, _aad(key_id, context)).decode("utf-8")
        except InvalidTag:
            raise VaultError(
                f"secret for {context!r} does not decrypt: it was altered, or it belongs to "
                "another variable"
            ) from None

    def rotate(self) -> str:
        """Make a new key current (the old ones are kept to decrypt); returns its id."""
        if self._ring is None:
            raise VaultError(
                "the secret key comes from GRISTMILL_SECRET_KEY, which Gristmill cannot "
                "change; to rotate it, put a new key first in GRISTMILL_SECRET_KEY "
                "(comma-separated, the old key after it), restart, then re-encrypt"
            )
        key_id = _new_key_id()
        keys = {**self._keys, key_id: AESGCM.generate_key(bit_length=256)}
        _write_ring(self._ring, key_id, keys)
        self._keys, self._current = keys, key_id
        return key_id

    def needs_reencrypt(self, blob: bytes) -> bool:
        """Whether `blob` is under an older key than the current one."""
        key_id, _, _ = _split(blob)
        return key_id != self._current


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret (of 4 characters or more) masked."""
    # Longest first: a secret that contains another is masked whole, not in pieces.
    for value in sorted({s for s in secrets if len(s) >= _MIN_REDACT}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def _aad(key_id: str, context: str) -> bytes:
    return bytes([_FORMAT]) + key_id.encode("ascii") + b"\0" + context.encode("utf-8")


def _split(blob: bytes) -> tuple[str, bytes, bytes]:
    if len(blob) < 2 or blob[0] != _FORMAT:
        raise VaultError(
            f"a stored secret is not a vault blob (format byte {blob[:1]!r}, expected {_FORMAT})"
        )
    end = 2 + blob[1]
    if len(blob) < end + _NONCE + 16:
        raise VaultError(f"a stored secret is truncated ({len(blob)} bytes)")
    return blob[2:end].decode("ascii"), blob[end : end + _NONCE], blob[end + _NONCE :]


def _new_key_id() -> str:
    return "k" + secrets.token_hex(4)


def _decode_key(text: str, where: str) -> bytes:
    standard = text.strip().replace("-", "+").replace("_", "/")  # url-safe alphabet too
    try:
        key = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        raise VaultError(
            f"{where}: the key is not base64; expected 32 random bytes in base64"
        ) from None
    if len(key) != 32:
        raise VaultError(
            f"{where}: the key is {len(key)} bytes long; expected 32 bytes (256 bits) in "
            'base64, e.g. from `python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"`'
        )
    return key


def _env_keys(value: str) -> dict[str, bytes]:
    """Keys of GRISTMILL_SECRET_KEY, current first; ids derive from the key so they are stable."""
    keys: dict[str, bytes] = {}
    for number, part in enumerate(p for p in value.split(",") if p.strip()):
        key = _decode_key(part, f"GRISTMILL_SECRET_KEY (key {number + 1})")
        keys["e" + hashlib.sha256(b"gristmill-key-id" + key).hexdigest()[:8]] = key
    if not keys:
        raise VaultError("GRISTMILL_SECRET_KEY is set but empty; expected base64 of 32 bytes")
    return keys


def _private_dir(path: Path) -> None:
    """Create `path` owner-only, or tighten an existing one (other parts of Gristmill may
    have created `keys/` with the default umask)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def _read_ring(path: Path) -> tuple[str, dict[str, bytes]]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise VaultError(
            f"the key file {path} is readable by others (mode {mode:04o}); expected 0600 — "
            f"run `chmod 600 {path}`"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
        current = data["current"]
        keys = {str(k): _decode_key(v, f"{path} key {k!r}") for k, v in data["keys"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VaultError(
            f"the key file {path} is not a key ring ({exc}); expected JSON "
            '{"current": "<id>", "keys": {"<id>": "<base64>"}}'
        ) from None
    if current not in keys:
        raise VaultError(f"the key file {path} names current key {current!r}, which it lacks")
    return current, keys


def _ring_bytes(current: str, keys: dict[str, bytes]) -> bytes:
    encoded = {k: base64.b64encode(v).decode("ascii") for k, v in keys.items()}
    return json.dumps({"current": current, "keys": encoded}, indent=1).encode("utf-8")


def _write_temp(path: Path, content: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_ring(path: Path, current: str, keys: dict[str, bytes]) -> None:
    """Create the key file complete or not at all; if another process created it first,
    keep theirs (the caller re-reads it)."""
    tmp = _write_temp(path, _ring_bytes(current, keys))
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # unlike rename, link never replaces an existing file
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _write_ring(path: Path, current: str, keys: dict[str, bytes]) -> None:
    tmp = _write_temp(path, _ring_bytes(current, keys))
    os.replace(tmp, path)
    _fsync_dir(path.parent)
