"""Webhook bodies and HMAC signatures: pure functions, no I/O.

A webhook is a run endpoint called with a token. Its body becomes the arguments: a JSON
object is the arguments themselves; anything else (a JSON array, number or string, or
text that is not JSON) arrives as `{"body": ...}`.

An item may require a signature, header `X-Gristmill-Signature: t=<unix seconds>,v1=<hex>`
where `v1 = HMAC-SHA256(secret, f"{t}.{raw body}")` (the scheme Stripe popularised, so
partners' libraries already speak it). `verify` checks it in constant time and within a
tolerance window; the caller makes each accepted signature single-use with the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-Gristmill-Signature"


class SignatureError(Exception):
    """The request's signature is missing, malformed, forged or outside its window."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender puts in `X-Gristmill-Signature` for `body` at `timestamp`."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(header: str | None, body: bytes, secret: str, *, now: float, tolerance_s: int) -> str:
    """Check a signature header; returns the replay key (sha256 hex of the signature).

    Raises SignatureError naming what is wrong. The replay key is what the caller marks
    used (single-use) so the same signed request cannot be accepted twice.
    """
    if not header:
        raise SignatureError(
            f"this webhook requires a signature: send the {SIGNATURE_HEADER} header "
            "'t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">'"
        )
    parts: dict[str, list[str]] = {}
    for piece in header.split(","):
        name, sep, value = piece.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value.strip())
    stamps = parts.get("t", [])
    signatures = parts.get("v1", [])
    if len(stamps) != 1 or not signatures:
        raise SignatureError(
            f"the {SIGNATURE_HEADER} header must look like 't=<unix seconds>,v1=<hex>'"
        )
    try:
        timestamp = int(stamps[0])
    except ValueError:
        raise SignatureError(
            f"the signature timestamp t={stamps[0]!r} is not a whole number of seconds"
        ) from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            f"the signature timestamp t={timestamp} is more than {tolerance_s} s away from "
            f"the server's clock ({int(now)}); sign each request when you send it"
        )
    expected = _mac(secret, timestamp, body)
    for given in signatures:
        if hmac.compare_digest(given.lower().encode(), expected.encode()):
            return hashlib.sha256(f"webhook-signature:{expected}".encode()).hexdigest()
    raise SignatureError(
        "the signature does not match this request's body and timestamp "
        "(forged, or signed with another secret)"
    )


def webhook_args(body: bytes) -> dict[str, Any]:
    """The run arguments a request body stands for (see the module docstring)."""
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the request body is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except ValueError:
        return {"body": text}
    if isinstance(value, dict):
        return value
    return {"body": value}


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
