"""Running things and following runs: run / run_wait (webhooks), jobs, logs, cancel,
approvals, and the signed resume/cancel links.

Runs live in the run store (`services.store`); workspace items give what to run. A run
is visible to whoever may read its path (admins: every run; a run outside the workspace
tree, e.g. a CLI run of a file, only to admins and the one who started it).
"""

from __future__ import annotations

import time
from typing import Any

from flows import approvals
from flows.dispatcher import Dispatcher
from flows.duckdb_store import DuckDbStore
from flows.engine import FlowEngine
from flows.errors import ApprovalError
from flows.records import FINISHED, LogRecord, RunRecord, StepRecord
from studio.api.base import ApiError, ApiHandler, redact_value
from studio.api.webhooks import SIGNATURE_HEADER, SignatureError, verify, webhook_args
from studio.auth.permissions import approval_refusal
from studio.vault import redact
from studio.workspace.errors import WorkspaceError
from studio.workspace.paths import check_path

RUN_STATUSES = ("queued", "running", "suspended", "success", "failure", "cancelled")
# A non-admin's job list is filtered after the query; it looks at this many runs at most.
_SCAN_LIMIT = 5000
_SCAN_CHUNK = 500


class _RunsHandler(ApiHandler):
    @property
    def dispatcher(self) -> Dispatcher:
        if self.services.dispatcher is None:
            raise ApiError(503, "runs are not available (the server was started without flows)")
        return self.services.dispatcher

    @property
    def store(self) -> DuckDbStore:
        if self.services.store is None:
            raise ApiError(503, "runs are not available (the server was started without flows)")
        return self.services.store

    @property
    def engine(self) -> FlowEngine:
        if self.services.engine is None:
            raise ApiError(503, "runs are not available (the server was started without flows)")
        return self.services.engine

    def can_see(self, run: RunRecord) -> bool:
        actor = self.signed_in()
        if actor.role == "admin":
            return True
        try:
            check_path(run.path)
        except WorkspaceError:
            return run.actor == actor.name
        return self.may("read", run.path)

    async def visible_run(self, job_id: str) -> RunRecord:
        run = await self.store.get_run(job_id)
        if run is None or not self.can_see(run):
            raise ApiError(404, f"no job with id {job_id!r}")
        return run

    def run_json(self, run: RunRecord, secrets: list[str]) -> dict[str, Any]:
        duration = (
            round(run.finished_at - run.started_at, 6)
            if run.finished_at is not None and run.started_at is not None
            else None
        )
        return {
            "id": run.id,
            "kind": run.kind,
            "path": run.path,
            "status": run.status,
            "args": redact_value(run.args, secrets),
            "result": redact_value(run.result, secrets),
            "error": redact_value(run.error, secrets),
            "recovered": run.recovered,
            "trigger": run.trigger,
            "actor": run.actor,
            "parent_run_id": run.parent_run_id,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_s": duration,
            "progress": run.progress,
        }


def step_json(step: StepRecord, secrets: list[str]) -> dict[str, Any]:
    return {
        "key": step.key,
        "step_id": step.step_id,
        "kind": step.kind,
        "attempt": step.attempt,
        "status": step.status,
        "args": redact_value(step.args, secrets),
        "result": redact_value(step.result, secrets),
        "error": redact_value(step.error, secrets),
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "detail": redact_value(step.detail, secrets),
    }


def log_json(log: LogRecord, secrets: list[str]) -> dict[str, Any]:
    return {
        "key": log.key,
        "seq": log.seq,
        "stream": log.stream,
        "text": redact(log.text, secrets) if secrets else log.text,
        "at": log.at,
    }


