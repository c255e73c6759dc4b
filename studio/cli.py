"""The `gristmill` command line.

Exit codes (the contract in DESIGN.md): 0 ok, 1 the code failed, 2 bad input (the
message names the field), 3 suspended (flows, later). Results are JSON on stdout; logs
and errors on stderr. Heavy imports happen inside the commands, so `gristmill schema`
answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from studio.sync import add_sync_arguments, sync_main

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_SUSPENDED = 0, 1, 2, 3


class BadInput(Exception):
    """Input the user must fix; printed as `gristmill: <message>` with exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gristmill", description="Turn scripts into internal tools."
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="data directory (default: $GRISTMILL_DATA or ~/.local/share/gristmill)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run a script (.py, .sh, .sql) or a flow (.yaml) and print its result as JSON"
    )
    run.add_argument("file", type=Path)
    run.add_argument(
        "-a",
        "--arg",
        dest="pairs",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument, coerced by the input schema (repeatable)",
    )
    run.add_argument(
        "--args", dest="args_json", metavar="JSON", help="arguments as one JSON object"
    )
    run.add_argument("--timeout", type=float, metavar="S", help="stop the run after S seconds")
    run.add_argument("--memory", type=int, metavar="MIB", help="memory limit of the run, in MiB")
    run.add_argument("--cpu", type=float, metavar="S", help="CPU time limit of the run, in seconds")
    run.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    schema = commands.add_parser("schema", help="print the JSON Schema of a script's inputs")
    schema.add_argument("file", type=Path)

    deps = commands.add_parser("deps", help="print a script's inferred requirements, one a line")
    deps.add_argument("file", type=Path)

    resume = commands.add_parser("resume", help="approve a suspended flow run and continue it")
    resume.add_argument("run_id")
    resume.add_argument("--payload", metavar="JSON", help="the approval's payload (a JSON object)")
    resume.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    cancel = commands.add_parser("cancel", help="cancel a queued or suspended run")
    cancel.add_argument("run_id")
    cancel.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    runs = commands.add_parser("runs", help="list recent runs, or query the run history with SQL")
    runs.add_argument(
        "--sql", metavar="QUERY", help="a read-only query over the tables runs, steps and logs"
    )
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument(
        "--url",
        help="ask this server instead of opening the store (default: when a server holds the "
        "store, $GRISTMILL_URL or http://127.0.0.1:8000)",
    )
    runs.add_argument("--token", help="API token for --url (default: $GRISTMILL_TOKEN)")
    runs.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    sync = commands.add_parser(
        "sync", help="write a workspace to plain files (pull) or upload them (push), for git"
    )
    add_sync_arguments(sync)

    serve = commands.add_parser("serve", help="start the server")
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    from flows.errors import FlowError
    from kernels.errors import KernelError

    try:
        code = _COMMANDS[args.command](args)
    except (BadInput, KernelError, FlowError) as exc:
        _error(str(exc))
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted")
        code = 130
    sys.exit(code)


def _error(message: str) -> None:
    print(f"gristmill: {message}", file=sys.stderr)


def _settings(args: argparse.Namespace, **flags: object) -> Any:
    from studio.settings import Settings

    return Settings().with_overrides(data=getattr(args, "data", None), **flags)


# ---------------------------------------------------------------- commands


def cmd_schema(args: argparse.Namespace) -> int:
    from kernels.scripts import Script

    print(json.dumps(Script.from_file(args.file).schema, indent=2))
    return EXIT_OK


def cmd_deps(args: argparse.Namespace) -> int:
    from kernels.scripts import Script

    for requirement in Script.from_file(args.file).requirements:
        print(requirement)
    return EXIT_OK


FLOW_SUFFIXES = (".yaml", ".yml", ".json")


