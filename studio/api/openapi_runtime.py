"""OpenAPI paths of `/api/runtime/` (what a running script's client calls, runtime.py)
and of `/api/history/sql` (history.py)."""

from __future__ import annotations

from typing import Any

from studio.api.openapi_schemas import PATH, obj, op, query

_ANY: dict[str, Any] = {}


def runtime_paths() -> dict[str, Any]:
    value = obj(["path", "value"], path={"type": "string"}, value=_ANY)
    return {
        "/api/runtime/variables/{path}": {
            "get": op(
                "A variable's value for a running script, secrets included (audited)",
                "runtime",
                {
                    "200": (
                        "the value",
                        {
                            **value,
                            "properties": {**value["properties"], "secret": {"type": "boolean"}},
                        },
                    )
                },
                params=[PATH],
            )
        },
        "/api/runtime/resources/{path}": {
            "get": op(
                "A resource's value for a running script",
                "runtime",
                {"200": ("the value", value)},
                params=[PATH],
            )
        },
        "/api/runtime/state": {
            "get": op(
                "The state the calling run's script kept (run token only)",
                "runtime",
                {"200": ("the state", obj(["key", "value"], key={"type": "string"}, value=_ANY))},
                params=[query("key", {"type": "string"})],
            ),
            "put": op(
                "Keep state for the calling run's script (run token only)",
                "runtime",
                {"200": ("kept", obj(["key"], key={"type": "string"}))},
                body=obj(["value"], value=_ANY, key={"type": ["string", "null"]}),
            ),
        },
        "/api/runtime/resume_urls": {
            "get": op(
                "Signed resume and cancel links for the calling flow run's next approval",
                "runtime",
                {
                    "200": (
                        "the links",
                        obj(
                            ["resume", "cancel", "approvalPage"],
                            resume={"type": "string"},
                            cancel={"type": "string"},
                            approvalPage={"type": "string"},
                        ),
                    )
                },
                params=[query("approver", {"type": "string"})],
            )
        },
        "/api/complete": {
            "post": op(
                "Code completions from a live kernel (the script editor)",
                "editor",
                {
                    "200": (
                        "matches",
                        obj(
                            ["matches", "cursor_start", "cursor_end", "types"],
                            matches={"type": "array", "items": {"type": "string"}},
                            cursor_start={"type": "integer"},
                            cursor_end={"type": "integer"},
                            types={"type": "array", "items": {"type": "string"}},
                            environment={"type": ["string", "null"]},
                        ),
                    )
                },
                body=obj(
                    ["code"],
                    code={"type": "string"},
                    cursor={"type": "integer", "minimum": 0},
                    language={"enum": ["python", "bash", "sql", "yaml"]},
                    path={"type": "string"},
                ),
            )
        },
        "/api/secrets/rotate": {
            "post": op(
                "A new secrets key; every secret re-encrypted under it (admins; audited)",
                "variables",
                {"200": ("rotated", obj(["key_id"], key_id={"type": "string"}))},
            )
        },
        "/api/history/sql": {
            "post": op(
                "A read-only SQL query over the run history: tables runs, steps, logs (admins)",
                "runs",
                {
                    "200": (
                        "columns and rows",
                        obj(
                            ["columns", "rows", "truncated"],
                            columns={"type": "array", "items": {"type": "string"}},
                            rows={"type": "array", "items": {"type": "array"}},
                            truncated={"type": "boolean"},
                        ),
                    )
                },
                body=obj(["sql"], sql={"type": "string", "minLength": 1}),
            )
        },
        "/api/runtime/progress": {
            "post": op(
                "Report the calling run's progress (0-100)",
                "runtime",
                {"200": ("recorded", obj(["progress"], progress={"type": "integer"}))},
                body=obj(["progress"], progress={"type": "integer", "minimum": 0, "maximum": 100}),
            )
        },
    }
