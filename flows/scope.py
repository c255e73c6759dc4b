"""What `${{ }}` expressions see while a flow runs (one mutable scope per body being run)."""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class Scope:
    """Names visible to `${{ }}` expressions at one point of a run.

    `results` is a chain: a loop body's own results sit in front of the enclosing
    scope's, so a body sees earlier steps outside it but not its sibling iterations.
    """

    flow_input: dict[str, Any]
    results: ChainMap[str, Any] = field(default_factory=ChainMap)
    previous_result: Any = None
    iter: dict[str, Any] | None = None
    resume: Any = None
    error: dict[str, Any] | None = None

    def names(self, **extra: Any) -> dict[str, Any]:
        """The mapping handed to the expression evaluator."""
        names: dict[str, Any] = {
            "flow_input": self.flow_input,
            "results": dict(self.results),
            "previous_result": self.previous_result,
            "resume": self.resume,
        }
        if self.iter is not None:
            names["iter"] = self.iter
        if self.error is not None:
            names["error"] = self.error
        names.update(extra)
        return names

    def nested(self, **changes: Any) -> Scope:
        """A child scope with its own layer of results."""
        return replace(self, results=self.results.new_child(), **changes)

    def set_result(self, step_id: str, result: Any) -> None:
        """Record a step's result: later steps see it as `results.<id>` and `previous_result`."""
        self.results[step_id] = result
        self.previous_result = result