def _json_object(text: str | None, flag: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{flag}: expected a JSON object, got invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadInput(f"{flag}: expected a JSON object, got a JSON {type(value).__name__}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from kernels.arguments import coerce_cli_values

    values = _json_object(args.args_json, "--args")
    suffix = args.file.suffix
    if suffix in FLOW_SUFFIXES:
        from flows.flow_files import load_flow

        definition = _read(args.file)
        flow = load_flow(definition, str(args.file))
        values.update(coerce_cli_values(args.pairs, flow.schema_, owner="the flow"))
        return asyncio.run(_run_flow(args, definition, values))
    if suffix == ".sql":
        from flows.sql import sql_schema

        source = _read(args.file)
        values.update(coerce_cli_values(args.pairs, sql_schema(source, str(args.file))))
        return _run_sql_script(args, source, values)
    from kernels.scripts import Script

    script = Script.from_file(args.file)
    values.update(coerce_cli_values(args.pairs, script.schema))
    return asyncio.run(_run(args, script, values))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read it as text ({exc})") from None


def _run_sql_script(args: argparse.Namespace, source: str, values: dict[str, Any]) -> int:
    from flows.errors import SqlError
    from flows.sql import run_sql, sql_schema
    from kernels.arguments import validate_arguments

    checked = validate_arguments(values, sql_schema(source, str(args.file)))
    settings = _settings(args)
    settings.data.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_sql(source, checked, database=settings.data / "workspace.duckdb", mode="read")
    except SqlError as exc:
        _error(str(exc))
        return EXIT_FAILED
    print(json.dumps(rows))
    return EXIT_OK


async def _run_flow(args: argparse.Namespace, definition: str, values: dict[str, Any]) -> int:
    from studio.services import Services

    async with Services(_settings(args), pool_size=1, flows=True, bootstrap=False) as services:
        assert services.engine is not None and services.dispatcher is not None
        run = await services.dispatcher.submit(
            definition, values, path=str(args.file), trigger="cli"
        )
        print(f"gristmill: run {run.id}", file=sys.stderr)
        return await _follow(services, run.id)


async def _follow(services: Any, run_id: str) -> int:
    """Wait for a flow run to end or suspend; print as the CLI contract says."""
    outcome = await services.dispatcher.wait(run_id)
    # Runs this process recovered at start-up are finished too before it exits.
    while services.dispatcher.busy:
        await asyncio.sleep(0.05)
    run = outcome.run
    if outcome.waiting == "approval":
        print(f"gristmill: run {run_id} is waiting for an approval", file=sys.stderr)
        print(f"  approve: gristmill resume {run_id} [--payload JSON]", file=sys.stderr)
        for action, link in outcome.links.items():
            print(f"  {action} link: {link}", file=sys.stderr)
        return EXIT_SUSPENDED
    if run.status == "success":
        if run.recovered and run.error:
            print(
                f"gristmill: the flow failed ({run.error.get('message')}) and its on_failure handler recovered it",
                file=sys.stderr,
            )
        print(json.dumps(run.result))
        return EXIT_OK
    error = run.error or {}
    if error.get("traceback"):
        sys.stderr.write(str(error["traceback"]).rstrip("\n") + "\n")
    where = f"step '{error['step_id']}': " if error.get("step_id") else ""
    _error(f"{where}{error.get('name', 'Error')}: {error.get('message', run.status)}")
    return EXIT_FAILED


def cmd_resume(args: argparse.Namespace) -> int:
    payload = _json_object(args.payload, "--payload") if args.payload is not None else None

    async def resume() -> int:
        from studio.services import Services

        async with Services(_settings(args), pool_size=1, flows=True, bootstrap=False) as services:
            assert services.engine is not None and services.dispatcher is not None
            await services.engine.resume(args.run_id, payload, approver=os.environ.get("USER", ""))
            services.dispatcher.wake()
            return await _follow(services, args.run_id)

    return asyncio.run(resume())


def cmd_cancel(args: argparse.Namespace) -> int:
    async def cancel() -> int:
        from flows.duckdb_store import DuckDbStore
        from flows.engine import cancel_run

        settings = _settings(args)
        async with DuckDbStore(settings.data / "runs.duckdb") as store:
            run = await cancel_run(store, args.run_id, reason="cancelled from the command line")
        print(json.dumps({"id": run.id, "status": run.status}))
        return EXIT_OK

    return asyncio.run(cancel())


def cmd_runs(args: argparse.Namespace) -> int:
    async def runs() -> int:
        from flows.duckdb_store import DuckDbStore

        settings = _settings(args)
        async with DuckDbStore(settings.data / "runs.duckdb") as store:
            if args.sql:
                columns, rows = await store.query(args.sql)
                _print_rows(columns, [list(row) for row in rows])
                return EXIT_OK
            _print_runs([_run_summary(run) for run in await store.list_runs(limit=args.limit)])
        return EXIT_OK

    if args.url:
        return _runs_from_server(args, args.url)
    from flows.errors import StoreError

    try:
        return asyncio.run(runs())
    except StoreError as exc:
        if "in use by another Gristmill process" not in str(exc):
            raise
        # `gristmill serve` holds the store: ask it (DuckDB lets no other process read).
        url = os.environ.get("GRISTMILL_URL", "http://127.0.0.1:8000")
        if not (args.token or os.environ.get("GRISTMILL_TOKEN")):
            raise BadInput(
                f"{exc}. While the server runs, query it: pass --token (or set "
                f"GRISTMILL_TOKEN) and --url (default {url})"
            ) from None
        return _runs_from_server(args, url)


def _runs_from_server(args: argparse.Namespace, url: str) -> int:
    from studio.api_client import ApiClientError, Client, HttpError

    token = args.token or os.environ.get("GRISTMILL_TOKEN", "")
    if not token:
        raise BadInput("--url needs an API token: pass --token or set GRISTMILL_TOKEN")
    client = Client(url, token)
    try:
        if args.sql:
            answer = client.call("POST", "/api/history/sql", {"sql": args.sql})
            _print_rows(answer["columns"], answer["rows"])
        else:
            _print_runs(client.call("GET", f"/api/jobs?limit={args.limit}")["items"])
    except HttpError as exc:
        if exc.status in (400, 422):
            raise BadInput(str(exc)) from None
        _error(str(exc))
        return EXIT_FAILED
    except ApiClientError as exc:
        _error(str(exc))
        return EXIT_FAILED
    return EXIT_OK


def _run_summary(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "path": run.path,
        "status": run.status,
        "created_at": run.created_at,
        "trigger": run.trigger,
    }


def _print_runs(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        print(
            json.dumps({k: run.get(k) for k in ("id", "path", "status", "created_at", "trigger")})
        )


def _print_rows(columns: list[str], rows: list[list[Any]]) -> None:
    for row in rows:
        print(json.dumps(dict(zip(columns, row, strict=True)), default=str))


def cmd_sync(args: argparse.Namespace) -> int:
    return sync_main(args)


async def _run(args: argparse.Namespace, script: Any, values: dict[str, Any]) -> int:
    from kernels.messages import RunContext, RunEvent, RunLimits, StreamEvent
    from studio.services import Services

    def show(event: RunEvent) -> None:
        if isinstance(event, StreamEvent):
            sys.stderr.write(event.text)
        else:
            text = event.data.get("text/plain", "")
            kinds = ", ".join(sorted(event.data))
            sys.stderr.write(f"[display: {kinds}] {text}\n")
        sys.stderr.flush()

    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, cancel.set)
    loop.add_signal_handler(signal.SIGTERM, cancel.set)
    limits = RunLimits(timeout_s=args.timeout, memory_mib=args.memory, cpu_s=args.cpu)
    async with Services(_settings(args), pool_size=1) as services:
        result = await services.runner.run(
            script,
            values,
            context=RunContext(run_id=uuid.uuid4().hex, script_path=str(args.file)),
            limits=limits,
            on_event=show,
            cancel=cancel,
        )
    if result.ok:
        print(json.dumps(result.value))
        return EXIT_OK
    error = result.error
    assert error is not None
    if error.traceback:
        sys.stderr.write(
            error.traceback if error.traceback.endswith("\n") else error.traceback + "\n"
        )
    _error(f"{error.name}: {error.message}" if error.kind != "input" else error.message)
    if error.kind == "input":
        return EXIT_BAD_INPUT
    return 130 if error.kind == "cancelled" else EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from studio.server import serve

    settings = _settings(args, port=args.port, host=args.host)
    return asyncio.run(serve(settings))


_COMMANDS = {
    "run": cmd_run,
    "schema": cmd_schema,
    "deps": cmd_deps,
    "resume": cmd_resume,
    "cancel": cmd_cancel,
    "runs": cmd_runs,
    "sync": cmd_sync,
    "serve": cmd_serve,
}


if __name__ == "__main__":
    main()
