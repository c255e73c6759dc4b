"""Step kinds, in a registry keyed by kind: what each kind does when its step runs.

Each handler gets the run's execution state, the step, the scope, the step's key and
its rendered arguments, and returns the step's result or raises `StepFailed`. Control
kinds (loops, branches, subflows) run bodies through `RunExecution.run_body`, so every
step inside them is committed and replayed like a top-level one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from flows.errors import FlowError, Suspend
from flows.flow_files import load_flow_file
from flows.records import StepRecord
from flows.scope import Scope
from flows.spec import StepSpec
from kernels.messages import Language, RunContext, RunEvent, RunLimits, RunResult, StreamEvent
from kernels.scripts import Script

if TYPE_CHECKING:
    from flows.execution import RunExecution

# A `while: true` loop with neither `max_iterations` nor a `stop_after_if` that ever
# holds stops here, with an error rather than forever.
WHILE_LIMIT = 10_000
# An approval without a timeout still needs links that expire.
DEFAULT_APPROVAL_LINK_S = 7 * 24 * 3600


class StepFailed(FlowError):
    """A step failed. `error` is the JSON error object (message, name, traceback...)."""

    def __init__(self, error: dict[str, Any], *, retryable: bool = True) -> None:
        super().__init__(str(error.get("message", "step failed")))
        self.error = error
        self.retryable = retryable


Handler = Callable[["RunExecution", StepSpec, Scope, str, dict[str, Any]], Awaitable[Any]]


# ---------------------------------------------------------------- code


async def run_code(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    """Inline `python:` or `bash:` code, run as a script on a leased kernel."""
    language: Language = "bash" if step.kind == "bash" else "python"
    source = step.bash if language == "bash" else step.python
    assert source is not None
    script = ex.engine.script(source, _code_path(ex, key), language)
    return await _run_script(ex, step, key, script, args)


async def run_sql_step(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    assert step.sql is not None
    return await _sql(ex, step.sql, args, step.mode)


async def run_script_file(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    assert step.script is not None
    if ex.engine.items is not None:
        found = ex.engine.items.script(step.script, ex.run.actor)
        if found is None:
            raise _no_item("script", step.script, ex.run.actor)
        source, language = found
        if language == "sql":
            return await _sql_script(ex, source, step.script, args)
        script = ex.engine.script(source, step.script, "bash" if language == "bash" else "python")
        return await _run_script(ex, step, key, script, args)
    path = ex.base_dir / step.script
    if path.suffix == ".sql":
        try:
            source = path.read_text()
        except OSError as exc:
            raise StepFailed(
                {"message": f"cannot read {path}: {exc.strerror}", "name": "ScriptError"},
                retryable=False,
            ) from None
        return await _sql_script(ex, source, str(path), args)
    return await _run_script(ex, step, key, Script.from_file(path), args)


async def _sql_script(ex: RunExecution, source: str, path: str, args: dict[str, Any]) -> Any:
    from flows.sql import sql_schema
    from kernels.arguments import validate_arguments

    checked = validate_arguments(args, sql_schema(source, path), owner=path)
    return await _sql(ex, source, checked, "read")


def _no_item(kind: str, path: str, actor: str) -> StepFailed:
    return StepFailed(
        {
            "message": f"no {kind} at '{path}' that {actor or 'this run'} may run; "
            f"a {kind} step names a workspace path (u/<user>/<name> or f/<folder>/<name>)",
            "name": "NotFound",
        },
        retryable=False,
    )


async def _run_script(
    ex: RunExecution, step: StepSpec, key: str, script: Script, args: dict[str, Any]
) -> Any:
    def on_event(event: RunEvent) -> None:
        if isinstance(event, StreamEvent):
            ex.log(key, event.name, event.text)
        else:
            ex.log(key, "display", str(event.data.get("text/plain", "")))

    result: RunResult = await ex.scripts.run(
        script,
        args,
        prepare=_resource_resolver(ex, script),
        context=_context(ex, key),
        limits=RunLimits(timeout_s=step.timeout),
        on_event=on_event,
    )
    if result.ok:
        return result.value
    error = result.error
    assert error is not None
    raise StepFailed(
        {
            "message": error.message,
            "name": error.name,
            "traceback": error.traceback,
            "line": error.line,
        },
        retryable=error.kind != "input",
    )


def _resource_resolver(
    ex: RunExecution, script: Script
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None:
    """In the server, a resource argument (`db: postgresql`, see kernels.schema) arrives
    as a resource path and reaches `main` as the resource's value, read with the
    permissions of whoever started the run."""
    items = ex.engine.items
    fields = {
        name: prop["format"][len("resource-") :]
        for name, prop in (script.schema.get("properties") or {}).items()
        if str(prop.get("format", "")).startswith("resource-")
    }
    if items is None or not fields:
        return None

    async def resolve(args: dict[str, Any]) -> dict[str, Any]:
        resolved = dict(args)
        for name, kind in fields.items():
            path = args.get(name)
            if not isinstance(path, str):
                continue
            found = items.resource(path.removeprefix("$res:"), ex.run.actor)
            if found is None:
                raise StepFailed(
                    {
                        "message": f"argument '{name}': no resource at '{path}' that "
                        f"{ex.run.actor or 'this run'} may read",
                        "name": "ArgumentError",
                    },
                    retryable=False,
                )
            if found[0] != kind:
                raise StepFailed(
                    {
                        "message": f"argument '{name}': resource '{path}' is a {found[0]}, "
                        f"expected a {kind}",
                        "name": "ArgumentError",
                    },
                    retryable=False,
                )
            resolved[name] = found[1]
        return resolved

    return resolve


def _context(ex: RunExecution, key: str) -> RunContext:
    base_url, token = ex.engine.credentials(ex.run) if ex.engine.credentials else ("", "")
    return RunContext(
        run_id=ex.run.id,
        script_path=ex.run.path if ex.run.kind == "script" else f"{ex.run.path}:{key}",
        base_url=base_url,
        token=token,
    )


async def _sql(ex: RunExecution, sql: str, args: dict[str, Any], mode: Any) -> Any:
    from flows.sql import run_sql

    database = ex.data_dir / "workspace.duckdb"
    database.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.to_thread(run_sql, sql, args, database=database, mode=mode)


def _code_path(ex: RunExecution, key: str) -> str:
    return f"{ex.run.path or 'flow'}:{key}"


# ---------------------------------------------------------------- control


async def run_subflow(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    assert step.flow is not None
    from flows.execution import StopBody, with_defaults
    from flows.templates import render
    from kernels.arguments import validate_arguments

    if ex.engine.items is not None:
        text = ex.engine.items.flow(step.flow, ex.run.actor)
        if text is None:
            raise _no_item("flow", step.flow, ex.run.actor)
        sub = ex.engine.parse(text, step.flow)
    else:
        sub = load_flow_file(ex.base_dir / step.flow)
    flow_input = with_defaults(
        validate_arguments(args, sub.schema_, owner=f"subflow {step.flow}"), sub.schema_
    )
    sub_scope = Scope(flow_input=flow_input)
    try:
        result = await ex.run_body(list(sub.steps), sub_scope, f"{key}/")
    except StopBody as stop:
        result = stop.result
    if sub.output is not None:
        result = render(sub.output, sub_scope.names(), step=step.id, argument="output")
    return result


async def run_for_each(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    from flows.execution import StopBody

    items = ex.evaluate(step.for_each, scope, step, "for_each")
    if not isinstance(items, list):
        raise StepFailed(
            {"message": f"for_each needs a list, got {type(items).__name__}", "name": "TypeError"},
            retryable=False,
        )
    results: list[Any] = [None] * len(items)
    stopped = asyncio.Event()

    async def iteration(index: int, item: Any) -> None:
        body_scope = scope.nested(iter={"value": item, "index": index})
        try:
            results[index] = await ex.run_body(list(step.steps), body_scope, f"{key}/{index}/")
        except StopBody as stop:
            results[index] = stop.result
            stopped.set()
        except StepFailed as failure:
            if not step.skip_failures:
                raise
            results[index] = {"error": failure.error}

    if not step.parallel:
        for index, item in enumerate(items):
            await iteration(index, item)
            if stopped.is_set():
                return results[: index + 1]
        return results
    limit = asyncio.Semaphore(step.parallelism or max(1, len(items)))

    async def bounded(index: int, item: Any) -> None:
        async with limit:
            await iteration(index, item)

    await _all(bounded(index, item) for index, item in enumerate(items))
    return results


async def run_while(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    from flows.execution import StopBody

    results: list[Any] = []
    limit = step.max_iterations or WHILE_LIMIT
    index = 0
    while True:
        body_scope = scope.nested(iter={"index": index, "value": results[-1] if results else None})
        if not _always(step.while_) and not ex.evaluate(step.while_, body_scope, step, "while"):
            return results
        if index >= limit:
            if step.max_iterations:
                return results
            raise StepFailed(
                {
                    "message": f"while loop '{step.id}' ran {WHILE_LIMIT} times without stopping; set max_iterations or a stop_after_if",
                    "name": "LoopLimit",
                },
                retryable=False,
            )
        try:
            results.append(await ex.run_body(list(step.steps), body_scope, f"{key}/{index}/"))
        except StopBody as stop:
            results.append(stop.result)
            return results
        index += 1


def _always(condition: Any) -> bool:
    return condition is True or (isinstance(condition, str) and condition.strip().lower() == "true")


async def run_branch_one(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    for index, branch in enumerate(step.branch_one or []):
        if ex.evaluate(branch.when, scope, step, f"branch_one[{index}].when"):
            return await _branch_body(ex, list(branch.steps), scope, f"{key}/{index}/")
    return await _branch_body(ex, list(step.default), scope, f"{key}/default/")


async def run_branch_all(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    branches = list(step.branch_all or [])
    results: list[Any] = [None] * len(branches)

    async def branch(index: int) -> None:
        spec = branches[index]
        if spec.when and not ex.evaluate(spec.when, scope, step, f"branch_all[{index}].when"):
            return
        try:
            results[index] = await _branch_body(ex, list(spec.steps), scope, f"{key}/{index}/")
        except StepFailed as failure:
            if not spec.skip_failure:
                raise
            results[index] = {"error": failure.error}

    if step.parallel:
        await _all(branch(index) for index in range(len(branches)))
    else:
        for index in range(len(branches)):
            await branch(index)
    return results


async def _all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run side by side and let every one finish, then raise what matters most.

    Siblings are not cancelled when one fails or waits: cancelling them would throw
    away work in flight that a replay would then have to redo. A failure wins over a
    wait (the run fails either way); otherwise the first wait suspends the run.
    """
    outcomes = await asyncio.gather(*coroutines, return_exceptions=True)
    raised = [o for o in outcomes if isinstance(o, BaseException)]
    failures = [o for o in raised if isinstance(o, StepFailed)]
    if failures or raised:
        raise (failures or raised)[0]


