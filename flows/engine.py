"""The durable flow engine: runs a flow's steps, committing each result before the next.

Execution is a deterministic replay. Every step has a key, its path in the run
(`fetch`, `each/3/show`, `route/0/many`); the store keeps each attempt of each key.
Running a run (first time, or after a crash or a resume) walks the flow from the top:
a key with a committed result returns it without running anything, so completed steps
never run twice; the first key without one runs. Expressions are pure functions of
stored results, so the walk takes the same branches every time. Sleeps and approvals
raise `Suspend`: the run is stored as suspended and holds no kernel.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flows import approvals
from flows.errors import ApprovalError, ExpressionError, FlowError, Suspend
from flows.execution import PendingCreate, RunExecution, StopBody, redact_json, with_defaults
from flows.flow_files import load_flow
from flows.kinds import StepFailed
from flows.records import FINISHED, RunRecord, StepRecord, evolve
from flows.scope import Scope
from flows.spec import FlowSpec
from flows.sql import sql_schema
from flows.store import ItemSource, RunStore
from flows.templates import render
from kernels.arguments import validate_arguments
from kernels.dedicated import DedicatedProcesses
from kernels.messages import Language
from kernels.runner import RunnerSession, ScriptRunner
from kernels.scripts import Script

ScriptLanguage = Literal["python", "bash", "sql"]

# An overlapped run (see FlowEngine._create) still going after this long gets its record.
OVERLAP_CREATE_AFTER_S = 0.05
# Parsed flows and step scripts kept per engine (least recently used dropped first).
_PARSED_FLOWS = 64
_PARSED_SCRIPTS = 1024


@dataclass(frozen=True)
class Outcome:
    """How far a run got this time: finished, or suspended waiting for something."""

    run: RunRecord
    waiting: Literal["approval", "sleep"] | None = None
    links: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.run.status in FINISHED


class FlowEngine:
    """Creates runs, executes them durably, resumes and cancels them."""

    def __init__(
        self,
        store: RunStore,
        runner: ScriptRunner,
        *,
        data_dir: Path,
        key: bytes,
        worker: str | None = None,
        base_url: str = "",
        redact: Callable[[str], str] | None = None,
        credentials: Callable[[RunRecord], tuple[str, str]] | None = None,
        items: ItemSource | None = None,
        dedicated: DedicatedProcesses | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.data_dir = data_dir
        self.key = key
        self.worker = worker or f"w-{uuid.uuid4().hex[:8]}"
        self.base_url = base_url.rstrip("/")
        # Applied to every log line before it is stored: the workspace hides secret values.
        self.redact = redact
        # (base URL, token) a run's client (`import gristmill`) calls the server with.
        self.credentials = credentials
        # Where `script:` / `flow:` steps find workspace items (the server); without it
        # (the CLI) they name files next to the flow.
        self.items = items
        # Where the runs of `dedicated: true` flows keep their processes; without it
        # (a bare engine) those runs get processes of their own, as every other run does.
        self.dedicated = dedicated
        self._fresh: set[str] = set()
        # Claimed runs started before their record is written (see `_create`), until they end.
        self._creating: dict[str, PendingCreate] = {}
        self._flows: dict[tuple[str, str], FlowSpec] = {}
        self._scripts: dict[tuple[str, str, str], Script] = {}

    async def submit(
        self,
        definition: str,
        args: dict[str, Any],
        *,
        path: str = "",
        trigger: str = "cli",
        actor: str = "",
        parent_run_id: str | None = None,
        claim: bool = False,
        overlap: bool = False,
        dedupe_key: str | None = None,
    ) -> RunRecord:
        """Validate and queue a run of the flow `definition` (YAML or JSON text).

        With `claim`, the run is created already claimed by this engine's worker (one
        commit instead of two) when the flow has no concurrency limit to respect; the
        caller must then execute it. The returned record's status says which happened.
        """
        flow = self.parse(definition, path)
        checked = flow.check_arguments(args, owner="the flow")
        flow_input = with_defaults(checked, flow.schema_)
        concurrency_key = None
        if flow.concurrency is not None:
            concurrency_key = path or "<flow>"
            if flow.concurrency.key:
                value = render(
                    flow.concurrency.key, {"flow_input": flow_input}, argument="concurrency.key"
                )
                concurrency_key = f"{concurrency_key}:{value}"
        run = RunRecord(
            id=uuid.uuid4().hex,
            kind="flow",
            path=path,
            definition=definition,
            args=flow_input,
            trigger=trigger,
            actor=actor,
            priority=flow.priority,
            concurrency_key=concurrency_key,
            concurrency_limit=flow.concurrency.limit if flow.concurrency else None,
            parent_run_id=parent_run_id,
            created_at=time.time(),
            dedupe_key=dedupe_key,
        )
        return await self._create(run, claim=claim and flow.concurrency is None, overlap=overlap)

    async def submit_script(
        self,
        source: str,
        args: dict[str, Any],
        *,
        path: str = "",
        language: ScriptLanguage = "python",
        trigger: str = "cli",
        actor: str = "",
        parent_run_id: str | None = None,
        claim: bool = False,
        overlap: bool = False,
        dedupe_key: str | None = None,
    ) -> RunRecord:
        """Validate and queue a run of one script (python, bash or sql).

        It is recorded like a flow run of one step with key `main`: its logs, result,
        error and timings land in the same history, and it resumes after a crash.
        Raises `ScriptError` or `ArgumentError` before anything is stored.
        """
        schema = self._script_schema(source, path, language)
        checked = validate_arguments(args, schema, owner=f"script {path or '<inline>'}")
        run = RunRecord(
            id=uuid.uuid4().hex,
            kind="script",
            path=path,
            definition=source,
            args=with_defaults(checked, schema),
            trigger=trigger,
            actor=actor,
            parent_run_id=parent_run_id,
            created_at=time.time(),
            language=language,
            dedupe_key=dedupe_key,
        )
        return await self._create(run, claim=claim, overlap=overlap)

    def _script_schema(self, source: str, path: str, language: ScriptLanguage) -> dict[str, Any]:
        if language == "sql":
            return sql_schema(source, path)
        return self.script(source, path or "<inline>", language).schema

    def _script_flow(self, run: RunRecord) -> FlowSpec:
        """A script run as a flow of one step `main` that takes the run's arguments."""
        kind = run.language or "python"
        args = {name: "${{ flow_input[" + json.dumps(name) + "] }}" for name in run.args}
        step: dict[str, Any] = {"id": "main", kind: run.definition, "args": args}
        return self.parse(json.dumps({"summary": run.path, "steps": [step]}), run.path)

    async def _create(self, run: RunRecord, *, claim: bool, overlap: bool = False) -> RunRecord:
        """Store a new run. With `claim` and `overlap`, the run starts before its record is
        durable: for a caller that waits for the end anyway (a webhook answered with the
        result), a run that ends within `OVERLAP_CREATE_AFTER_S` is written once, with its
        end, in one commit; a longer one gets its record then. A crash before that loses
        the record of a run whose caller got no answer."""
        if run.dedupe_key is not None:
            # Only the process that owns the store creates runs, one statement at a time
            # per key here, so check-then-insert cannot race with another creator.
            existing = await self.store.run_for_key(run.dedupe_key)
            if existing is not None:
                return existing
        if claim:
            now = time.time()
            run = evolve(
                run, status="running", worker=self.worker, started_at=now, heartbeat_at=now
            )
        if claim and overlap:
            self._creating[run.id] = PendingCreate(self.store, run, OVERLAP_CREATE_AFTER_S)
        else:
            await self.store.create_run(run, new_id=True)  # ids are random uuids
        self._fresh.add(run.id)
        return run

    def parse(self, definition: str, path: str) -> FlowSpec:
        """The flow in `definition`, parsed once per engine (a 40-step flow takes ~13 ms)."""
        key = (definition, path)
        flow = self._flows.pop(key, None)
        if flow is None:
            flow = load_flow(definition, path or "<flow>")
        self._flows[key] = flow  # most recently used last
        while len(self._flows) > _PARSED_FLOWS:
            self._flows.pop(next(iter(self._flows)))
        return flow

    def script(self, source: str, path: str, language: Language) -> Script:
        """A step's script, kept so its schema and requirements are worked out once."""
        key = (source, path, language)
        script = self._scripts.pop(key, None) or Script.inline(source, path=path, language=language)
        self._scripts[key] = script
        while len(self._scripts) > _PARSED_SCRIPTS:
            self._scripts.pop(next(iter(self._scripts)))
        return script

    async def ensure_recorded(self, run_id: str) -> None:
        """Make a run started before its record was written (see `_create`) durable now:
        for callers that are about to read or change it in the store."""
        pending = self._creating.get(run_id)
        if pending is not None:
            await pending.start()

    async def execute(self, run: RunRecord) -> Outcome:
        """Run (or resume) a claimed run until it finishes or suspends."""
        try:
            flow = (
                self._script_flow(run)
                if run.kind == "script"
                else self.parse(run.definition, run.path)
            )
            if flow.dedicated and self.dedicated is not None:
                # Processes kept for the next run of this flow, version and user.
                digest = hashlib.sha256(run.definition.encode()).hexdigest()
                shared = self.dedicated.session((run.path, digest, run.actor))
                return await self._execute(run, flow, shared)
            # The run's steps share run processes (one fork, not one per step); no
            # other run ever gets them.
            async with self.runner.session() as scripts:
                return await self._execute(run, flow, scripts)
        finally:
            self._creating.pop(run.id, None)

    async def _execute(self, run: RunRecord, flow: FlowSpec, scripts: RunnerSession) -> Outcome:
        if run.id in self._fresh:
            # Submitted by this process and never run: nothing stored to replay.
            self._fresh.discard(run.id)
            execution = RunExecution(self, run, flow, [], scripts)
            execution.creating = self._creating.get(run.id)
        else:
            execution = RunExecution(self, run, flow, await self.store.steps(run.id), scripts)
            execution.log_seq = max((log.seq for log in await self.store.logs(run.id)), default=0)
        started = run.started_at or time.time()
        if run.started_at is None:  # claim() sets it; a run handed over directly may not have it
            await self.store.update_run(run.id, started_at=started)
        scope = Scope(flow_input=dict(run.args))
        try:
            remaining = (
                None if flow.timeout is None else max(0.0, started + flow.timeout - time.time())
            )
            async with asyncio.timeout(remaining):
                try:
                    result = await execution.run_body(flow.steps, scope, "")
                except StopBody as stop:
                    result = stop.result
                if flow.output is not None:
                    result = render(flow.output, scope.names(), argument="output")
            return await self._finish(execution, status="success", result=result)
        except Suspend as suspend:
            await execution.settle()
            await self.store.update_run(
                run.id, status="suspended", wake_at=suspend.wake_at, worker=None
            )
            updated = evolve(run, status="suspended", wake_at=suspend.wake_at)
            return Outcome(updated, waiting=execution.waiting, links=execution.links)
        except StepFailed as failure:
            return await self._on_failure(execution, scope, failure.error)
        except TimeoutError:
            error = {
                "message": f"the flow took longer than its timeout of {flow.timeout:g} s",
                "name": "Timeout",
                "step_id": None,
            }
            return await self._on_failure(execution, scope, error)
        except (ExpressionError, FlowError) as exc:
            return await self._on_failure(
                execution, scope, {"message": str(exc), "name": type(exc).__name__, "step_id": None}
            )
        except asyncio.CancelledError:
            await asyncio.shield(execution.settle())
            raise
        except Exception as exc:  # a bug of ours: record it on the run rather than lose it
            error = {
                "message": f"internal error: {exc}",
                "name": type(exc).__name__,
                "traceback": traceback.format_exc(),
            }
            return await self._finish(execution, status="failure", error=error)

    async def _on_failure(
        self, execution: RunExecution, scope: Scope, error: dict[str, Any]
    ) -> Outcome:
        flow = execution.flow
        if not flow.on_failure:
            return await self._finish(execution, status="failure", error=error)
        handler_scope = scope.nested(error=error)
        try:
            result = await execution.run_body(flow.on_failure, handler_scope, "on_failure/")
        except StopBody as stop:
            result = stop.result
        except StepFailed as failure:
            return await self._finish(
                execution, status="failure", error={**error, "handler_error": failure.error}
            )
        except Suspend:
            return await self._finish(
                execution,
                status="failure",
                error={
                    **error,
                    "handler_error": {
                        "message": "an on_failure handler cannot wait for approval or sleep"
                    },
                },
            )
        return await self._finish(
            execution, status="success", result=result, error=error, recovered=True
        )

    async def _finish(
        self,
        execution: RunExecution,
        *,
        status: Literal["success", "failure"],
        result: Any = None,
        error: dict[str, Any] | None = None,
        recovered: bool = False,
    ) -> Outcome:
        last_steps = execution.take_deferred()
        unwritten = execution.creating.take_unwritten() if execution.creating else None
        fields: dict[str, Any] = {
            "status": status,
            "result": result,
            "error": error,
            "recovered": recovered,
            "finished_at": time.time(),
            "worker": None,
            "wake_at": None,
        }
        stored = dict(fields)
        if self.redact is not None:  # secret values never reach the store
            stored["result"] = redact_json(result, self.redact)
            stored["error"] = redact_json(error, self.redact)
        create = None if unwritten is None else evolve(unwritten, **stored)
        # Queued together, so the logs, the last step and the run's end share a commit.
        await asyncio.gather(
            execution.settle(),
            self.store.finish_run(execution.run.id, last_steps, create=create, **stored),
        )
        return Outcome(evolve(execution.run, **fields))

    # ------------------------------------------------------------ approvals

    def approval_links(self, run_id: str, step_key: str, expires_at: float) -> dict[str, str]:
        """Fresh signed resume and cancel links (tokens, or URLs when a base URL is set)."""
        links: dict[str, str] = {}
        actions: tuple[approvals.Action, ...] = ("resume", "cancel")
        for action in actions:
            token = approvals.sign(self.key, run_id, step_key, action, expires_at)
            links[action] = f"{self.base_url}/api/{action}/{token}" if self.base_url else token
        return links

    async def resume(
        self, run_id: str, payload: Any = None, *, approver: str = "", step_key: str | None = None
    ) -> RunRecord:
        """Record one approval of the run's waiting step; queue the run when enough are in."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise ApprovalError(f"no run with id {run_id!r}")
        if run.status != "suspended":
            raise ApprovalError(f"run {run_id} is {run.status}, not waiting for an approval")
        waiting = [
            s for s in _latest_attempts(await self.store.steps(run_id)) if s.status == "waiting"
        ]
        if step_key:  # "" = a link for whichever step of the run waits (get_resume_urls)
            waiting = [s for s in waiting if s.key == step_key]
        if not waiting:
            raise ApprovalError(
                f"run {run_id} has no step waiting for an approval"
                + (f" at {step_key!r}" if step_key else "")
            )
        step = waiting[0]
        detail = dict(step.detail or {})
        if detail.get("expires_at") is not None and time.time() > detail["expires_at"]:
            raise ApprovalError(f"the approval of step '{step.step_id}' timed out")
        form = detail.get("form")
        if form:
            payload = validate_arguments(
                payload if payload is not None else {}, form, owner="the approval form"
            )
        given = list(detail.get("approvals", []))
        if approver and any(a.get("approver") == approver for a in given):
            raise ApprovalError(
                f"{approver} has already approved step '{step.step_id}'; it needs {detail.get('required', 1)} different approvers"
            )
        given.append({"approver": approver, "at": time.time(), "payload": payload})
        detail["approvals"] = given
        if len(given) >= int(detail.get("required", 1)):
            result = payload
            await self.store.record_step(
                evolve(
                    step, status="success", result=result, finished_at=time.time(), detail=detail
                )
            )
            await self.store.update_run(run_id, status="queued", wake_at=None)
        else:
            await self.store.record_step(evolve(step, detail=detail))
        updated = await self.store.get_run(run_id)
        assert updated is not None
        return updated

    async def use_link(
        self, token: str, payload: Any = None, *, approver: str = ""
    ) -> tuple[str, RunRecord]:
        """Act on a signed link (resume or cancel), once. Returns the action and the run."""
        claims = approvals.verify(self.key, token, time.time())
        if not await self.store.use_token(claims.nonce, time.time()):
            raise ApprovalError("this approval link has already been used")
        if claims.action == "cancel":
            return "cancel", await self.cancel(
                claims.run_id,
                reason=f"cancelled through its approval link{f' by {approver}' if approver else ''}",
            )
        return "resume", await self.resume(
            claims.run_id, payload, approver=approver, step_key=claims.step_key
        )

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> RunRecord:
        """Cancel a run that is not running in another process (queued or suspended)."""
        return await cancel_run(self.store, run_id, reason=reason)


def _latest_attempts(attempts: list[StepRecord]) -> list[StepRecord]:
    latest: dict[str, StepRecord] = {}
    for attempt in attempts:
        latest[attempt.key] = attempt
    return list(latest.values())


async def cancel_run(store: RunStore, run_id: str, *, reason: str = "cancelled") -> RunRecord:
    """Cancel a run that is not running in another process (queued or suspended)."""
    run = await store.get_run(run_id)
    if run is None:
        raise ApprovalError(f"no run with id {run_id!r}")
    if run.status in FINISHED:
        raise ApprovalError(f"run {run_id} has already ended ({run.status})")
    error = {"message": reason, "name": "Cancelled"}
    await store.update_run(
        run_id,
        status="cancelled",
        error=error,
        finished_at=time.time(),
        worker=None,
        wake_at=None,
    )
    for step in _latest_attempts(await store.steps(run_id)):
        if step.status in ("waiting", "running"):
            await store.record_step(evolve(step, status="cancelled", finished_at=time.time()))
    updated = await store.get_run(run_id)
    assert updated is not None
    return updated
