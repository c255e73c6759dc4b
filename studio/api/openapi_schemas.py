"""Parts of the OpenAPI document: component schemas (what each body looks like),
parameters, request bodies and the operation builder shared by `openapi.py`."""

from __future__ import annotations

from typing import Any

ANY: dict[str, Any] = {}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], /, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def list_of(name: str, *, total: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"items": {"type": "array", "items": ref(name)}}
    if total:
        props["total"] = {"type": "integer", "minimum": 0}
    return obj(list(props), **props)


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SCHEMAS: dict[str, Any] = {
    "Error": obj(
        ["error"],
        error=obj(["message"], message={"type": "string"}, field={"type": "string"}),
    ),
    "Health": obj(
        ["status", "uptime_s", "kernels", "flow_runs_in_progress"],
        status={"type": "string"},
        uptime_s={"type": "number"},
        kernels={"type": "object"},
        flow_runs_in_progress={"type": "integer"},
    ),
    "Me": obj(
        ["name", "role", "groups", "scopes", "email", "via"],
        name={"type": "string"},
        role={"enum": ["admin", "developer", "operator", "viewer"]},
        groups={"type": "array", "items": {"type": "string"}},
        scopes={"type": ["array", "null"], "items": {"type": "string"}},
        email={"type": "string"},
        via={"enum": ["token", "session"]},
    ),
    "VersionMeta": obj(
        ["path", "kind", "version", "hash", "language", "summary", "author", "created_at"],
        path={"type": "string"},
        kind={"enum": ["script", "flow"]},
        version={"type": "integer", "minimum": 1},
        hash={"type": "string"},
        language={"type": "string"},
        summary={"type": "string"},
        author={"type": "string"},
        created_at={"type": "number"},
    ),
    "Version": {"allOf": [ref("VersionMeta"), obj(["content"], content={"type": "string"})]},
    "Draft": obj(
        ["path", "kind", "content", "language", "author", "updated_at"],
        path={"type": "string"},
        kind={"enum": ["script", "flow"]},
        content={"type": "string"},
        language={"type": "string"},
        author={"type": "string"},
        updated_at={"type": "number"},
    ),
    "Diff": obj(
        ["path", "a", "b", "diff"],
        path={"type": "string"},
        a={"type": "integer"},
        b={"type": "integer"},
        diff={"type": "string"},
    ),
    "InputSchema": obj(
        ["path", "version", "schema"],
        path={"type": "string"},
        version={"type": "integer"},
        schema={"type": "object"},
    ),
    "Deleted": obj(["deleted"], deleted={"type": "string"}),
    "JobId": obj(["job_id"], job_id={"type": "string"}),
    "RunResult": obj(["job_id", "result"], job_id={"type": "string"}, result=ANY),
    "RunSuspended": obj(
        ["job_id", "status"], job_id={"type": "string"}, status={"const": "suspended"}
    ),
    "RunFailed": obj(
        ["job_id", "status", "error"],
        job_id={"type": "string"},
        status={"type": "string"},
        error={"type": "object"},
    ),
    "Job": obj(
        [
            "id",
            "kind",
            "path",
            "status",
            "args",
            "result",
            "error",
            "recovered",
            "trigger",
            "actor",
            "created_at",
            "started_at",
            "finished_at",
            "duration_s",
        ],
        id={"type": "string"},
        kind={"enum": ["script", "flow"]},
        path={"type": "string"},
        status={"enum": ["queued", "running", "suspended", "success", "failure", "cancelled"]},
        args={"type": "object"},
        result=ANY,
        error={"type": ["object", "null"]},
        recovered={"type": "boolean"},
        trigger={"type": "string"},
        actor={"type": "string"},
        parent_run_id=_STR_OR_NULL,
        created_at={"type": "number"},
        started_at=_NUM_OR_NULL,
        finished_at=_NUM_OR_NULL,
        duration_s=_NUM_OR_NULL,
        progress={"type": ["integer", "null"], "minimum": 0, "maximum": 100},
    ),
    "Step": obj(
        ["key", "step_id", "kind", "attempt", "status", "started_at", "finished_at"],
        key={"type": "string"},
        step_id={"type": "string"},
        kind={"type": "string"},
        attempt={"type": "integer"},
        status={"type": "string"},
        args={"type": ["object", "null"]},
        result=ANY,
        error={"type": ["object", "null"]},
        started_at={"type": "number"},
        finished_at=_NUM_OR_NULL,
        detail={"type": ["object", "null"]},
    ),
    "JobDetail": {
        "allOf": [
            ref("Job"),
            obj(["steps"], steps={"type": "array", "items": ref("Step")}),
        ]
    },
    "LogPiece": obj(
        ["key", "seq", "stream", "text", "at"],
        key={"type": "string"},
        seq={"type": "integer"},
        stream={"enum": ["stdout", "stderr", "display", "system"]},
        text={"type": "string"},
        at={"type": "number"},
    ),
    "Logs": obj(
        ["items", "next_offset", "status"],
        items={"type": "array", "items": ref("LogPiece")},
        next_offset={"type": "integer"},
        status={"type": "string"},
    ),
    "Approval": obj(
        ["job_id", "path", "step_key", "step_id", "form", "required", "approvals", "expires_at"],
        job_id={"type": "string"},
        path={"type": "string"},
        kind={"type": "string"},
        actor={"type": "string"},
        args={"type": "object"},
        created_at={"type": "number"},
        step_key={"type": "string"},
        step_id={"type": "string"},
        message=_STR_OR_NULL,
        form={"type": ["object", "null"]},
        required={"type": "integer"},
        approvals={"type": "array", "items": {"type": "object"}},
        expires_at=_NUM_OR_NULL,
    ),
    "LinkResult": obj(
        ["action", "job_id", "status"],
        action={"enum": ["resume", "cancel"]},
        job_id={"type": "string"},
        status={"type": "string"},
    ),
    "User": obj(
        ["name", "role", "email", "disabled", "created_at"],
        name={"type": "string"},
        role={"enum": ["admin", "developer", "operator", "viewer"]},
        email={"type": "string"},
        disabled={"type": "boolean"},
        created_at={"type": "number"},
    ),
    "Group": obj(
        ["name", "members"],
        name={"type": "string"},
        members={"type": "array", "items": {"type": "string"}},
    ),
    "Folder": obj(
        ["name", "rights"],
        name={"type": "string"},
        rights={
            "type": "object",
            "additionalProperties": {"enum": ["owner", "writer", "viewer"]},
        },
    ),
    "Token": obj(
        ["id", "owner", "label", "scopes", "created_at", "expires_at", "revoked"],
        id={"type": "string"},
        owner={"type": "string"},
        label={"type": "string"},
        scopes={"type": "array", "items": {"type": "string"}},
        created_at={"type": "number"},
        expires_at=_NUM_OR_NULL,
        revoked={"type": "boolean"},
        last_used_at=_NUM_OR_NULL,
    ),
    "TokenCreated": {
        "allOf": [
            ref("Token"),
            obj(["token"], token={"type": "string", "description": "shown this once"}),
        ]
    },
    "Revoked": obj(["revoked"], revoked={"type": "string"}),
    "SignedOut": obj(["signed_out"], signed_out={"type": "boolean"}),
    "AuditEntry": obj(
        ["id", "at", "actor", "action", "target", "detail"],
        id={"type": "integer"},
        at={"type": "number"},
        actor={"type": "string"},
        action={"type": "string"},
        target={"type": "string"},
        detail={"type": "object"},
    ),
    "Variable": obj(
        ["path", "value", "secret", "description", "updated_at"],
        path={"type": "string"},
        value={
            "type": ["string", "null"],
            "description": "null for a secret unless revealed",
        },
        secret={"type": "boolean"},
        description={"type": "string"},
        updated_at={"type": "number"},
    ),
    "ResourceType": obj(
        ["name", "schema", "description"],
        name={"type": "string"},
        schema={"type": "object"},
        description={"type": "string"},
    ),
    "Resource": obj(
        ["path", "resource_type", "value", "description", "updated_at"],
        path={"type": "string"},
        resource_type={"type": "string"},
        value={"type": "object"},
        description={"type": "string"},
        updated_at={"type": "number"},
    ),
    "Schedule": obj(
        [
            "path",
            "cron",
            "timezone",
            "target_kind",
            "target_path",
            "args",
            "enabled",
            "no_overlap",
            "catch_up",
            "next_fires",
        ],
        path={"type": "string"},
        cron={"type": "string"},
        timezone={"type": "string"},
        target_kind={"enum": ["script", "flow"]},
        target_path={"type": "string"},
        args={"type": "object"},
        enabled={"type": "boolean"},
        no_overlap={"type": "boolean"},
        catch_up={"enum": ["all", "latest", "none"]},
        on_failure=_STR_OR_NULL,
        on_recovery=_STR_OR_NULL,
        last_fire_at=_NUM_OR_NULL,
        updated_at={"type": "number"},
        next_fires={
            "type": "array",
            "items": {"type": "string", "format": "date-time"},
            "description": "the next 5 fire times, ISO 8601 in the schedule's time zone",
        },
    ),
    "WebhookSigning": obj(
        ["path", "kind", "tolerance_s"],
        path={"type": "string"},
        kind={"enum": ["script", "flow"]},
        tolerance_s={"type": "integer"},
    ),
    "WebhookSigningCreated": {
        "allOf": [
            ref("WebhookSigning"),
            obj(["secret"], secret={"type": "string", "description": "shown this once"}),
        ]
    },
}


