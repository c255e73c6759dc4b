"""Variables and secrets, resources, schedules, webhook signing and the audit log
(part of `Workspace`)."""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import replace
from typing import Any

import jsonschema
from croniter import croniter

from studio.workspace.errors import Invalid, NotFound
from studio.workspace.models import (
    CATCH_UPS,
    AuditEntry,
    ItemKind,
    Resource,
    ResourceType,
    Schedule,
    Variable,
    WebhookSigning,
)
from studio.workspace.paths import check_name, check_path
from studio.workspace.store_base import PREFIX_SQL, StoreCore, check_kind, to_json

MIN_WEBHOOK_SECRET = 16
_SCHEDULE_COLUMNS = (
    "path, cron, timezone, target_kind, target_path, args, enabled, no_overlap, catch_up, "
    "on_failure, on_recovery, last_fire_at, updated_at"
)


def webhook_context(kind: ItemKind, path: str) -> str:
    """The vault context of an item's webhook secret (distinct from any variable path)."""
    return f"webhook:{kind}:{path}"


def check_cron(cron: str) -> croniter:
    """A croniter for 5 fields, or 6 with the seconds FIRST (`sec min hour dom mon dow`)."""
    fields = cron.split() if isinstance(cron, str) else []
    if len(fields) not in (5, 6):
        raise Invalid(
            f"cron {cron!r} has {len(fields)} fields; expected 5 (min hour dom mon dow) or 6 "
            "with seconds first (sec min hour dom mon dow)",
            field="cron",
        )
    try:
        return croniter(cron, second_at_beginning=len(fields) == 6)
    except (ValueError, KeyError) as exc:
        raise Invalid(f"cron {cron!r} is not valid: {exc}", field="cron") from None


def _check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise Invalid(
            f"timezone {name!r} is not a known time zone; expected an IANA name such as UTC or Europe/Paris",
            field="timezone",
        ) from None


def _schedule(row: tuple[Any, ...]) -> Schedule:
    (path, cron, tz, target_kind, target_path, args, enabled, no_overlap, catch_up,
     on_failure, on_recovery, last_fire_at, updated_at) = row  # fmt: skip
    return Schedule(
        path=path,
        cron=cron,
        timezone=tz,
        target_kind=target_kind,
        target_path=target_path,
        args=json.loads(args),
        enabled=bool(enabled),
        no_overlap=bool(no_overlap),
        catch_up=catch_up,
        on_failure=on_failure,
        on_recovery=on_recovery,
        last_fire_at=last_fire_at,
        updated_at=updated_at,
    )