async def _branch_body(ex: RunExecution, steps: list[StepSpec], scope: Scope, prefix: str) -> Any:
    from flows.execution import StopBody

    body_scope = scope.nested()
    try:
        result = await ex.run_body(steps, body_scope, prefix)
    except StopBody as stop:
        result = stop.result
    # Steps inside a branch are visible to the steps after the branch, by their ids.
    scope.results.update(body_scope.results.maps[0])
    return result


async def run_identity(
    ex: RunExecution, step: StepSpec, scope: Scope, key: str, args: dict[str, Any]
) -> Any:
    return args if step.args else scope.previous_result


# ---------------------------------------------------------------- waiting (no kernel held)


async def wait_sleep(ex: RunExecution, step: StepSpec, scope: Scope, key: str) -> Any:
    latest = ex.latest.get(key)
    if latest is not None and latest.status == "waiting":
        wake_at = float((latest.detail or {})["wake_at"])
    else:
        seconds = ex.evaluate(step.sleep, scope, step, "sleep")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise StepFailed(
                {
                    "message": f"sleep needs a number of seconds >= 0, got {seconds!r}",
                    "name": "TypeError",
                },
                retryable=False,
            )
        wake_at = time.time() + float(seconds)
        latest = StepRecord(
            ex.run.id,
            key,
            step.id,
            step.kind,
            ex._next_attempt(key),
            "waiting",
            started_at=time.time(),
            detail={"wake_at": wake_at},
        )
        await ex.record(latest)
    remaining = wake_at - time.time()
    if remaining > 1.0:
        ex.waiting = "sleep"
        raise Suspend("sleep", wake_at=wake_at)
    if remaining > 0:
        await asyncio.sleep(remaining)
    await ex.record(
        StepRecord(
            ex.run.id,
            key,
            step.id,
            step.kind,
            latest.attempt,
            "success",
            started_at=latest.started_at,
            finished_at=time.time(),
            detail=latest.detail,
        )
    )
    return None


