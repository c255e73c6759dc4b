"""The OpenAPI 3.1 description of the REST API, served at `GET /api/openapi.json`.

Built from small helpers so every operation gets the same error responses and the
same security. A test runs schemathesis against a real server to keep it true: every
documented operation's real responses must match what is written here.
"""

from __future__ import annotations

from typing import Any

from studio.api.openapi_runtime import runtime_paths
from studio.api.openapi_schemas import (
    ANY,
    FLOW_BODY,
    ITEM_BODY,
    JOB_ID,
    NAME,
    PATH,
    SCHEMAS,
    list_of,
    obj,
    op,
    param,
    query,
    ref,
)


def _items_paths(plural: str, kind: str) -> dict[str, Any]:
    body = FLOW_BODY if kind == "flow" else ITEM_BODY
    tag = plural
    return {
        f"/api/{plural}": {
            "get": op(
                f"List the latest version of each {kind} you may read",
                tag,
                {"200": ("the items", list_of("VersionMeta"))},
                params=[query("prefix", {"type": "string"}, "only paths starting with this")],
            )
        },
        f"/api/{plural}/{{path}}": {
            "get": op(
                f"Read a {kind} (latest, or ?version=N)",
                tag,
                {"200": ("the version", ref("Version"))},
                params=[PATH, query("version", {"type": "integer", "minimum": 1})],
            ),
            "put": op(
                f"Deploy a new version of a {kind}",
                tag,
                {
                    "201": ("a new version", ref("Version")),
                    "200": ("unchanged: the latest version", ref("Version")),
                },
                params=[PATH],
                body=body,
            ),
            "delete": op(
                f"Delete a {kind} and all its versions",
                tag,
                {"200": ("deleted", ref("Deleted"))},
                params=[PATH],
            ),
        },
        f"/api/{plural}/{{path}}/versions": {
            "get": op(
                "Every version, oldest first",
                tag,
                {"200": ("the versions", list_of("VersionMeta"))},
                params=[PATH],
            )
        },
        f"/api/{plural}/{{path}}/diff": {
            "get": op(
                "Unified diff between two versions",
                tag,
                {"200": ("the diff", ref("Diff"))},
                params=[
                    PATH,
                    param("a", "query", {"type": "integer", "minimum": 1}, required=True),
                    param("b", "query", {"type": "integer", "minimum": 1}, required=True),
                ],
            )
        },
        f"/api/{plural}/{{path}}/draft": {
            "get": op("The shared draft", tag, {"200": ("the draft", ref("Draft"))}, params=[PATH]),
            "put": op(
                "Save the shared draft",
                tag,
                {"200": ("the draft", ref("Draft"))},
                params=[PATH],
                body=body,
            ),
        },
        f"/api/{plural}/{{path}}/schema": {
            "get": op(
                "JSON Schema of the inputs (latest version)",
                tag,
                {"200": ("the schema", ref("InputSchema"))},
                params=[PATH],
            )
        },
    }


def _run_paths(kind: str) -> dict[str, Any]:
    args_body = {
        "description": 'the arguments (a JSON object); any other body arrives as {"body": ...}'
    }
    signature = param(
        "X-Gristmill-Signature",
        "header",
        {"type": "string"},
        "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>; required when the item has webhook signing",
        required=False,
    )
    return {
        f"/api/run/{kind}/{{path}}": {
            "post": op(
                f"Start a run of a {kind} (webhook, asynchronous)",
                "runs",
                {"202": ("queued", ref("JobId"))},
                params=[PATH, signature],
                body=args_body,
                body_required=False,
            )
        },
        f"/api/run_wait/{kind}/{{path}}": {
            "post": op(
                f"Run a {kind} and wait for its result (webhook, synchronous)",
                "runs",
                {
                    "200": ("the result", ref("RunResult")),
                    "202": ("the run waits for an approval", ref("RunSuspended")),
                    "500": ("the run failed: its error", ref("RunFailed")),
                },
                params=[PATH, signature],
                body=args_body,
                body_required=False,
            )
        },
    }


