"""One run being executed: replay of committed steps, attempts, retries and records.

`RunExecution` holds a run's state while the engine works on it (one task per run).
Every step has a key, its path in the run (`fetch`, `each/3/show`, `route/0/many`); a
key with a committed result returns it without running anything, so completed steps
never run twice; the first key without one runs, with its options (skip_if, mock,
cache_ttl, retry, timeout, continue_on_error), and its outcome is committed before the
next step starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flows.errors import ApprovalError, ExpressionError, FlowError, SqlError, Suspend
from flows.expressions import evaluate
from flows.kinds import KINDS, WAITING_KINDS, StepFailed
from flows.records import LogRecord, RunRecord, StepRecord, evolve
from flows.scope import Scope
from flows.spec import FlowSpec, StepSpec
from flows.store import RunStore
from flows.templates import is_template, render
from kernels.errors import ArgumentError, KernelError
from kernels.runner import RunnerSession

if TYPE_CHECKING:
    from flows.engine import FlowEngine

# A step whose process died mid-run is run again; this many interruptions in a row
# mean the step itself kills its process, so it fails instead of looping forever.
_MAX_INTERRUPTIONS = 3
# A step still running after this long gets its `running` record (see _attempts).
_RUNNING_RECORD_AFTER_S = 0.25
# Output of a running step is stored at most this long after it was printed.
_LOG_FLUSH_AFTER_S = 0.2


class RunExecution:
    """The state of one run while the engine works on it (one task, one run)."""

    def __init__(
        self,
        engine: FlowEngine,
        run: RunRecord,
        flow: FlowSpec,
        attempts: list[StepRecord],
        scripts: RunnerSession,
    ) -> None:
        self.engine = engine
        self.scripts = scripts  # runs this run's code steps, in processes only it uses
        self.run = run
        self.flow = flow
        self.base_dir = Path(run.path).parent if run.path else Path.cwd()
        self.latest: dict[str, StepRecord] = {}
        self.interruptions: dict[str, int] = {}
        for attempt in attempts:  # in the order they started: the last one per key wins
            if attempt.status == "running":
                self.interruptions[attempt.key] = self.interruptions.get(attempt.key, 0) + 1
            else:
                self.interruptions.pop(attempt.key, None)
            self.latest[attempt.key] = attempt
        self.log_seq = 0
        self._pending_logs: list[LogRecord] = []
        self._deferred: list[tuple[StepRecord, bool]] = []
        self.creating: PendingCreate | None = None  # the run's own record, not yet durable
        self._background: set[asyncio.Task[None]] = set()
        self.waiting: Literal["approval", "sleep"] | None = None
        self.links: dict[str, str] = {}

    @property
    def store(self) -> RunStore:
        return self.engine.store

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
                raise StopBody(result)
        return result

    async def run_step(self, step: StepSpec, scope: Scope, key: str) -> Any:
        """Run one step (with its options), or replay its committed result."""
        # Whatever ended before this step is durable before this step starts.
        await self.commit_deferred()
        latest = self.latest.get(key)
        if latest is not None and latest.status in ("success", "skipped"):
            return latest.result
        if latest is not None and latest.status == "failure" and (latest.detail or {}).get("final"):
            if step.continue_on_error:
                return latest.result
            raise StepFailed(latest.error or {"message": "failed"})
        if step.skip_if and self.evaluate(step.skip_if, scope, step, "skip_if"):
            await self._instant(step, key, "skipped")
            return None
        if step.kind in WAITING_KINDS:
            await self.scripts.release()  # a sleeping or suspended run holds no kernel
            return await WAITING_KINDS[step.kind](self, step, scope, key)
        if step.mock is not None and step.mock.enabled:
            await self._instant(step, key, "success", result=step.mock.value, detail={"mock": True})
            return step.mock.value
        try:
            return await self._attempts(step, scope, key)
        except StepFailed as failure:
            if step.continue_on_error:
                return {"error": failure.error}
            raise

    async def _instant(self, step: StepSpec, key: str, status: Any, **fields: Any) -> None:
        """Commit a step that ends as it starts (skipped, mocked)."""
        now = time.time()
        attempt = self._next_attempt(key)
        record = StepRecord(
            self.run.id, key, step.id, step.kind, attempt, status, started_at=now, finished_at=now
        )
        await self.record(evolve(record, **fields), new=True)

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
                self.record_soon(evolve(running, status="waiting"), new=not written)
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
                ended = evolve(
                    running, status="failure", args=args, error=error, finished_at=time.time()
                )
                await self.record(evolve(ended, detail={"failures": failures}), new=not written)
                assert retry is not None
                await asyncio.sleep(retry.delay_before(failures + 1))
                continue
            ended = evolve(
                running, status="success", args=args, result=result, finished_at=time.time()
            )
            # Committed by the next step's start, or with the run's end when this was the
            # last step (one commit instead of two for a run's last step).
            self.defer(evolve(ended, detail={"cached": True} if hit else None), new=not written)
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
        """A condition or a loop source: `${{ expr }}` or a bare expression; other values as is."""
        if not isinstance(expression, str):
            return expression
        names = scope.names(**extra)
        if is_template(expression):
            return render(expression, names, step=step.id, argument=argument)
        return evaluate(expression, names, step=step.id, argument=argument)

    def render_args(self, step: StepSpec, scope: Scope) -> dict[str, Any]:
        return {
            name: render(value, scope.names(), step=step.id, argument=name)
            for name, value in step.args.items()
        }

    # ------------------------------------------------------------ store writes

    async def record(self, step: StepRecord, *, new: bool = False) -> None:
        """Commit a step attempt (durable when this returns); `new` as in RunStore.record_step."""
        self.latest[step.key] = step
        await self.store.record_step(self.stored(step), new=new)

    def defer(self, step: StepRecord, *, new: bool = False) -> None:
        """Keep a finished attempt for the next `commit_deferred` (or the run's end)."""
        self.latest[step.key] = step
        self._deferred.append((step, new))

    def take_deferred(self) -> list[tuple[StepRecord, bool]]:
        """The attempts not committed yet; the caller commits them (`RunStore.finish_run`)."""
        deferred, self._deferred = self._deferred, []
        return [(self.stored(step), new) for step, new in deferred]

    def stored(self, step: StepRecord) -> StepRecord:
        """The attempt as the store keeps it: secret values in its arguments, result
        and error hidden. The run goes on with the real values in memory; a run resumed after a
        crash sees the hidden ones."""
        redact = self.engine.redact
        if redact is None or (step.result is None and step.error is None and not step.args):
            return step
        return evolve(
            step,
            args=redact_json(step.args, redact),
            result=redact_json(step.result, redact),
            error=redact_json(step.error, redact),
        )

    async def commit_deferred(self) -> None:
        """Commit the finished attempts kept by `defer` (durable when this returns)."""
        if self._deferred:
            deferred = self.take_deferred()
            await asyncio.gather(
                *(self.store.record_step(self.stored(step), new=new) for step, new in deferred)
            )

    def record_soon(self, step: StepRecord, *, new: bool = False) -> None:
        """Queue a step attempt for the next group commit without waiting for it."""
        self.latest[step.key] = step
        self._in_background(self.store.record_step(self.stored(step), new=new))

    def log(
        self, key: str, stream: Literal["stdout", "stderr", "display", "system"], text: str
    ) -> None:
        self.log_seq += 1
        if self.engine.redact is not None:
            text = self.engine.redact(text)
        self._pending_logs.append(
            LogRecord(self.run.id, key, self.log_seq, stream, text, time.time())
        )
        if len(self._pending_logs) >= 64:
            self._in_background(self.flush_logs())
        elif len(self._pending_logs) == 1:
            # Pages follow a running step's output: what it prints is stored within a
            # fraction of a second, batched, rather than only when the step ends.
            asyncio.get_running_loop().call_later(
                _LOG_FLUSH_AFTER_S, lambda: self._in_background(self.flush_logs())
            )

    async def flush_logs(self) -> None:
        if self._pending_logs:
            pending, self._pending_logs = self._pending_logs, []
            await self.store.append_logs(pending)

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Make everything of this execution durable: logs, deferred and queued writes."""
        if self.creating is not None:
            creating, self.creating = self.creating, None
            await creating.start()
        await self.commit_deferred()
        await self.flush_logs()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class PendingCreate:
    """A claimed run's record that is written only if the run lasts (FlowEngine._create)."""

    def __init__(self, store: RunStore, run: RunRecord, after_s: float) -> None:
        self.run = run
        self._store = store
        self._task: asyncio.Future[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after_s, self.start)

    def start(self) -> asyncio.Future[None]:
        """Write the record now (once); the future is done when it is durable."""
        if self._task is None:
            self._timer.cancel()
            self._task = asyncio.ensure_future(self._store.create_run(self.run, new_id=True))
        return self._task

    def take_unwritten(self) -> RunRecord | None:
        """The record if it was never written: the caller writes it with the run's end."""
        if self._task is not None:
            return None
        self._timer.cancel()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        self._task = done
        return self.run


def redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` with `redact` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_json(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, redact) for v in value]
    return value


class StopBody(BaseException):
    """`stop_after_if` held: the enclosing body (a loop iteration, or the flow) ends here."""

    def __init__(self, result: Any) -> None:
        super().__init__("stop_after_if")
        self.result = result


def with_defaults(args: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    # Flows have no Python signature to apply defaults, so the schema's defaults apply here.
    filled = dict(args)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled
