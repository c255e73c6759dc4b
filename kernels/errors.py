"""The error root of `kernels/` and its branches.

Every message is written for the person who will read it: what went wrong, with
which value, and what to do about it.
"""

from __future__ import annotations


class KernelError(Exception):
    """Root of every error raised by `kernels/`."""


class ScriptError(KernelError):
    """A script cannot be understood: no `main`, a syntax error, a bad annotation.

    `line` is the 1-based line in the script the problem points at, when known.
    """

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        where = path or "<script>"
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.detail = message


class ArgumentError(KernelError):
    """An argument does not fit the script's input schema.

    `field` names the argument (a dotted path for nested values), `value` is what was
    given and `expected` says what would have been accepted.
    """

    def __init__(
        self, field: str, message: str, *, value: object = None, expected: str = ""
    ) -> None:
        super().__init__(f"argument '{field}': {message}")
        self.field = field
        self.value = value
        self.expected = expected


class EnvironmentBuildError(KernelError):
    """An environment cannot be resolved or built (for example an unknown package)."""


class PoolError(KernelError):
    """The kernel pool cannot hand out a kernel (closed, or kernels keep failing to start)."""


class KernelDiedError(KernelError):
    """A kernel process died or stopped answering while it held a run."""