PATH_PATTERN = r"^[uf]/[a-z0-9_][a-z0-9_.-]*(/[a-z0-9_][a-z0-9_.-]*)+$"
NAME_PATTERN = r"^[a-z0-9_][a-z0-9_.-]*$"

ERROR_STATUSES = {
    "400": "bad input: the message names the field and what was expected",
    "401": "not signed in, or a webhook signature is missing, forged, stale or replayed",
    "403": "signed in but not allowed: the message says who, what and which path",
    "404": "no such item (or another user's private item)",
    "409": "the request conflicts with the current state",
    "503": "the server runs without the workspace or the run store",
}


# Request bodies.
ITEM_BODY = obj(
    ["content"],
    content={"type": "string", "minLength": 1},
    language={"enum": ["python", "bash", "sql"]},
    summary={"type": "string"},
)
FLOW_BODY = obj(["content"], content={"type": "string", "minLength": 1, "description": "YAML"})


def param(
    name: str,
    where: str,
    schema: dict[str, Any],
    description: str = "",
    required: bool | None = None,
) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": where, "schema": schema}
    if description:
        param["description"] = description
    param["required"] = where == "path" if required is None else required
    return param


PATH = param(
    "path",
    "path",
    {"type": "string", "pattern": PATH_PATTERN},
    "u/<user>/<name> or f/<folder>/<name>; the name may contain '/'",
)
JOB_ID = param("id", "path", {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}, "job (run) id")
NAME = param("name", "path", {"type": "string", "pattern": NAME_PATTERN})


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return param(name, "query", schema, description, required=False)


def op(
    summary: str,
    tag: str,
    ok: dict[str, tuple[str, dict[str, Any]]],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    public: bool = False,
    errors: tuple[str, ...] = tuple(ERROR_STATUSES),
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        code: json_response(schema, description) for code, (description, schema) in ok.items()
    }
    for code in errors:
        if code not in responses:
            responses[code] = json_response(ref("Error"), ERROR_STATUSES[code])
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    if public:
        operation["security"] = []
    return operation
