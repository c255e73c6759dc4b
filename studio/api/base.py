"""The base of every API handler: who is calling, JSON in and out, errors, security headers.

A handler subclass parses the request, makes one call into `Services` and replies with
JSON. Domain errors (workspace, permissions, arguments, flow specs) are mapped to HTTP
statuses here, once, so handlers can simply let them propagate. Responses never carry
a stack trace or a server path: unexpected exceptions become a generic 500 message and
are logged server-side.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

import tornado.web

from flows.errors import ApprovalError, ExpressionError, FlowSpecError
from kernels.errors import ArgumentError, ScriptError
from studio.auth.permissions import Action, Actor, Forbidden, can, require
from studio.job_tokens import PREFIX as RUN_TOKEN_PREFIX
from studio.job_tokens import RunClaims
from studio.vault import redact
from studio.workspace.errors import Conflict, Invalid, NotFound, WorkspaceError
from studio.workspace.paths import check_path, owner_of

if TYPE_CHECKING:
    from studio.services import Services
    from studio.workspace.store import Workspace

log = logging.getLogger("gristmill.api")

SESSION_COOKIE = "gristmill_session"
XSRF_COOKIE = "_xsrf"
XSRF_HEADER = "X-XSRF-Token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    """An error the caller should see: HTTP status, a message naming what was wrong, a field."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error_status(exc: BaseException) -> tuple[int, str, str | None] | None:
    """(status, message, field) for an exception meant for the caller; None for a bug."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message, exc.field
    if isinstance(exc, tornado.web.HTTPError):
        return exc.status_code, exc.log_message or exc.reason or "request refused", None
    if isinstance(exc, Forbidden):
        return 403, str(exc), None
    if isinstance(exc, NotFound):
        return 404, str(exc), None
    if isinstance(exc, Conflict):
        return 409, str(exc), None
    if isinstance(exc, (Invalid, WorkspaceError)):
        return 400, str(exc), getattr(exc, "field", None)
    if isinstance(exc, ArgumentError):
        return 400, str(exc), exc.field
    if isinstance(exc, (ScriptError, FlowSpecError, ExpressionError)):
        return 400, str(exc), None
    if isinstance(exc, ApprovalError):
        return 400, str(exc), None
    return None


def jsonable(value: Any) -> Any:
    """Records (frozen dataclasses), tuples and non-finite floats as plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def redact_value(value: Any, secrets: list[str]) -> Any:
    """Every string inside `value` with the secrets replaced (structure kept)."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, secrets) for v in value]
    return value


class ApiHandler(tornado.web.RequestHandler):
    """Authenticates the caller in `prepare`; `public = True` handlers accept anonymous calls."""

    public = False
    run_claims: RunClaims | None = None  # set when a running script's client calls

    def initialize(self, services: Services, **route: Any) -> None:
        self.services = services
        self.route = route
        self.actor: Actor | None = None
        self.via: str | None = None  # "token" or "session"

    # ---------------------------------------------------------------- plumbing

    @property
    def workspace(self) -> Workspace:
        workspace = self.services.workspace
        if workspace is None:
            raise ApiError(503, "the workspace is not open (the server was started without flows)")
        return workspace

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        # Tornado's own check (when the app enables xsrf_cookies) would refuse bearer-token
        # calls; `prepare` applies the API's rule instead: only cookie sessions need it.
        return None

    async def prepare(self) -> None:
        header = self.request.headers.get("Authorization")
        now = time.time()
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(401, "the Authorization header must be 'Bearer <token>'")
            if value.strip().startswith(RUN_TOKEN_PREFIX):
                self._run_token(value.strip(), now)
            else:
                resolved = self.workspace.resolve_token(value.strip(), now)
                if resolved is None:
                    raise ApiError(401, "this API token is unknown, expired or revoked")
                user, token = resolved
                self.actor = self.workspace.actor(user.name, tuple(token.scopes) or None)
                self.via = "token"
        else:
            session = self.get_cookie(SESSION_COOKIE)
            signed = self.workspace.resolve_session(session, now) if session else None
            if signed is not None:
                if self.request.method not in _SAFE_METHODS:
                    self._check_xsrf()
                self.actor = self.workspace.actor(signed.name)
                self.via = "session"
        if self.actor is None and not self.public:
            raise ApiError(
                401, "sign in first: send 'Authorization: Bearer <token>' or a session cookie"
            )

    def _run_token(self, value: str, now: float) -> None:
        """A running script's client: the permissions of whoever started the run."""
        tokens = self.services.run_tokens
        claims = tokens.check(value, now) if tokens is not None else None
        user = self.workspace.get_user(claims.actor) if claims is not None else None
        if claims is None or user is None or user.disabled:
            raise ApiError(401, "this run token is invalid or expired (runs' tokens end with them)")
        self.actor = self.workspace.actor(user.name)
        self.via = "run"
        self.run_claims = claims

    def _check_xsrf(self) -> None:
        cookie = self.get_cookie(XSRF_COOKIE) or ""
        given = self.request.headers.get(XSRF_HEADER) or ""
        if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
            raise ApiError(
                403,
                f"a signed-in page must send the {XSRF_HEADER} header equal to the "
                f"{XSRF_COOKIE} cookie for {self.request.method} requests",
            )

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            mapped = error_status(exc_info[1])
            if mapped is not None:
                status_code = mapped[0]
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if value is not None and error_status(value) is not None:
            return  # an answer for the caller, not a server fault
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Rebuild the headers: send_error cleared them.
        self.set_default_headers()
        message = self._reason or "request refused"
        field = None
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            mapped = error_status(exc_info[1])
            if mapped is not None:
                _, message, field = mapped
            elif status_code >= 500:
                message = "internal error; the server log has the details"
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="gristmill"')
        error: dict[str, Any] = {"message": message}
        if field:
            error["field"] = field
        self.finish(json.dumps({"error": error}))

    # ---------------------------------------------------------------- helpers

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(jsonable(data), separators=(",", ":")))

    def body_json(self) -> Any:
        """The request body as JSON (None when empty); 400 naming the problem otherwise."""
        raw = self.request.body
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None

    def body_object(self) -> dict[str, Any]:
        value = self.body_json()
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ApiError(
                400, f"the request body must be a JSON object, got {type(value).__name__}"
            )
        return value

    def signed_in(self) -> Actor:
        if self.actor is None:
            raise ApiError(401, "sign in first")
        return self.actor

    def query_int(self, name: str, default: int, *, low: int = 0, high: int = 10_000) -> int:
        text = self.get_query_argument(name, None)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError(
                400, f"query '{name}' must be an integer, got {text!r}", field=name
            ) from None
        if not low <= value <= high:
            raise ApiError(
                400, f"query '{name}' must be between {low} and {high}, got {value}", field=name
            )
        return value

    def query_float(self, name: str) -> float | None:
        text = self.get_query_argument(name, None)
        if text is None or text == "":
            return None
        try:
            value = float(text)
        except ValueError:
            raise ApiError(
                400, f"query '{name}' must be a Unix time in seconds, got {text!r}", field=name
            ) from None
        if not math.isfinite(value):
            raise ApiError(400, f"query '{name}' must be a finite number", field=name)
        return value

    def check_item_path(self, path: str, what: str = "path") -> str:
        try:
            return check_path(path)
        except WorkspaceError as exc:
            raise ApiError(400, str(exc), field=what) from None

    def authorize(self, action: Action, path: str, what: str = "item") -> Actor:
        """Refuse unless the caller may `action` on `path`.

        Another user's private tree answers 404 to non-admins, as if it did not exist.
        """
        actor = self.signed_in()
        self.check_item_path(path)
        kind, owner = owner_of(path)
        if kind == "u" and owner != actor.name and actor.role != "admin":
            raise ApiError(404, f"no {what} at {path!r}")
        require(actor, action, path, self.workspace.folders())
        return actor

    def may(self, action: Action, path: str) -> bool:
        """Whether the caller may `action` on `path` (no exception), for filtering lists."""
        actor = self.signed_in()
        try:
            kind, owner = owner_of(path)
        except WorkspaceError:
            return actor.role == "admin"
        if kind == "u" and owner != actor.name and actor.role != "admin":
            return False
        return can(actor, action, path, self.workspace.folders())

    def require_admin(self) -> Actor:
        actor = self.signed_in()
        require(actor, "admin", None, self.workspace.folders())
        return actor

    def audit(self, action: str, target: str = "", **detail: Any) -> None:
        actor = self.actor.name if self.actor else "anonymous"
        self.workspace.audit(actor, action, target, **detail)

    def secrets(self) -> list[str]:
        return list(self.workspace.secret_values())

    def redacted(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return redact_value(value, self.secrets())


class NotFoundHandler(ApiHandler):
    """Any /api/ URL that matches no route: a JSON 404 rather than Tornado's HTML page."""

    public = True

    async def prepare(self) -> None:
        raise ApiError(404, f"no API route {self.request.method} {self.request.path}")