class RunHandler(_RunsHandler):
    """`POST /api/run[_wait]/{script|flow}/{path}`: the webhook endpoints.

    Options: `kind` ("script" or "flow") and `wait` (reply with the result).
    """

    async def post(self, path: str) -> None:
        kind: str = self.route["kind"]
        actor = self.authorize("run", path, kind)
        version = self.workspace.get(kind, path)  # type: ignore[arg-type]
        raw = self.request.body
        signing = self.workspace.webhook_signing(kind, path)  # type: ignore[arg-type]
        if signing is not None:
            config, secret = signing
            now = time.time()
            try:
                replay_key = verify(
                    self.request.headers.get(SIGNATURE_HEADER),
                    raw,
                    secret,
                    now=now,
                    tolerance_s=config.tolerance_s,
                )
            except SignatureError as exc:
                raise ApiError(401, str(exc)) from None
            if not await self.store.use_token(replay_key, now):
                raise ApiError(
                    401,
                    "this signed request was already accepted once (a replay); "
                    "sign every request afresh",
                )
        try:
            args = webhook_args(raw)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        trigger = {"token": "webhook", "run": "script"}.get(self.via or "", "manual")
        # A caller that waits for the result lets the run start while its record commits.
        options = {
            "path": path,
            "trigger": trigger,
            "actor": actor.name,
            "overlap": self.route["wait"],
        }
        if self.run_claims is not None:
            options["parent_run_id"] = self.run_claims.run_id
        if kind == "script":
            run = await self.dispatcher.submit_script(
                version.content, args, language=version.language, **options
            )
        else:
            run = await self.dispatcher.submit(version.content, args, **options)
        if not self.route["wait"]:
            self.reply({"job_id": run.id}, 202)
            return
        outcome = await self.dispatcher.wait(run.id)
        done = outcome.run
        if outcome.waiting == "approval" or done.status == "suspended":
            self.reply({"job_id": done.id, "status": "suspended"}, 202)
        elif done.status == "success" or done.recovered:
            self.reply({"job_id": done.id, "result": self.redacted(done.result)})
        else:
            error = self.redacted(done.error) or {"message": f"the run ended {done.status}"}
            self.reply({"job_id": done.id, "status": done.status, "error": error}, 500)


class JobHandler(_RunsHandler):
    """`GET /api/jobs/{id}`: the run with its steps and timings."""

    async def get(self, job_id: str) -> None:
        run = await self.visible_run(job_id)
        secrets = self.secrets()
        body = self.run_json(run, secrets)
        body["steps"] = [step_json(s, secrets) for s in await self.store.steps(run.id)]
        self.reply(body)


class JobLogsHandler(_RunsHandler):
    """`GET /api/jobs/{id}/logs?offset=N`: log pieces with `seq >= N`, and where to go on."""

    async def get(self, job_id: str) -> None:
        run = await self.visible_run(job_id)
        offset = self.query_int("offset", 0, high=2**62)
        logs = await self.store.logs(run.id, offset)
        secrets = self.secrets() if logs else []
        next_offset = logs[-1].seq + 1 if logs else offset
        self.reply(
            {
                "items": [log_json(log, secrets) for log in logs],
                "next_offset": next_offset,
                "status": run.status,
            }
        )


class JobCancelHandler(_RunsHandler):
    """`POST /api/jobs/{id}/cancel`: stops a queued, suspended or running run."""

    async def post(self, job_id: str) -> None:
        run = await self.visible_run(job_id)
        actor = self.signed_in()
        if actor.role != "admin" and run.actor != actor.name:
            self.authorize("run", run.path, "job")
        if run.status in FINISHED:
            raise ApiError(409, f"job {job_id} has already ended ({run.status})")
        cancelled = await self.dispatcher.cancel(run.id, reason=f"cancelled by {actor.name}")
        self.audit("job.cancel", run.path, job_id=run.id)
        self.reply(self.run_json(cancelled, self.secrets()))


class JobsHandler(_RunsHandler):
    """`GET /api/jobs?status=&path=&trigger=&kind=&since=&until=&limit=&offset=`."""

    async def get(self) -> None:
        actor = self.signed_in()
        status = self.get_query_argument("status", None) or None
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(
                400,
                f"query 'status' must be one of {', '.join(RUN_STATUSES)}; got {status!r}",
                field="status",
            )
        kind = self.get_query_argument("kind", None) or None
        if kind is not None and kind not in ("script", "flow"):
            raise ApiError(
                400, f"query 'kind' must be 'script' or 'flow', got {kind!r}", field="kind"
            )
        filters: dict[str, Any] = {
            "status": status,
            "path": self.get_query_argument("path", None) or None,
            "trigger": self.get_query_argument("trigger", None) or None,
            "kind": kind,
            "since": self.query_float("since"),
            "until": self.query_float("until"),
        }
        limit = self.query_int("limit", 50, low=1, high=500)
        offset = self.query_int("offset", 0, high=1_000_000)
        if actor.role == "admin":
            runs = await self.store.list_runs(**filters, limit=limit, offset=offset)
            total = await self.store.count_runs(**filters)
        else:
            visible: list[RunRecord] = []
            scanned = 0
            while scanned < _SCAN_LIMIT:
                chunk = await self.store.list_runs(**filters, limit=_SCAN_CHUNK, offset=scanned)
                visible.extend(r for r in chunk if self.can_see(r))
                scanned += len(chunk)
                if len(chunk) < _SCAN_CHUNK:
                    break
            total = len(visible)
            runs = visible[offset : offset + limit]
        secrets = self.secrets() if runs else []
        self.reply({"items": [self.run_json(r, secrets) for r in runs], "total": total})


