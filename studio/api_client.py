"""A small client of the REST API for the CLI (`gristmill sync`, `gristmill runs`):
bearer token, JSON in and out, errors carrying the server's message. Standard library
only, so CLI commands that talk to a server start fast.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiClientError(Exception):
    """A call could not be made or its answer was not what the API promises."""


class HttpError(ApiClientError):
    """The server refused a request; `status` is the HTTP status (0: no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """The REST API, authenticated with a bearer token (stdlib only: the CLI stays light)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + urllib.parse.quote(route, safe="/?=&"),
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise HttpError(exc.code, f"{method} {route}: {exc.code} {_message(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HttpError(0, f"cannot reach the server at {self.url}: {reason}") from None

    def items(self, route: str) -> list[dict[str, Any]]:
        answer = self.call("GET", route)
        if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            raise ApiClientError(f"GET {route}: expected {{'items': [...]}} from the server")
        return answer["items"]


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read()).get("error", {})
        return str(error.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