class ConfigStore(StoreCore):
    """Configuration items. Secret values pass through the vault and nowhere else."""

    # -------------------------------------------------------------- variables

    def set_variable(
        self, path: str, value: str, *, secret: bool = False, description: str = ""
    ) -> Variable:
        """Create or replace a variable; a secret's value is stored only encrypted."""
        check_path(path)
        if not isinstance(value, str):
            raise Invalid(
                f"value of variable {path!r} is a {type(value).__name__}; expected text",
                field="value",
            )
        blob = self._vault.encrypt(value, context=path) if secret else None
        now = self._now()
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO variables (path, secret, value, blob, description, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET secret = excluded.secret, "
                "value = excluded.value, blob = excluded.blob, description = excluded.description, "
                "updated_at = excluded.updated_at",
                (path, int(secret), None if secret else value, blob, description, now),
            )
        self._cache.secrets = None
        return Variable(
            path=path,
            value=None if secret else value,
            secret=secret,
            description=description,
            updated_at=now,
        )

    def get_variable(self, path: str, *, reveal: bool = False) -> Variable:
        """The variable; a secret's value is None unless `reveal` (the caller audits that)."""
        row = self._db.row(
            "SELECT path, secret, value, blob, description, updated_at FROM variables WHERE path = ?",
            (path,),
        )
        if row is None:
            raise NotFound(f"variable {path!r} does not exist", field="path")
        _, secret, value, blob, description, updated_at = row
        if secret:
            value = self._vault.decrypt(blob, context=path) if reveal else None
        return Variable(
            path=path,
            value=value,
            secret=bool(secret),
            description=description,
            updated_at=updated_at,
        )

    def list_variables(self, prefix: str = "") -> list[Variable]:
        rows = self._db.rows(
            f"SELECT path, secret, value, description, updated_at FROM variables WHERE {PREFIX_SQL} ORDER BY path",
            (prefix, prefix),
        )
        return [
            Variable(path=p, value=None if s else v, secret=bool(s), description=d, updated_at=u)
            for p, s, v, d, u in rows
        ]

    def delete_variable(self, path: str) -> None:
        with self._db.transaction() as con:
            if con.execute("DELETE FROM variables WHERE path = ?", (path,)).rowcount == 0:
                raise NotFound(f"variable {path!r} does not exist", field="path")
        self._cache.secrets = None

    def secret_values(self) -> list[str]:
        """Every secret variable's value, decrypted, for redacting logs and results."""
        if self._cache.secrets is None:
            rows = self._db.rows("SELECT path, blob FROM variables WHERE secret = 1")
            self._cache.secrets = [self._vault.decrypt(blob, context=path) for path, blob in rows]
        return list(self._cache.secrets)

    def rotate_secrets(self, *, actor: str = "system") -> str:
        """A new vault key, then every secret re-encrypted under it in one transaction;
        audited. Returns the new key id."""
        key_id = self._vault.rotate()
        count = self.reencrypt_secrets()
        self.audit(actor, "secrets.rotate", "", key_id=key_id, reencrypted=count)
        return key_id

    def reencrypt_secrets(self) -> int:
        """Re-encrypt every blob not under the vault's current key (after a rotation, or
        after a new GRISTMILL_SECRET_KEY was put first); returns how many changed."""
        count = 0
        with self._db.transaction() as con:
            for path, blob in con.execute(
                "SELECT path, blob FROM variables WHERE secret = 1"
            ).fetchall():
                if self._vault.needs_reencrypt(blob):
                    plain = self._vault.decrypt(blob, context=path)
                    new = self._vault.encrypt(plain, context=path)
                    con.execute("UPDATE variables SET blob = ? WHERE path = ?", (new, path))
                    count += 1
            for kind, path, blob in con.execute(
                "SELECT kind, path, blob FROM webhook_signing"
            ).fetchall():
                if self._vault.needs_reencrypt(blob):
                    context = webhook_context(kind, path)
                    new = self._vault.encrypt(
                        self._vault.decrypt(blob, context=context), context=context
                    )
                    con.execute(
                        "UPDATE webhook_signing SET blob = ? WHERE kind = ? AND path = ?",
                        (new, kind, path),
                    )
                    count += 1
        return count

    # -------------------------------------------------------------- resources

    def set_resource_type(
        self, name: str, schema: dict[str, Any], description: str = ""
    ) -> ResourceType:
        """Create or replace a resource type; `schema` must be a valid JSON Schema."""
        check_name(name, "resource type")
        if not isinstance(schema, dict):
            raise Invalid(
                f"schema of resource type {name!r} is a {type(schema).__name__}; expected a JSON Schema object",
                field="schema",
            )
        validator = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        try:
            validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
            raise Invalid(
                f"schema of resource type {name!r} is not a valid JSON Schema at {where}: {exc.message}",
                field="schema",
            ) from None
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO resource_types (name, schema, description) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, description = excluded.description",
                (name, to_json(schema, "schema"), description),
            )
        return ResourceType(name=name, schema=schema, description=description)

    def list_resource_types(self) -> list[ResourceType]:
        rows = self._db.rows("SELECT name, schema, description FROM resource_types ORDER BY name")
        return [ResourceType(name=n, schema=json.loads(s), description=d) for n, s, d in rows]

    def set_resource(
        self, path: str, resource_type: str, value: dict[str, Any], description: str = ""
    ) -> Resource:
        """Create or replace a resource; `value` is checked against its type's schema."""
        check_path(path)
        row = self._db.row("SELECT schema FROM resource_types WHERE name = ?", (resource_type,))
        if row is None:
            known = ", ".join(t.name for t in self.list_resource_types()) or "none defined yet"
            raise Invalid(
                f"resource_type {resource_type!r} is not a resource type; expected one of: {known}",
                field="resource_type",
            )
        if not isinstance(value, dict):
            raise Invalid(
                f"value of resource {path!r} is a {type(value).__name__}; expected a JSON object",
                field="value",
            )
        schema = json.loads(row[0])
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        error = jsonschema.exceptions.best_match(validator_class(schema).iter_errors(value))
        if error is not None:
            field = ".".join(["value", *(str(p) for p in error.absolute_path)])
            raise Invalid(
                f"resource {path!r} ({resource_type}): {field}: {error.message}", field=field
            )
        now = self._now()
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO resources (path, resource_type, value, description, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (path) DO UPDATE SET resource_type = excluded.resource_type, value = excluded.value, "
                "description = excluded.description, updated_at = excluded.updated_at",
                (path, resource_type, to_json(value, "value"), description, now),
            )
        return Resource(
            path=path,
            resource_type=resource_type,
            value=value,
            description=description,
            updated_at=now,
        )

    def get_resource(self, path: str) -> Resource:
        row = self._db.row(
            "SELECT path, resource_type, value, description, updated_at FROM resources WHERE path = ?",
            (path,),
        )
        if row is None:
            raise NotFound(f"resource {path!r} does not exist", field="path")
        return Resource(
            path=row[0],
            resource_type=row[1],
            value=json.loads(row[2]),
            description=row[3],
            updated_at=row[4],
        )

    def list_resources(self, prefix: str = "") -> list[Resource]:
        rows = self._db.rows(
            f"SELECT path, resource_type, value, description, updated_at FROM resources WHERE {PREFIX_SQL} ORDER BY path",
            (prefix, prefix),
        )
        return [
            Resource(path=p, resource_type=t, value=json.loads(v), description=d, updated_at=u)
            for p, t, v, d, u in rows
        ]

    def delete_resource(self, path: str) -> None:
        with self._db.transaction() as con:
            if con.execute("DELETE FROM resources WHERE path = ?", (path,)).rowcount == 0:
                raise NotFound(f"resource {path!r} does not exist", field="path")

    # -------------------------------------------------------------- schedules

    def set_schedule(self, schedule: Schedule) -> Schedule:
        """Create or replace a schedule after checking every field. A `last_fire_at` of
        None keeps the stored one, so an edit does not make past fires look missed."""
        s = schedule
        check_path(s.path)
        check_cron(s.cron)
        _check_timezone(s.timezone)
        check_kind(s.target_kind)
        try:
            check_path(s.target_path)
        except Invalid as exc:
            raise Invalid(f"target_path: {exc}", field="target_path") from None
        for name in ("on_failure", "on_recovery"):
            handler = getattr(s, name)
            if handler is not None:
                try:
                    check_path(handler)
                except Invalid as exc:
                    raise Invalid(
                        f"{name}: {exc} (the handler script's path)", field=name
                    ) from None
        if s.catch_up not in CATCH_UPS:
            raise Invalid(
                f"catch_up {s.catch_up!r} is not a policy; expected one of {', '.join(CATCH_UPS)}",
                field="catch_up",
            )
        if not isinstance(s.args, dict):
            raise Invalid(
                f"args of schedule {s.path!r} is a {type(s.args).__name__}; expected a JSON object",
                field="args",
            )
        args = to_json(s.args, "args")
        now = self._now()
        with self._db.transaction() as con:
            last = s.last_fire_at
            if last is None:
                row = con.execute(
                    "SELECT last_fire_at FROM schedules WHERE path = ?", (s.path,)
                ).fetchone()
                last = row[0] if row else None
            stored = replace(s, last_fire_at=last, updated_at=now)
            con.execute(
                f"INSERT OR REPLACE INTO schedules ({_SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.path, s.cron, s.timezone, s.target_kind, s.target_path, args, int(s.enabled), int(s.no_overlap),
                 s.catch_up, s.on_failure, s.on_recovery, last, now),
            )  # fmt: skip
        return stored

    def get_schedule(self, path: str) -> Schedule:
        row = self._db.row(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE path = ?", (path,))
        if row is None:
            raise NotFound(f"schedule {path!r} does not exist", field="path")
        return _schedule(row)

    def list_schedules(self) -> list[Schedule]:
        return [
            _schedule(r)
            for r in self._db.rows(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules ORDER BY path")
        ]

    def delete_schedule(self, path: str) -> None:
        with self._db.transaction() as con:
            if con.execute("DELETE FROM schedules WHERE path = ?", (path,)).rowcount == 0:
                raise NotFound(f"schedule {path!r} does not exist", field="path")

    def set_last_fire(self, path: str, fire_at: float) -> None:
        """Record that the fire due at `fire_at` has been handed to the engine."""
        with self._db.transaction() as con:
            if (
                con.execute(
                    "UPDATE schedules SET last_fire_at = ? WHERE path = ?", (fire_at, path)
                ).rowcount
                == 0
            ):
                raise NotFound(f"schedule {path!r} does not exist", field="path")

    # -------------------------------------------------------- webhook signing

    def set_webhook_signing(
        self, kind: ItemKind, path: str, *, secret: str | None, tolerance_s: int = 300
    ) -> WebhookSigning | None:
        """Require HMAC signatures on the item's webhook (`secret` kept encrypted); a None
        secret removes the requirement and returns None."""
        check_kind(kind)
        check_path(path)
        if secret is None:
            with self._db.transaction() as con:
                con.execute("DELETE FROM webhook_signing WHERE kind = ? AND path = ?", (kind, path))
            return None
        if not isinstance(secret, str) or len(secret) < MIN_WEBHOOK_SECRET:
            raise Invalid(
                f"webhook secret for {path!r} has {len(secret) if isinstance(secret, str) else 'no'} characters; "
                f"expected at least {MIN_WEBHOOK_SECRET}",
                field="secret",
            )
        if (
            isinstance(tolerance_s, bool)
            or not isinstance(tolerance_s, int)
            or not 1 <= tolerance_s <= 86400
        ):
            raise Invalid(
                f"tolerance_s {tolerance_s!r} is not valid; expected whole seconds from 1 to 86400",
                field="tolerance_s",
            )
        blob = self._vault.encrypt(secret, context=webhook_context(kind, path))
        with self._db.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO webhook_signing (kind, path, blob, tolerance_s, updated_at) VALUES (?, ?, ?, ?, ?)",
                (kind, path, blob, tolerance_s, self._now()),
            )
        return WebhookSigning(path=path, kind=kind, tolerance_s=tolerance_s)

    def webhook_signing(self, kind: ItemKind, path: str) -> tuple[WebhookSigning, str] | None:
        """(config, secret) when the item's webhook must be signed; None otherwise."""
        row = self._db.row(
            "SELECT blob, tolerance_s FROM webhook_signing WHERE kind = ? AND path = ?",
            (kind, path),
        )
        if row is None:
            return None
        secret = self._vault.decrypt(row[0], context=webhook_context(kind, path))
        return WebhookSigning(path=path, kind=kind, tolerance_s=row[1]), secret

    # ------------------------------------------------------------------ audit

    def audit(self, actor: str, action: str, target: str = "", **detail: Any) -> None:
        """Append to the audit log. `detail` must hold no secret values."""
        text = json.dumps(detail, ensure_ascii=False, default=str)
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (self._now(), actor, action, target, text),
            )

    def audit_log(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, optionally of one actor and/or one action."""
        rows = self._db.rows(
            "SELECT id, at, actor, action, target, detail FROM audit "
            "WHERE (? IS NULL OR actor = ?) AND (? IS NULL OR action = ?) ORDER BY id DESC LIMIT ? OFFSET ?",
            (actor, actor, action, action, max(0, limit), max(0, offset)),
        )
        return [
            AuditEntry(id=i, at=at, actor=a, action=act, target=t, detail=json.loads(d))
            for i, at, a, act, t, d in rows
        ]