def _crud(
    collection: str,
    item: str,
    schema: str,
    tag: str,
    *,
    put_body: dict[str, Any],
    item_param: dict[str, Any] = PATH,
    list_params: list[dict[str, Any]] | None = None,
    get_params: list[dict[str, Any]] | None = None,
    delete: bool = True,
) -> dict[str, Any]:
    paths: dict[str, Any] = {
        collection: {
            "get": op(
                f"List {tag}",
                tag,
                {"200": ("the list", list_of(schema))},
                params=list_params,
            )
        },
        item: {
            "put": op(
                f"Create or replace one of {tag}",
                tag,
                {"200": ("saved", ref(schema))},
                params=[item_param],
                body=put_body,
            ),
        },
    }
    if get_params is not None:
        paths[item]["get"] = op(
            f"Read one of {tag}",
            tag,
            {"200": ("found", ref(schema))},
            params=[item_param, *get_params],
        )
    if delete:
        paths[item]["delete"] = op(
            f"Delete one of {tag}", tag, {"200": ("deleted", ref("Deleted"))}, params=[item_param]
        )
    return paths


def build_openapi(base_url: str = "") -> dict[str, Any]:
    """The whole document (plain JSON-able dict)."""
    paths: dict[str, Any] = {
        "/api/health": {
            "get": op(
                "Server health (no sign-in)",
                "server",
                {"200": ("ok", ref("Health"))},
                public=True,
                errors=(),
            )
        },
        "/api/openapi.json": {
            "get": op(
                "This document",
                "server",
                {"200": ("OpenAPI 3.1", {"type": "object"})},
                public=True,
                errors=(),
            )
        },
        "/api/auth/login": {
            "post": op(
                "Sign in with a password; sets the gristmill_session cookie (HttpOnly) and _xsrf",
                "auth",
                {"200": ("signed in", ref("Me"))},
                body=obj(
                    ["name", "password"], name={"type": "string"}, password={"type": "string"}
                ),
                public=True,
                errors=("400", "401", "503"),
            )
        },
        "/api/auth/logout": {
            "post": op(
                "Sign out (ends the cookie session)", "auth", {"200": ("done", ref("SignedOut"))}
            )
        },
        "/api/auth/me": {"get": op("Who am I", "auth", {"200": ("you", ref("Me"))})},
    }
    paths |= _items_paths("scripts", "script")
    paths |= _items_paths("flows", "flow")
    paths |= _run_paths("script")
    paths |= _run_paths("flow")
    job_filters = [
        query(
            "status",
            {"enum": ["queued", "running", "suspended", "success", "failure", "cancelled"]},
        ),
        query("path", {"type": "string"}, "path prefix"),
        query("trigger", {"type": "string"}),
        query("kind", {"enum": ["script", "flow"]}),
        query("since", {"type": "number"}, "created at or after (Unix seconds)"),
        query("until", {"type": "number"}, "created before (Unix seconds)"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        query("offset", {"type": "integer", "minimum": 0, "maximum": 1000000}),
    ]
    link = param("token", "path", {"type": "string", "minLength": 1}, "the signed link token")
    paths |= {
        "/api/jobs": {
            "get": op(
                "Runs, newest first, filtered and paginated",
                "runs",
                {"200": ("a page", list_of("Job"))},
                params=job_filters,
            )
        },
        "/api/jobs/{id}": {
            "get": op(
                "One run: status, args, result, error, steps, timings",
                "runs",
                {"200": ("the run", ref("JobDetail"))},
                params=[JOB_ID],
            )
        },
        "/api/jobs/{id}/logs": {
            "get": op(
                "Log pieces from seq `offset` on",
                "runs",
                {"200": ("logs", ref("Logs"))},
                params=[JOB_ID, query("offset", {"type": "integer", "minimum": 0})],
            )
        },
        "/api/jobs/{id}/cancel": {
            "post": op(
                "Cancel a queued, suspended or running run",
                "runs",
                {"200": ("cancelled", ref("Job"))},
                params=[JOB_ID],
            )
        },
        "/api/jobs/{id}/approve": {
            "post": op(
                "Approve the waiting step (body: the approval form's payload)",
                "runs",
                {"200": ("recorded", ref("Job"))},
                params=[JOB_ID],
                body=ANY,
                body_required=False,
            )
        },
        "/api/jobs/{id}/reject": {
            "post": op(
                "Reject the waiting step (cancels the run)",
                "runs",
                {"200": ("cancelled", ref("Job"))},
                params=[JOB_ID],
            )
        },
        "/api/approvals": {
            "get": op(
                "Runs waiting on an approval you may see, with the step's form",
                "runs",
                {"200": ("waiting", list_of("Approval"))},
            )
        },
        "/api/resume/{token}": {
            "post": op(
                "Resume through a signed approval link (payload as body)",
                "runs",
                {"200": ("done", ref("LinkResult"))},
                params=[link],
                body=ANY,
                body_required=False,
                public=True,
                errors=("400", "401", "503"),
            )
        },
        "/api/cancel/{token}": {
            "post": op(
                "Cancel through a signed approval link",
                "runs",
                {"200": ("done", ref("LinkResult"))},
                params=[link],
                public=True,
                errors=("400", "401", "503"),
            )
        },
        "/api/users": {
            "get": op("Users (admin)", "admin", {"200": ("users", list_of("User"))}),
            "post": op(
                "Create a user (admin)",
                "admin",
                {"201": ("created", ref("User"))},
                body=obj(
                    ["name", "password"],
                    name={"type": "string"},
                    password={"type": "string"},
                    role={"enum": ["admin", "developer", "operator", "viewer"]},
                    email={"type": "string"},
                ),
            ),
        },
        "/api/users/{name}": {
            "get": op(
                "A user (admin, or yourself)",
                "admin",
                {"200": ("user", ref("User"))},
                params=[NAME],
            ),
            "patch": op(
                "Change role, password, disabled (admin; yourself: password)",
                "admin",
                {"200": ("user", ref("User"))},
                params=[NAME],
                body=obj(
                    [],
                    role={"enum": ["admin", "developer", "operator", "viewer"]},
                    password={"type": "string"},
                    disabled={"type": "boolean"},
                ),
            ),
        },
        "/api/groups": {
            "get": op("Groups", "admin", {"200": ("groups", list_of("Group"))}),
            "post": op(
                "Create a group (admin)",
                "admin",
                {"201": ("created", ref("Group"))},
                body=obj(
                    ["name"],
                    name={"type": "string"},
                    members={"type": "array", "items": {"type": "string"}},
                ),
            ),
        },
        "/api/groups/{name}": {
            "put": op(
                "Set a group's members (admin)",
                "admin",
                {"200": ("group", ref("Group"))},
                params=[NAME],
                body=obj(["members"], members={"type": "array", "items": {"type": "string"}}),
            )
        },
        "/api/folders": {
            "get": op(
                "Folders you have a right in", "admin", {"200": ("folders", list_of("Folder"))}
            ),
            "post": op(
                "Create a folder (you become its owner)",
                "admin",
                {"201": ("created", ref("Folder"))},
                body=obj(["name"], name={"type": "string"}),
            ),
        },
        "/api/folders/{name}": {
            "get": op(
                "A folder and its rights",
                "admin",
                {"200": ("folder", ref("Folder"))},
                params=[NAME],
            )
        },
        "/api/folders/{name}/rights": {
            "put": op(
                "Give or remove a right (folder owners)",
                "admin",
                {"200": ("folder", ref("Folder"))},
                params=[NAME],
                body=obj(
                    ["principal"],
                    principal={"type": "string", "description": "u/<user> or g/<group>"},
                    right={"enum": ["owner", "writer", "viewer", None]},
                ),
            )
        },
        "/api/tokens": {
            "get": op(
                "API tokens (yours; admins: ?owner= or all)",
                "admin",
                {"200": ("tokens", list_of("Token"))},
                params=[query("owner", {"type": "string"})],
            ),
            "post": op(
                "Create an API token; the plaintext is in this response only",
                "admin",
                {"201": ("created", ref("TokenCreated"))},
                body=obj(
                    ["label"],
                    label={"type": "string"},
                    scopes={"type": "array", "items": {"type": "string"}},
                    expires_at={"type": ["number", "null"]},
                    owner={"type": "string"},
                ),
            ),
        },
        "/api/tokens/{id}": {
            "delete": op(
                "Revoke a token",
                "admin",
                {"200": ("revoked", ref("Revoked"))},
                params=[param("id", "path", {"type": "string", "minLength": 1})],
            )
        },
        "/api/audit": {
            "get": op(
                "Audit log, newest first (admin)",
                "admin",
                {"200": ("entries", list_of("AuditEntry", total=False))},
                params=[
                    query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    query("offset", {"type": "integer", "minimum": 0}),
                    query("actor", {"type": "string"}),
                    query("action", {"type": "string"}),
                ],
            )
        },
    }
    paths |= _crud(
        "/api/variables",
        "/api/variables/{path}",
        "Variable",
        "variables",
        put_body=obj(
            ["value"],
            value={"type": "string"},
            secret={"type": "boolean"},
            description={"type": "string"},
        ),
        list_params=[query("prefix", {"type": "string"})],
        get_params=[
            query("reveal", {"type": "boolean"}, "reveal a secret's value (write right; audited)")
        ],
    )
    paths |= _crud(
        "/api/resources",
        "/api/resources/{path}",
        "Resource",
        "resources",
        put_body=obj(
            ["resource_type", "value"],
            resource_type={"type": "string"},
            value={"type": "object"},
            description={"type": "string"},
        ),
        list_params=[query("prefix", {"type": "string"})],
        get_params=[],
    )
    paths |= _crud(
        "/api/resource_types",
        "/api/resource_types/{name}",
        "ResourceType",
        "resources",
        put_body=obj(["schema"], schema={"type": "object"}, description={"type": "string"}),
        item_param=NAME,
        delete=False,
    )
    paths |= _crud(
        "/api/schedules",
        "/api/schedules/{path}",
        "Schedule",
        "schedules",
        put_body=obj(
            ["cron", "target_path"],
            cron={
                "type": "string",
                "description": "'min hour dom mon dow' or 'sec min hour dom mon dow' (seconds first)",
            },
            timezone={"type": "string", "description": "IANA name, default UTC"},
            target_kind={"enum": ["script", "flow"]},
            target_path={"type": "string"},
            args={"type": "object"},
            enabled={"type": "boolean"},
            no_overlap={"type": "boolean"},
            catch_up={"enum": ["all", "latest", "none"]},
            on_failure={"type": ["string", "null"]},
            on_recovery={"type": ["string", "null"]},
        ),
        get_params=[],
    )
    paths |= runtime_paths()
    signing_kind = param("kind", "path", {"enum": ["script", "flow"]})
    paths["/api/webhook_signing/{kind}/{path}"] = {
        "get": op(
            "Whether the item's webhook requires an HMAC signature",
            "webhooks",
            {"200": ("signing on", ref("WebhookSigning"))},
            params=[signing_kind, PATH],
        ),
        "put": op(
            "Require HMAC signatures (the secret is generated if absent; shown once)",
            "webhooks",
            {"200": ("signing on", ref("WebhookSigningCreated"))},
            params=[signing_kind, PATH],
            body=obj(
                [],
                secret={"type": "string", "minLength": 1},
                tolerance_s={"type": "integer", "minimum": 1, "maximum": 86400},
            ),
            body_required=False,
        ),
        "delete": op(
            "Stop requiring signatures",
            "webhooks",
            {"200": ("removed", ref("Deleted"))},
            params=[signing_kind, PATH],
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gristmill",
            "version": "1",
            "description": (
                "Scripts, flows, runs and webhooks of a Gristmill workspace. Authenticate with "
                "'Authorization: Bearer <token>' (or the session cookie plus X-XSRF-Token from the "
                'pages). Errors are {"error": {"message", "field"?}}.'
            ),
        },
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "gristmill_session"},
            },
        },
    }
