"""The error root of `flows/` and its branches, and the control-flow signals.

Messages are written for the person who reads them: what went wrong, with which value,
and what to do. Errors say whether retrying could help (`retryable`).
"""

from __future__ import annotations


class FlowError(Exception):
    """Root of every error raised by `flows/`."""

    retryable = False


class FlowSpecError(FlowError):
    """A flow file is not valid. Carries where: file, line, step id and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int | None = None,
        step: str | None = None,
        key: str | None = None,
        snippet: str = "",
    ) -> None:
        where = path or "<flow>"
        if line is not None:
            where += f":{line}"
        parts = [where]
        if step:
            parts.append(f"step '{step}'")
        if key:
            parts.append(f"key '{key}'")
        text = f"{', '.join(parts)}: {message}"
        if snippet:
            text += "\n" + snippet
        super().__init__(text)
        self.path, self.line, self.step, self.key, self.snippet = path, line, step, key, snippet
        self.detail = message


class ExpressionError(FlowError):
    """An `${{ expr }}` expression is refused or fails. Names the expression."""

    def __init__(
        self, expression: str, message: str, *, step: str | None = None, argument: str | None = None
    ) -> None:
        where = ""
        if step:
            where += f"step '{step}'"
        if argument:
            where += f"{', ' if where else ''}argument '{argument}'"
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}expression `{expression}`: {message}")
        self.expression = expression
        self.step = step
        self.argument = argument
        self.detail = message


class SqlError(FlowError):
    """A SQL step or script is refused by the guard, or fails in DuckDB."""


class StoreError(FlowError):
    """The run store cannot be opened or written (for example, another process holds it)."""


class ApprovalError(FlowError):
    """An approval link is tampered with, replayed, expired or for another run."""


class FlowSignal(BaseException):
    """Control flow inside the engine; a BaseException so `except Exception` cannot swallow it."""


class Suspend(FlowSignal):
    """The run waits (approval, sleep): its state is stored and no kernel is held."""

    def __init__(self, reason: str, wake_at: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wake_at = wake_at


class StopLoop(FlowSignal):
    """`stop_after_if` held: end the enclosing loop (or the flow) after this step."""