async def wait_approval(ex: RunExecution, step: StepSpec, scope: Scope, key: str) -> Any:
    spec = step.approval
    assert spec is not None
    now = time.time()
    latest = ex.latest.get(key)
    if latest is None or latest.status != "waiting":
        expires_at = now + spec.timeout if spec.timeout else None
        detail = {
            "required": spec.required,
            "approvals": [],
            "expires_at": expires_at,
            "form": spec.form,
            "message": spec.message,
            "approvers": list(spec.approvers),
            "self_approval": spec.self_approval,
        }
        latest = StepRecord(
            ex.run.id,
            key,
            step.id,
            step.kind,
            ex._next_attempt(key),
            "waiting",
            started_at=now,
            detail=detail,
        )
        await ex.record(latest)
    expires_at = (latest.detail or {}).get("expires_at")
    if expires_at is not None and now > expires_at:
        error = {
            "message": f"nobody approved step '{step.id}' within its timeout of {spec.timeout:g} s",
            "name": "ApprovalTimeout",
            "step_id": step.id,
            "key": key,
        }
        await ex.record(
            StepRecord(
                ex.run.id,
                key,
                step.id,
                step.kind,
                latest.attempt,
                "failure",
                error=error,
                result={"error": error},
                started_at=latest.started_at,
                finished_at=now,
                detail={**(latest.detail or {}), "final": True},
            )
        )
        raise StepFailed(error, retryable=False)
    ex.waiting = "approval"
    ex.links = ex.engine.approval_links(ex.run.id, key, expires_at or now + DEFAULT_APPROVAL_LINK_S)
    raise Suspend("approval", wake_at=expires_at)


WAITING_KINDS: Mapping[str, Callable[[RunExecution, StepSpec, Scope, str], Awaitable[Any]]] = (
    MappingProxyType({"sleep": wait_sleep, "approval": wait_approval})
)

KINDS: Mapping[str, Handler] = MappingProxyType(
    {
        "python": run_code,
        "bash": run_code,
        "sql": run_sql_step,
        "script": run_script_file,
        "flow": run_subflow,
        "for_each": run_for_each,
        "while": run_while,
        "branch_one": run_branch_one,
        "branch_all": run_branch_all,
        "identity": run_identity,
    }
)
