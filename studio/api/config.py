"""Variables and secrets, resources and resource types, schedules, webhook signing.

Secrets are variables with `secret: true`: their value is never in a response unless the
caller asks `?reveal=true`, holds the write right on the path, and the reveal is audited.
Schedules come with `next_fires`, the next 5 fire times as ISO strings in the
schedule's time zone; a 6-field cron has the seconds FIRST (`sec min hour dom mon dow`,
Windmill's convention), which is croniter's `second_at_beginning=True`.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from studio.api.base import ApiError, ApiHandler
from studio.vault import VaultError
from studio.workspace.models import CATCH_UPS, ITEM_KINDS, Schedule, Variable
from studio.workspace.paths import check_name


def next_fires(
    cron: str, timezone: str, count: int = 5, start: datetime | None = None
) -> list[str]:
    """The next `count` fire times of `cron` in `timezone` after `start` (default: now)."""
    try:
        zone = ZoneInfo(timezone)
        base = (start or datetime.now(zone)).astimezone(zone)
        fields = cron.split()
        it = croniter(cron, base, second_at_beginning=len(fields) == 6)
        return [it.get_next(datetime).isoformat() for _ in range(count)]
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return []


def variable_json(variable: Variable) -> dict[str, Any]:
    return asdict(variable)


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    return {**asdict(schedule), "next_fires": next_fires(schedule.cron, schedule.timezone)}


def _optional_string(body: dict[str, Any], name: str, default: str | None = "") -> str | None:
    value = body.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"field '{name}' must be a string", field=name)
    return value


class SecretKeyRotationHandler(ApiHandler):
    """`POST /api/secrets/rotate` (admins): a new secrets key; every secret re-encrypted."""

    async def post(self) -> None:
        actor = self.require_admin()
        try:
            key_id = self.workspace.rotate_secrets(actor=actor.name)  # audited by the store
        except VaultError as exc:  # the key comes from GRISTMILL_SECRET_KEY: rotate there
            raise ApiError(409, str(exc)) from None
        self.reply({"key_id": key_id})


class VariablesHandler(ApiHandler):
    """`GET /api/variables?prefix=`: variables the caller may read (secret values hidden)."""

    async def get(self) -> None:
        prefix = self.get_query_argument("prefix", "")
        items = [
            variable_json(v)
            for v in self.workspace.list_variables(prefix)
            if self.may("read", v.path)
        ]
        self.reply({"items": items, "total": len(items)})


class VariableHandler(ApiHandler):
    """`GET /api/variables/{path}?reveal=true`, `PUT` `{"value", "secret"?, "description"?}`, `DELETE`."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, "variable")
        reveal = self.get_query_argument("reveal", "false").lower() in ("1", "true", "yes")
        variable = self.workspace.get_variable(path)
        if reveal and variable.secret:
            self.authorize("write", path, "variable")
            variable = self.workspace.get_variable(path, reveal=True)
            self.audit("secret.reveal", path)
        self.reply(variable_json(variable))

    async def put(self, path: str) -> None:
        self.authorize("write", path, "variable")
        body = self.body_object()
        value = body.get("value")
        if not isinstance(value, str):
            raise ApiError(400, "field 'value' must be a string", field="value")
        secret = body.get("secret", False)
        if not isinstance(secret, bool):
            raise ApiError(400, "field 'secret' must be true or false", field="secret")
        description = _optional_string(body, "description") or ""
        variable = self.workspace.set_variable(path, value, secret=secret, description=description)
        self.audit("secret.set" if secret else "variable.set", path)
        self.reply(variable_json(variable))

    async def delete(self, path: str) -> None:
        self.authorize("write", path, "variable")
        self.workspace.get_variable(path)  # 404 when missing
        self.workspace.delete_variable(path)
        self.audit("variable.delete", path)
        self.reply({"deleted": path})


class ResourceTypesHandler(ApiHandler):
    """`GET /api/resource_types`."""

    async def get(self) -> None:
        self.signed_in()
        items = [asdict(t) for t in self.workspace.list_resource_types()]
        self.reply({"items": items, "total": len(items)})


class ResourceTypeHandler(ApiHandler):
    """`PUT /api/resource_types/{name}` `{"schema", "description"?}` (admins and developers)."""

    async def put(self, name: str) -> None:
        actor = self.signed_in()
        if actor.role not in ("admin", "developer") or (
            actor.scopes is not None and not {"write", "admin"} & set(actor.scopes)
        ):
            raise ApiError(403, f"{actor.name} ({actor.role}) may not define resource types")
        check_name(name, "name")
        body = self.body_object()
        schema = body.get("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "field 'schema' must be a JSON Schema object", field="schema")
        description = _optional_string(body, "description") or ""
        resource_type = self.workspace.set_resource_type(name, schema, description)
        self.audit("resource_type.set", name)
        self.reply(asdict(resource_type))


class ResourcesHandler(ApiHandler):
    """`GET /api/resources?prefix=`."""

    async def get(self) -> None:
        prefix = self.get_query_argument("prefix", "")
        items = [
            asdict(r) for r in self.workspace.list_resources(prefix) if self.may("read", r.path)
        ]
        self.reply({"items": items, "total": len(items)})


class ResourceHandler(ApiHandler):
    """`GET|PUT|DELETE /api/resources/{path}`; PUT `{"resource_type", "value", "description"?}`."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, "resource")
        self.reply(asdict(self.workspace.get_resource(path)))

    async def put(self, path: str) -> None:
        self.authorize("write", path, "resource")
        body = self.body_object()
        resource_type = body.get("resource_type")
        if not isinstance(resource_type, str) or not resource_type:
            raise ApiError(
                400, "field 'resource_type' must name a resource type", field="resource_type"
            )
        value = body.get("value")
        if not isinstance(value, dict):
            raise ApiError(400, "field 'value' must be a JSON object", field="value")
        description = _optional_string(body, "description") or ""
        resource = self.workspace.set_resource(path, resource_type, value, description)
        self.audit("resource.set", path, resource_type=resource_type)
        self.reply(asdict(resource))

    async def delete(self, path: str) -> None:
        self.authorize("write", path, "resource")
        self.workspace.get_resource(path)
        self.workspace.delete_resource(path)
        self.audit("resource.delete", path)
        self.reply({"deleted": path})


class SchedulesHandler(ApiHandler):
    """`GET /api/schedules`: the schedules the caller may read, with their next 5 fires."""

    async def get(self) -> None:
        items = [
            schedule_json(s) for s in self.workspace.list_schedules() if self.may("read", s.path)
        ]
        self.reply({"items": items, "total": len(items)})


class ScheduleHandler(ApiHandler):
    """`GET|PUT|DELETE /api/schedules/{path}`.

    PUT `{"cron", "timezone"?, "target_kind", "target_path", "args"?, "enabled"?,
    "no_overlap"?, "catch_up"?, "on_failure"?, "on_recovery"?}` needs write on the
    schedule's path and run on the target (and handlers).
    """

    async def get(self, path: str) -> None:
        self.authorize("read", path, "schedule")
        self.reply(schedule_json(self.workspace.get_schedule(path)))

    async def put(self, path: str) -> None:
        self.authorize("write", path, "schedule")
        schedule = self._parse(path, self.body_object())
        self.authorize("run", schedule.target_path, schedule.target_kind)
        for handler in (schedule.on_failure, schedule.on_recovery):
            if handler:
                self.authorize("run", handler, "script")
        saved = self.workspace.set_schedule(schedule)
        self.audit("schedule.set", path, cron=saved.cron, enabled=saved.enabled)
        self.reply(schedule_json(saved))

    async def delete(self, path: str) -> None:
        self.authorize("write", path, "schedule")
        self.workspace.get_schedule(path)
        self.workspace.delete_schedule(path)
        self.audit("schedule.delete", path)
        self.reply({"deleted": path})

    def _parse(self, path: str, body: dict[str, Any]) -> Schedule:
        cron = body.get("cron")
        if not isinstance(cron, str) or not cron.strip():
            raise ApiError(
                400,
                "field 'cron' must be a cron expression: 'min hour dom mon dow' or "
                "'sec min hour dom mon dow'",
                field="cron",
            )
        timezone = _optional_string(body, "timezone", "UTC") or "UTC"
        target_kind = body.get("target_kind", "script")
        if target_kind not in ITEM_KINDS:
            raise ApiError(
                400,
                f"field 'target_kind' must be 'script' or 'flow', got {target_kind!r}",
                field="target_kind",
            )
        target_path = body.get("target_path")
        if not isinstance(target_path, str):
            raise ApiError(
                400, "field 'target_path' must be the path of a script or flow", field="target_path"
            )
        self.check_item_path(target_path, "target_path")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise ApiError(400, "field 'args' must be a JSON object", field="args")
        flags: dict[str, bool] = {}
        for name, default in (("enabled", True), ("no_overlap", False)):
            flag = body.get(name, default)
            if not isinstance(flag, bool):
                raise ApiError(400, f"field '{name}' must be true or false", field=name)
            flags[name] = flag
        catch_up = body.get("catch_up", "latest")
        if catch_up not in CATCH_UPS:
            raise ApiError(
                400,
                f"field 'catch_up' must be one of {', '.join(CATCH_UPS)}; got {catch_up!r}",
                field="catch_up",
            )
        handlers: dict[str, str | None] = {}
        for name in ("on_failure", "on_recovery"):
            handler = _optional_string(body, name, None)
            if handler:
                self.check_item_path(handler, name)
            handlers[name] = handler or None
        return Schedule(
            path=path,
            cron=cron.strip(),
            timezone=timezone,
            target_kind=target_kind,
            target_path=target_path,
            args=args,
            enabled=flags["enabled"],
            no_overlap=flags["no_overlap"],
            catch_up=catch_up,
            on_failure=handlers["on_failure"],
            on_recovery=handlers["on_recovery"],
        )


class WebhookSigningHandler(ApiHandler):
    """`GET|PUT|DELETE /api/webhook_signing/{script|flow}/{path}`.

    PUT `{"secret"?, "tolerance_s"?}` turns HMAC signing on (a secret is generated when
    none is given) and answers the secret once; GET never shows it.
    """

    async def get(self, kind: str, path: str) -> None:
        self.authorize("read", path, kind)
        found = self.workspace.webhook_signing(kind, path)  # type: ignore[arg-type]
        if found is None:
            raise ApiError(404, f"the {kind} {path!r} does not require signed webhooks")
        self.reply(asdict(found[0]))

    async def put(self, kind: str, path: str) -> None:
        self.authorize("write", path, kind)
        self.workspace.get(kind, path)  # type: ignore[arg-type]  # 404 when missing
        body = self.body_object()
        secret = _optional_string(body, "secret", None) or secrets.token_urlsafe(32)
        tolerance = body.get("tolerance_s", 300)
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int)
            or not 1 <= tolerance <= 86400
        ):
            raise ApiError(
                400,
                "field 'tolerance_s' must be whole seconds from 1 to 86400",
                field="tolerance_s",
            )
        signing = self.workspace.set_webhook_signing(
            kind,  # type: ignore[arg-type]
            path,
            secret=secret,
            tolerance_s=tolerance,
        )
        assert signing is not None
        self.audit("webhook.signing_set", path, kind=kind, tolerance_s=tolerance)
        self.reply({**asdict(signing), "secret": secret})

    async def delete(self, kind: str, path: str) -> None:
        self.authorize("write", path, kind)
        self.workspace.set_webhook_signing(kind, path, secret=None)  # type: ignore[arg-type]
        self.audit("webhook.signing_removed", path, kind=kind)
        self.reply({"deleted": path})
