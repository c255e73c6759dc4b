"""Run tokens: what a running script's client (`import gristmill`) authenticates with.

A run token names the run and whoever started it, and expires; it is signed with a key
kept in the data directory, so checking one needs no database read and minting one
costs no database write (a webhook run mints one per run). The server gives the run
its starter's permissions, never more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

PREFIX = "gmrun_"
# A run token outlives its run by a little (a script may call back while it ends) and
# dies with it otherwise: runs longer than this need the owner's own token.
LIFETIME_S = 24 * 3600


@dataclass(frozen=True)
class RunClaims:
    """Who a run token speaks for."""

    run_id: str
    actor: str
    expires_at: float
    path: str = ""  # the run's script or flow, whose state `get_state()` reads


class RunTokens:
    """Mints and checks run tokens with one HMAC key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a run token key needs at least 32 bytes")
        self._key = key

    @classmethod
    def open(cls, key_file: Path) -> RunTokens:
        """The key in `key_file`, created (0600, atomically) on first use."""
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            return cls(key_file.read_bytes())
        except FileNotFoundError:
            pass
        temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(32))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, key_file)  # fails if another process made it first
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        return cls(key_file.read_bytes())

    def mint(self, run_id: str, actor: str, now: float, path: str = "") -> str:
        claims = {"r": run_id, "a": actor, "e": int(now + LIFETIME_S), "p": path}
        body = json.dumps(claims).encode()
        encoded = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        return f"{PREFIX}{encoded}.{self._sign(encoded)}"

    def check(self, token: str, now: float) -> RunClaims | None:
        """The claims of a valid, unexpired token; None for anything else."""
        if not token.startswith(PREFIX) or "." not in token:
            return None
        encoded, _, signature = token[len(PREFIX) :].partition(".")
        if not hmac.compare_digest(signature, self._sign(encoded)):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            claims = RunClaims(
                str(body["r"]), str(body["a"]), float(body["e"]), str(body.get("p", ""))
            )
        except (ValueError, KeyError, TypeError):
            return None
        return claims if claims.expires_at > now else None

    def _sign(self, encoded: str) -> str:
        digest = hmac.new(self._key, encoded.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
