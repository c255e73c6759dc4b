"""Typed messages between the kernels package and its callers.

Plain frozen dataclasses: a `RunJob` goes in, `RunEvent`s stream out while it runs and
one `RunResult` ends it. They serialise to JSON with `as_dict` so the flows engine can
store them and the studio can push them to a page unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Language = Literal["python", "bash"]
RunStatus = Literal["ok", "error", "timeout", "cancelled"]
ErrorKind = Literal["code", "input", "limit", "interrupt", "timeout", "cancelled", "system"]


@dataclass(frozen=True)
class RunLimits:
    """Per-run limits. `timeout_s` is wall time; memory and CPU are enforced by the kernel."""

    timeout_s: float | None = None
    memory_mib: int | None = None
    cpu_s: float | None = None


@dataclass(frozen=True)
class RunContext:
    """Who and what a run is, visible inside it as environment variables."""

    run_id: str = ""
    script_path: str = ""
    # Where the run's client (`import gristmill`) reaches the server, and with what
    # token: empty when nothing serves the API (a script run by the CLI).
    base_url: str = ""
    token: str = ""

    def environment(self) -> dict[str, str]:
        # Windmill's names too, so scripts written for it find their context.
        names = {
            "GRISTMILL_RUN_ID": self.run_id,
            "GRISTMILL_SCRIPT_PATH": self.script_path,
            "WM_JOB_ID": self.run_id,
            "WM_JOB_PATH": self.script_path,
        }
        if self.base_url and self.token:
            names |= {
                "GRISTMILL_BASE_URL": self.base_url,
                "GRISTMILL_TOKEN": self.token,
                "BASE_INTERNAL_URL": self.base_url,
                "WM_TOKEN": self.token,
            }
        return names


@dataclass(frozen=True)
class RunJob:
    """One script run: the code, its arguments and how to run it."""

    source: str
    path: str = ""
    language: Language = "python"
    args: dict[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] = ()  # bash: positional arguments
    env: dict[str, str] = field(default_factory=dict)
    context: RunContext = RunContext()
    limits: RunLimits = RunLimits()
    cwd: str | None = None
    # What the script imports (requirements.run_imports), when known: it decides which of
    # the kernel's zygotes runs it. Not sent to the run process.
    imports: tuple[str, ...] | None = None

    def frame(self) -> dict[str, Any]:
        """The job as the run process reads it (see `child.py`)."""
        return {
            "kind": "run",
            "language": self.language,
            "source": self.source,
            "path": self.path,
            "args": self.args,
            "argv": list(self.argv),
            "env": {**self.context.environment(), **self.env},
            "limits": {"memory_mib": self.limits.memory_mib, "cpu_s": self.limits.cpu_s},
            "cwd": self.cwd,
        }


@dataclass(frozen=True)
class StreamEvent:
    """Text a run wrote to stdout or stderr, in the order it wrote it."""

    name: Literal["stdout", "stderr"]
    text: str
    kind: Literal["stream"] = "stream"


@dataclass(frozen=True)
class DisplayEvent:
    """Rich output (`display(obj)`): a MIME bundle, as Jupyter's display_data."""

    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: Literal["display"] = "display"


RunEvent = StreamEvent | DisplayEvent


@dataclass(frozen=True)
class RunError:
    """Why a run failed. `line` points at the user's own line when known."""

    kind: ErrorKind
    name: str
    message: str
    traceback: str = ""
    line: int | None = None
    field: str | None = None  # for kind "input": the argument at fault


@dataclass(frozen=True)
class RunResult:
    """How a run ended: a JSON value, or an error."""

    status: RunStatus
    value: Any = None
    error: RunError | None = None
    kernel_id: str = ""
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
