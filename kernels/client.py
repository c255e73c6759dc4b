"""The client a running script talks to Gristmill with: `import gristmill`.

Inside a run, `gristmill` is this module (the run process installs it under that name),
so scripts written for Windmill's `wmill` find the same functions:

    import gristmill
    key = gristmill.get_variable("f/sales/api_key")
    gristmill.set_state({"last_id": 42})

It calls the server that started the run (`GRISTMILL_BASE_URL`) with the run's own
token (`GRISTMILL_TOKEN`), which carries the permissions of whoever started the run
and expires soon after it. Standard library only: it runs in every environment.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib.error

__all__ = [
    "GristmillClientError",
    "get_resource",
    "get_resume_urls",
    "get_state",
    "get_variable",
    "run_flow",
    "run_script",
    "set_progress",
    "set_state",
]

_TIMEOUT_S = 300.0


class GristmillClientError(Exception):
    """A call to the Gristmill server failed; the message is the server's."""


def _connection() -> tuple[str, str]:
    base = os.environ.get("GRISTMILL_BASE_URL", "")
    token = os.environ.get("GRISTMILL_TOKEN", "")
    if not base or not token:
        raise GristmillClientError(
            "this code does not run inside a Gristmill run started by the server "
            "(GRISTMILL_BASE_URL and GRISTMILL_TOKEN are not set); the client needs "
            "`gristmill serve` to start the run"
        )
    return base.rstrip("/"), token


def _call(method: str, path: str, body: Any = None) -> Any:
    # Imported on first use: urllib.request brings http, email and ssl, which every run
    # process would otherwise carry (the zygote imports this module; see kernel_app).
    import urllib.error
    import urllib.request

    base, token = _connection()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise GristmillClientError(_message(exc)) from None
    except urllib.error.URLError as exc:
        raise GristmillClientError(
            f"cannot reach the Gristmill server at {base}: {exc.reason}"
        ) from None
    return json.loads(text) if text else None


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode() or "null")
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{error['message']} (HTTP {exc.code})"
    return f"the Gristmill server answered HTTP {exc.code} {exc.reason}"


def _item(path: str) -> str:
    import urllib.parse

    return urllib.parse.quote(path.strip("/"), safe="/")


def _query(**params: str) -> str:
    import urllib.parse

    return urllib.parse.urlencode(params)


def get_variable(path: str) -> str:
    """The value of the variable or secret at `path` (e.g. `f/sales/api_key`)."""
    return str(_call("GET", f"/api/runtime/variables/{_item(path)}")["value"])


def get_resource(path: str) -> dict[str, Any]:
    """The value of the resource at `path` (a JSON object, e.g. database credentials)."""
    value = _call("GET", f"/api/runtime/resources/{_item(path)}")["value"]
    return dict(value)


def get_state(key: str | None = None) -> Any:
    """The state this script (or `key`) kept from its last run, None at first."""
    query = "" if key is None else "?" + _query(key=key)
    return _call("GET", f"/api/runtime/state{query}")["value"]


def set_state(value: Any, key: str | None = None) -> None:
    """Keep `value` (JSON) for the next run of this script (or under `key`)."""
    _call("PUT", "/api/runtime/state", {"value": value, "key": key})


def run_script(path: str, args: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run the workspace script at `path` and return its result (raises on failure)."""
    return _call("POST", f"/api/run_wait/script/{_item(path)}", {**(args or {}), **kwargs})[
        "result"
    ]


def run_flow(path: str, args: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run the workspace flow at `path` and return its result (raises on failure)."""
    return _call("POST", f"/api/run_wait/flow/{_item(path)}", {**(args or {}), **kwargs})["result"]


def get_resume_urls(approver: str | None = None) -> dict[str, str]:
    """Signed links that approve (`resume`) or refuse (`cancel`) this flow run's next
    approval step, and the page that shows it (`approvalPage`): send them to whoever
    must approve, from the step before the approval."""
    query = "" if approver is None else "?" + _query(approver=approver)
    return dict(_call("GET", f"/api/runtime/resume_urls{query}"))


def set_progress(percent: int) -> None:
    """Show how far the run is (0-100) on its page."""
    if not 0 <= int(percent) <= 100:
        raise ValueError(f"progress must be between 0 and 100, not {percent}")
    _call("POST", "/api/runtime/progress", {"progress": int(percent)})
