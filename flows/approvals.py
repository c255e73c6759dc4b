"""Signed approval links: resume or cancel one suspended step, once, before it expires.

A token is `base64url(claims).base64url(hmac_sha256(key, claims))` where claims are
run id, step key, action, expiry and a random nonce (128 bits). Verification checks
the signature in constant time, then the expiry; the store makes it single-use by
recording the nonce (`RunStore.use_token`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flows.errors import ApprovalError

Action = Literal["resume", "cancel"]


@dataclass(frozen=True)
class ApprovalClaims:
    """What a link allows: `action` on step `step_key` of run `run_id`, until `expires_at`."""

    run_id: str
    step_key: str
    action: Action
    expires_at: float
    nonce: str


def load_or_create_key(path: Path) -> bytes:
    """The signing key kept in an owner-only file beside (not inside) the database."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
    tmp.replace(path)
    return key


def sign(key: bytes, run_id: str, step_key: str, action: Action, expires_at: float) -> str:
    """A new single-use token for `action` on the step."""
    claims = {"r": run_id, "s": step_key, "a": action, "e": expires_at, "n": secrets.token_hex(16)}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_mac(key, body))}"


def verify(key: bytes, token: str, now: float) -> ApprovalClaims:
    """The claims of a genuine, unexpired token; ApprovalError otherwise."""
    body, _, signature = token.partition(".")
    if not body or not signature:
        raise ApprovalError(
            "this approval link is malformed (it should be two parts joined by a dot)"
        )
    try:
        given = _unb64(signature)
    except ValueError:
        given = b""
    # The signature is checked before the body is even decoded: nothing of an
    # unsigned body is trusted, and any change to it reads as tampering.
    if not hmac.compare_digest(given, _mac(key, body)):
        raise ApprovalError("this approval link was altered or was not issued by this server")
    try:
        claims = json.loads(_unb64(body))
    except ValueError:
        raise ApprovalError("this approval link is malformed (not base64url JSON)") from None
    try:
        parsed = ApprovalClaims(
            run_id=str(claims["r"]),
            step_key=str(claims["s"]),
            action=claims["a"],
            expires_at=float(claims["e"]),
            nonce=str(claims["n"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ApprovalError(
            "this approval link is missing its run, step, action or expiry"
        ) from None
    if parsed.action not in ("resume", "cancel"):
        raise ApprovalError(f"this approval link has an unknown action {parsed.action!r}")
    if now > parsed.expires_at:
        raise ApprovalError("this approval link has expired")
    return parsed


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
