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
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

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

    run = commands.add_parser("run", help="run a script (.py, .sh) and print its result as JSON")
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

    serve = commands.add_parser("serve", help="start the server")
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    from kernels.errors import KernelError

    try:
        code = _COMMANDS[args.command](args)
    except (BadInput, KernelError) as exc:
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


def cmd_run(args: argparse.Namespace) -> int:
    from kernels.arguments import coerce_cli_values
    from kernels.scripts import Script

    script = Script.from_file(args.file)
    schema = script.schema
    values: dict[str, Any] = {}
    if args.args_json is not None:
        try:
            values = json.loads(args.args_json)
        except ValueError as exc:
            raise BadInput(f"--args: expected a JSON object, got invalid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise BadInput(f"--args: expected a JSON object, got a JSON {type(values).__name__}")
    values.update(coerce_cli_values(args.pairs, schema))
    return asyncio.run(_run(args, script, values))


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


_COMMANDS = {"run": cmd_run, "schema": cmd_schema, "deps": cmd_deps, "serve": cmd_serve}


if __name__ == "__main__":
    main()
