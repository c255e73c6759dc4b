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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from flows import approvals
from flows.errors import ApprovalError, ExpressionError, FlowError, SqlError, Suspend
from flows.expressions import evaluate, render
from flows.kinds import KINDS, WAITING_KINDS, StepFailed
from flows.records import FINISHED, LogRecord, RunRecord, StepRecord
from flows.scope import Scope
from flows.spec import FlowSpec, StepSpec, load_flow
from flows.store import RunStore
from kernels.arguments import validate_arguments
from kernels.errors import ArgumentError, KernelError
from kernels.messages import Language
from kernels.runner import ScriptRunner
from kernels.scripts import Script

# A step whose process died mid-run is run again; this many interruptions in a row
# mean the step itself kills its process, so it fails instead of looping forever.
_MAX_INTERRUPTIONS = 3
# A step still running after this long gets its `running` record (see _attempts).
_RUNNING_RECORD_AFTER_S = 0.25
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


class RunExecution:
    """The state of one run while the engine works on it (one task, one run)."""

    def __init__(
        self, engine: FlowEngine, run: RunRecord, flow: FlowSpec, attempts: list[StepRecord]
    ) -> None:
        self.engine = engine
        self.run = run
        self.flow = flow
        self.base_dir = Path(run.path).parent if run.path else Path.cwd()
        self.latest: dict[str, StepRecord] = {}
        self.interruptions: dict[str, int] = {}
        for attempt in attempts:  # in the order they started: the last one per key wins
            if attempt.status == "running":
                self.interruptions[attempt.key] = self.interruptions.get(attempt.key, 0) + 1
            elif attempt.key in self.interruptions and attempt.status != "running":
                self.interruptions[attempt.key] = 0
            self.latest[attempt.key] = attempt
        self.log_seq = 0
        self._pending_logs: list[LogRecord] = []
        self._background: set[asyncio.Task[None]] = set()
        self.waiting: Literal["approval", "sleep"] | None = None
        self.links: dict[str, str] = {}

    @property
    def store(self) -> RunStore:
        return self.engine.store

    @property
    def runner(self) -> ScriptRunner:
        return self.engine.runner

    @property
    def data_dir(self) -> Path:
        return self.engine.data_dir

    # ------------------------------------------------------------ bodies and steps

    async def run_body(self, steps: list[StepSpec], scope: Scope, prefix: str) -> Any:
        """Run `steps` in order in `scope`; the result is the last step's."""
        result: Any = None
        for step in steps:
            key = f"{prefix}{step.id}"
            result = await self.run_step(step, scope, key)
            scope.set_result(step.id, result)
            if step.kind == "approval":
                scope.resume = result  # the approval's payload, as `resume` in later steps
            if step.stop_after_if and self.evaluate(
                step.stop_after_if, scope, step, "stop_after_if", result=result
            ):
                raise _StopBody(result)
        return result

    async def run_step(self, step: StepSpec, scope: Scope, key: str) -> Any:
        """Run one step (with its options), or replay its committed result."""
        latest = self.latest.get(key)
        if latest is not None and latest.status in ("success", "skipped"):
            return latest.result
        if latest is not None and latest.status == "failure" and (latest.detail or {}).get("final"):
            if step.continue_on_error:
                return latest.result
            raise StepFailed(latest.error or {"message": "failed"})
        if step.skip_if and self.evaluate(step.skip_if, scope, step, "skip_if"):
            await self.record(
                StepRecord(
                    self.run.id,
                    key,
                    step.id,
                    step.kind,
                    self._next_attempt(key),
                    "skipped",
                    started_at=time.time(),
                    finished_at=time.time(),
                )
            )
            return None
        if step.kind in WAITING_KINDS:
            return await WAITING_KINDS[step.kind](self, step, scope, key)
        if step.mock is not None and step.mock.enabled:
            await self.record(
                StepRecord(
                    self.run.id,
                    key,
                    step.id,
                    step.kind,
                    self._next_attempt(key),
                    "success",
                    result=step.mock.value,
                    started_at=time.time(),
                    finished_at=time.time(),
                    detail={"mock": True},
                )
            )
            return step.mock.value
        try:
            return await self._attempts(step, scope, key)
        except StepFailed as failure:
            if step.continue_on_error:
                return {"error": failure.error}
            raise

    async def _attempts(self, step: StepSpec, scope: Scope, key: str) -> Any:
        retry = step.retry
        attempts = retry.attempts if retry is not None else 1
        failures_so_far = 0  # failed attempts before this replay
        latest = self.latest.get(key)
        if latest is not None and latest.status == "failure":
            failures_so_far = int((latest.detail or {}).get("failures", latest.attempt))
        interrupted = self.interruptions.get(key, 0)
        if interrupted >= _MAX_INTERRUPTIONS:
            error: dict[str, Any] = {
                "message": f"the process running step '{step.id}' died {interrupted} times in a row while running it",
                "name": "Interrupted",
                "step_id": step.id,
                "key": key,
            }
            await self._fail_final(step, key, error, failures_so_far)
            raise StepFailed(error)
        failures = failures_so_far
        while True:
            attempt = self._next_attempt(key)
            started = time.time()
            args: dict[str, Any] | None = None
            running = StepRecord(
                self.run.id, key, step.id, step.kind, attempt, "running", started_at=started
            )
            # The `running` record only counts attempts cut short by a crash. A step that
            # ends quickly never needs it, and writing it costs a commit that competes with
            # the step for the machine; so it is written, without waiting, only once the
            # step has run for a while.
            self.latest[key] = running
            written: list[bool] = []  # whether this attempt has a row yet

            def mark(record: StepRecord = running, written: list[bool] = written) -> None:
                written.append(True)
                self.record_soon(record, new=True)

            mark_running = asyncio.get_running_loop().call_later(_RUNNING_RECORD_AFTER_S, mark)
            try:
                try:
                    try:
                        args = self.render_args(step, scope)
                    except ExpressionError as exc:
                        raise StepFailed(
                            {"message": str(exc), "name": "ExpressionError"}, retryable=False
                        ) from None
                    cache_key = self._cache_key(step, key, args) if step.cache_ttl else None
                    hit, result = (
                        await self.store.cache_get(cache_key, time.time())
                        if cache_key
                        else (False, None)
                    )
                    if not hit:
                        result = await self._execute(step, scope, key, args)
                        if cache_key and step.cache_ttl:
                            await self.store.cache_put(
                                cache_key, result, time.time() + step.cache_ttl
                            )
                finally:
                    mark_running.cancel()
            except Suspend:
                # A body inside this step waits; it was not interrupted.
                self.record_soon(replace(running, status="waiting"), new=not written)
                raise
            except StepFailed as failure:
                failures += 1
                error = {
                    **failure.error,
                    "step_id": step.id,
                    "key": key,
                    "attempt": attempt,
                }
                retryable = (
                    failure.retryable
                    and failures < attempts
                    and self._retry_wanted(step, scope, error)
                )
                if not retryable:
                    await self._fail_final(
                        step,
                        key,
                        error,
                        failures,
                        args=args,
                        started=started,
                        attempt=attempt,
                        new=not written,
                    )
                    raise StepFailed(error) from None
                ended = replace(
                    running, status="failure", args=args, error=error, finished_at=time.time()
                )
                await self.record(replace(ended, detail={"failures": failures}), new=not written)
                assert retry is not None
                await asyncio.sleep(retry.delay_before(failures + 1))
                continue
            await self.flush_logs()
            ended = replace(
                running, status="success", args=args, result=result, finished_at=time.time()
            )
            await self.record(
                replace(ended, detail={"cached": True} if hit else None), new=not written
            )
            return result

    async def _execute(self, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]) -> Any:
        handler = KINDS[step.kind]
        try:
            if step.timeout is not None and step.kind not in ("python", "bash", "script"):
                async with asyncio.timeout(step.timeout):
                    return await handler(self, step, scope, key, args)
            return await handler(self, step, scope, key, args)
        except StepFailed:
            raise
        except TimeoutError:
            raise StepFailed(
                {
                    "message": f"step '{step.id}' took longer than its timeout of {step.timeout:g} s",
                    "name": "Timeout",
                }
            ) from None
        except (ExpressionError, ArgumentError, SqlError, ApprovalError) as exc:
            raise StepFailed(
                {"message": str(exc), "name": type(exc).__name__},
                retryable=isinstance(exc, SqlError),
            ) from None
        except (FlowError, KernelError) as exc:
            raise StepFailed({"message": str(exc), "name": type(exc).__name__}) from None

    def _retry_wanted(self, step: StepSpec, scope: Scope, error: dict[str, Any]) -> bool:
        assert step.retry is not None
        if not step.retry.when:
            return True
        return bool(self.evaluate(step.retry.when, scope, step, "retry.when", error=error))

    async def _fail_final(
        self,
        step: StepSpec,
        key: str,
        error: dict[str, Any],
        failures: int,
        *,
        args: dict[str, Any] | None = None,
        started: float | None = None,
        attempt: int | None = None,
        new: bool = False,
    ) -> None:
        await self.flush_logs()
        await self.record(
            StepRecord(
                self.run.id,
                key,
                step.id,
                step.kind,
                attempt or self._next_attempt(key),
                "failure",
                args=args,
                result={"error": error},
                error=error,
                started_at=started or time.time(),
                finished_at=time.time(),
                detail={"final": True, "failures": failures},
            ),
            new=new,
        )

    def _next_attempt(self, key: str) -> int:
        latest = self.latest.get(key)
        return 1 if latest is None else latest.attempt + 1

    def _cache_key(self, step: StepSpec, key: str, args: dict[str, Any]) -> str:
        code = step.python or step.sql or step.bash or step.script or step.flow or ""
        material = json.dumps(
            [self.run.path, key, step.kind, code, args], sort_keys=True, default=str
        )
        return hashlib.sha256(material.encode()).hexdigest()

    # ------------------------------------------------------------ expressions

    def evaluate(
        self, expression: Any, scope: Scope, step: StepSpec, argument: str, **extra: Any
    ) -> Any:
        if isinstance(expression, str):
            text = expression.strip()
            if text.startswith("${{") and text.endswith("}}"):
                return render(text, scope.names(**extra), step=step.id, argument=argument)
            return evaluate(text, scope.names(**extra), step=step.id, argument=argument)
        return expression

    def render_args(self, step: StepSpec, scope: Scope) -> dict[str, Any]:
        return {
            name: render(value, scope.names(), step=step.id, argument=name)
            for name, value in step.args.items()
        }

    # ------------------------------------------------------------ store writes

    async def record(self, step: StepRecord, *, new: bool = False) -> None:
        """Commit a step attempt (durable when this returns); `new` as in RunStore.record_step."""
        self.latest[step.key] = step
        await self.store.record_step(step, new=new)

    def record_soon(self, step: StepRecord, *, new: bool = False) -> None:
        """Queue a step attempt for the next group commit without waiting for it."""
        self.latest[step.key] = step
        self._in_background(self.store.record_step(step, new=new))

    def log(
        self, key: str, stream: Literal["stdout", "stderr", "display", "system"], text: str
    ) -> None:
        self.log_seq += 1
        self._pending_logs.append(
            LogRecord(self.run.id, key, self.log_seq, stream, text, time.time())
        )
        if len(self._pending_logs) >= 64:
            self._in_background(self.flush_logs())

    async def flush_logs(self) -> None:
        if self._pending_logs:
            pending, self._pending_logs = self._pending_logs, []
            await self.store.append_logs(pending)

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        await self.flush_logs()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class _StopBody(BaseException):
    """`stop_after_if` held: the enclosing body (a loop iteration, or the flow) ends here."""

    def __init__(self, result: Any) -> None:
        super().__init__("stop_after_if")
        self.result = result


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
    ) -> None:
        self.store = store
        self.runner = runner
        self.data_dir = data_dir
        self.key = key
        self.worker = worker or f"w-{uuid.uuid4().hex[:8]}"
        self.base_url = base_url.rstrip("/")
        self._fresh: set[str] = set()
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
    ) -> RunRecord:
        """Validate and queue a run of the flow `definition` (YAML or JSON text).

        With `claim`, the run is created already claimed by this engine's worker (one
        commit instead of two) when the flow has no concurrency limit to respect; the
        caller must then execute it. The returned record's status says which happened.
        """
        flow = self.parse(definition, path)
        checked = validate_arguments(args, flow.schema_, owner="the flow")
        flow_input = _with_defaults(checked, flow.schema_)
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
        )
        if claim and flow.concurrency is None:
            now = time.time()
            run = replace(
                run, status="running", worker=self.worker, started_at=now, heartbeat_at=now
            )
        await self.store.create_run(run)
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

    async def execute(self, run: RunRecord) -> Outcome:
        """Run (or resume) a claimed run until it finishes or suspends."""
        flow = self.parse(run.definition, run.path)
        if run.id in self._fresh:
            # Submitted by this process and never run: nothing stored to replay.
            self._fresh.discard(run.id)
            execution = RunExecution(self, run, flow, [])
        else:
            execution = RunExecution(self, run, flow, await self.store.steps(run.id))
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
                except _StopBody as stop:
                    result = stop.result
                if flow.output is not None:
                    result = render(flow.output, scope.names(), argument="output")
            return await self._finish(execution, status="success", result=result)
        except Suspend as suspend:
            await execution.settle()
            await self.store.update_run(
                run.id, status="suspended", wake_at=suspend.wake_at, worker=None
            )
            updated = replace(run, status="suspended", wake_at=suspend.wake_at)
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
        except _StopBody as stop:
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
        await execution.settle()
        finished = time.time()
        await self.store.update_run(
            execution.run.id,
            status=status,
            result=result,
            error=error,
            recovered=recovered,
            finished_at=finished,
            worker=None,
            wake_at=None,
        )
        run = replace(
            execution.run,
            status=status,
            result=result,
            error=error,
            recovered=recovered,
            finished_at=finished,
            worker=None,
            wake_at=None,
        )
        return Outcome(run)

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
        if step_key is not None:
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
                replace(
                    step, status="success", result=result, finished_at=time.time(), detail=detail
                )
            )
            await self.store.update_run(run_id, status="queued", wake_at=None)
        else:
            await self.store.record_step(replace(step, detail=detail))
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


def _with_defaults(args: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    # Flows have no Python signature to apply defaults, so the schema's defaults apply here.
    filled = dict(args)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled


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
            await store.record_step(replace(step, status="cancelled", finished_at=time.time()))
    updated = await store.get_run(run_id)
    assert updated is not None
    return updated