class ApprovalsHandler(_RunsHandler):
    """`GET /api/approvals`: runs waiting on an approval the caller may act on, with the form."""

    async def get(self) -> None:
        items: list[dict[str, Any]] = []
        secrets = self.secrets()
        offset = 0
        while offset < _SCAN_LIMIT:
            chunk = await self.store.list_runs(status="suspended", limit=_SCAN_CHUNK, offset=offset)
            for run in chunk:
                if not self.can_see(run):
                    continue
                for step in _waiting_approvals(await self.store.steps(run.id)):
                    detail = step.detail or {}
                    items.append(
                        {
                            "job_id": run.id,
                            "path": run.path,
                            "kind": run.kind,
                            "actor": run.actor,
                            "args": self.redacted(run.args),
                            "created_at": run.created_at,
                            "step_key": step.key,
                            "step_id": step.step_id,
                            "message": detail.get("message"),
                            "form": detail.get("form"),
                            "required": int(detail.get("required", 1)),
                            "approvals": [
                                {"approver": a.get("approver", ""), "at": a.get("at")}
                                for a in detail.get("approvals", [])
                            ],
                            "expires_at": detail.get("expires_at"),
                        }
                    )
            offset += len(chunk)
            if len(chunk) < _SCAN_CHUNK:
                break
        self.reply({"items": redact_items(items, secrets), "total": len(items)})


def redact_items(items: list[dict[str, Any]], secrets: list[str]) -> list[dict[str, Any]]:
    return [redact_value(item, secrets) for item in items]


def _waiting_approvals(steps: list[StepRecord]) -> list[StepRecord]:
    latest: dict[str, StepRecord] = {}
    for step in steps:
        latest[step.key] = step
    return [s for s in latest.values() if s.status == "waiting" and s.kind == "approval"]


class ApproveHandler(_RunsHandler):
    """`POST /api/jobs/{id}/approve` (payload = body) and `/reject`; option `action`."""

    async def post(self, job_id: str) -> None:
        run = await self.visible_run(job_id)
        actor = self.authorize("run", run.path, "job") if _in_tree(run.path) else self.signed_in()
        if actor.role == "viewer":
            raise ApiError(403, f"{actor.name} is a viewer and cannot approve job {job_id}")
        waiting = _waiting_approvals(await self.store.steps(run.id))
        if run.status != "suspended" or not waiting:
            raise ApiError(409, f"job {job_id} is {run.status}, not waiting for an approval")
        if refusal := approval_refusal(actor, waiting[0].detail or {}, run.actor):
            raise ApiError(403, refusal)
        if self.route["action"] == "approve":
            payload = self.body_json()
            try:
                updated = await self.engine.resume(run.id, payload, approver=actor.name)
            except ApprovalError as exc:
                raise ApiError(409, str(exc)) from None
            self.dispatcher.wake()
            self.audit("job.approve", run.path, job_id=run.id)
        else:
            updated = await self.dispatcher.cancel(run.id, reason=f"rejected by {actor.name}")
            self.audit("job.reject", run.path, job_id=run.id)
        self.reply(self.run_json(updated, self.secrets()))


def _in_tree(path: str) -> bool:
    try:
        check_path(path)
    except WorkspaceError:
        return False
    return True


class LinkHandler(_RunsHandler):
    """`POST /api/resume/{token}` and `/api/cancel/{token}`: the signed link is the credential."""

    public = True

    async def post(self, token: str) -> None:
        expected = self.route["action"]
        payload = self.body_json()
        approver = self.actor.name if self.actor else ""
        try:
            # Checked before use: a cancel link posted to the resume URL must not cancel.
            claims = approvals.verify(self.engine.key, token, time.time())
            if claims.action != expected:
                raise ApiError(
                    400, f"this is a {claims.action} link; post it to /api/{claims.action}/"
                )
            action, run = await self.engine.use_link(token, payload, approver=approver)
        except ApprovalError as exc:
            raise ApiError(400, str(exc)) from None
        if action == "resume":
            self.dispatcher.wake()
        self.audit(f"job.link_{action}", run.path, job_id=run.id)
        self.reply({"action": action, "job_id": run.id, "status": run.status})
