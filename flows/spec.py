"""A flow as data: frozen pydantic models of a flow file (steps, options, branches).

`flows/flow_files.py` reads files into these models (with errors that point into the
file) and writes them back; `load_flow(dump_flow(flow)) == flow`.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kernels.arguments import ArgumentChecker

STEP_KINDS = (
    "python", "sql", "bash", "script", "flow", "for_each", "while", "branch_one",
    "branch_all", "sleep", "approval", "identity",
)  # fmt: skip
KIND_FIELDS = {kind: "while_" if kind == "while" else kind for kind in STEP_KINDS}
_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

DataPath = tuple[str | int, ...]


def _custom(message: str, key: str | None = None, where: DataPath = ()) -> PydanticCustomError:
    """A validation error whose message is kept verbatim and that names the offending key."""
    return PydanticCustomError(
        "flow_spec", "{message}", {"message": message, "key": key, "where": where}
    )


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class RetrySpec(_Spec):
    """How often and when a failed step runs again."""

    attempts: int = Field(default=1, ge=1)
    backoff: Literal["constant", "exponential"] = "constant"
    delay: float = Field(default=0, ge=0)
    multiplier: float = Field(default=2, ge=1)
    max_delay: float | None = Field(default=None, ge=0)
    jitter: float = Field(default=0, ge=0, le=1)
    when: str | None = None  # an expression over `error`: retry only when it holds

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt `attempt` (2 is the first retry; 1 waits 0).

        Exponential backoff waits `delay * multiplier ** (attempt - 2)`, capped at
        `max_delay`. Jitter is applied only when `rng` is given (so tests and replays
        are deterministic): it takes off up to `jitter` of the delay, never adds, so
        `max_delay` stays a bound.
        """
        if attempt < 2:
            return 0.0
        seconds = self.delay
        if self.backoff == "exponential":
            try:
                seconds = self.delay * self.multiplier ** (attempt - 2)
            except OverflowError:
                seconds = float("inf")
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        if rng is not None and self.jitter:
            seconds *= 1 - self.jitter * rng.random()
        return seconds


def _json_schema(value: Any, key: str) -> Any:
    try:
        if value is not None:
            jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as error:
        raise _custom(f"`{key}` is not a valid JSON Schema: {error.message}") from None
    return value


class ApprovalSpec(_Spec):
    """A step that waits for people to approve; `form` is the JSON Schema of their payload.

    `approvers` limits who may approve or reject from the studio (`u/<user>`, `g/<group>`;
    empty: anyone who may run the flow); `self_approval: false` refuses the person who
    started the run. A signed link is its own credential and bypasses both.
    """

    timeout: float | None = Field(default=None, gt=0)
    required: int = Field(default=1, ge=1)
    form: dict[str, Any] | None = None
    message: str | None = None
    approvers: list[Annotated[str, Field(pattern=r"^[ug]/[a-z0-9_][a-z0-9_.-]*$")]] = Field(
        default_factory=list
    )
    self_approval: StrictBool = True

    _valid_form = field_validator("form")(lambda cls, value: _json_schema(value, "form"))


class MockSpec(_Spec):
    """While `enabled`, the step does not run and returns `value`."""

    enabled: bool = True
    value: Any = None


class ConcurrencySpec(_Spec):
    """At most `limit` runs of the flow at once (per value of the `key` template, if any)."""

    limit: int = Field(ge=1)
    key: str | None = None


class BranchSpec(_Spec):
    """One branch of `branch_one` / `branch_all`: a condition and the steps it runs."""

    when: str | None = None
    summary: str | None = None
    steps: list[StepSpec]
    skip_failure: bool = False


class StepSpec(_Spec):
    """One step. Exactly one kind key is set (see `STEP_KINDS`); `kind` says which."""

    id: str
    summary: str | None = None
    python: str | None = None
    sql: str | None = None
    bash: str | None = None
    script: str | None = None
    flow: str | None = None
    for_each: list[Any] | str | None = None
    # `validation_alias`, not `alias`: type checkers take `alias` as the __init__ keyword,
    # and `while` cannot be passed as one.
    while_: StrictBool | str | None = Field(
        default=None, validation_alias="while", serialization_alias="while"
    )
    branch_one: list[BranchSpec] | None = None
    branch_all: list[BranchSpec] | None = None
    sleep: Annotated[float, Field(ge=0)] | str | None = None
    approval: ApprovalSpec | None = None
    identity: bool = False
    mode: Literal["read", "write"] = "read"
    parallel: bool = False
    parallelism: int | None = Field(default=None, ge=1)
    skip_failures: bool = False
    max_iterations: int | None = Field(default=None, ge=1)
    args: dict[str, Any] = {}
    steps: list[StepSpec] = []
    default: list[StepSpec] = []
    retry: RetrySpec | None = None
    timeout: float | None = Field(default=None, gt=0)
    continue_on_error: bool = False
    skip_if: str | None = None
    stop_after_if: str | None = None
    cache_ttl: float | None = Field(default=None, ge=0)
    mock: MockSpec | None = None

    @functools.cached_property
    def kind(self) -> str:
        """The step's kind: the one kind key it has (asked for at every step of a run)."""
        return self._kinds()[0]

    def _kinds(self) -> list[str]:
        # `identity: false` is no kind at all; `while: false` and `sleep: 0` are.
        present = {kind: getattr(self, field) is not None for kind, field in KIND_FIELDS.items()}
        present["identity"] = self.identity
        return [kind for kind in STEP_KINDS if present[kind]]

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not re.fullmatch(_ID_PATTERN, value):
            raise _custom(
                f"step id {value!r} is not valid: use letters, digits and _, not starting with a "
                f"digit, since other steps read it as results.{value or 'id'}"
            )
        return value

    @model_validator(mode="after")
    def _one_kind_and_its_options(self) -> StepSpec:
        kinds = self._kinds()
        every = ", ".join(STEP_KINDS)
        if not kinds:
            raise _custom(f"step '{self.id}' has no kind; a step has exactly one of: {every}")
        if len(kinds) > 1:
            raise _custom(
                f"step '{self.id}' has both `{kinds[0]}` and `{kinds[1]}`; a step has exactly one "
                f"kind: {every}",
                key=kinds[1] if kinds[1] != "while" else "while",
            )
        kind, fields = kinds[0], type(self).model_fields
        only = {
            "mode": ("sql",), "parallel": ("for_each", "branch_all"),
            "parallelism": ("for_each",), "skip_failures": ("for_each",),
            "max_iterations": ("while",), "default": ("branch_one",),
            "steps": ("for_each", "while"),
        }  # fmt: skip
        for option, kinds_allowed in only.items():
            # Compared with the default, so a full model_dump() loads back.
            if getattr(self, option) != fields[option].default and kind not in kinds_allowed:
                where = " and ".join(kinds_allowed)
                extra = "; a branch keeps its steps under each branch" if option == "steps" else ""
                raise _custom(
                    f"`{option}` is only for {where} steps, not {kind}{extra}", key=option
                )
        if self.parallelism is not None and not self.parallel:
            raise _custom("`parallelism` needs `parallel: true`", key="parallelism")
        if kind in ("for_each", "while") and not self.steps:
            raise _custom(f"a {kind} step needs `steps`: the steps its body runs", key=kind)
        for index, branch in enumerate(self.branch_one or []):
            if branch.when is None:
                raise _custom(
                    "every branch of branch_one needs `when` (use `default` for the fallback)",
                    key="when",
                    where=("branch_one", index),
                )
        return self


class FlowSpec(_Spec):
    """A whole flow file."""

    summary: str | None = None
    description: str | None = None
    schema_: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        validation_alias="schema",
        serialization_alias="schema",
    )
    steps: list[StepSpec] = Field(min_length=1)
    on_failure: list[StepSpec] = []
    timeout: float | None = Field(default=None, gt=0)
    concurrency: ConcurrencySpec | None = None
    priority: int = 0
    output: Any = None
    # Runs keep their run processes for the next run of this flow by the same user
    # (kernels/dedicated.py): no fork per run, at the cost of sharing memory between runs.
    dedicated: bool = False

    _valid_schema = field_validator("schema_")(lambda cls, value: _json_schema(value, "schema"))

    @functools.cached_property
    def check_arguments(self) -> ArgumentChecker:
        """`validate_arguments` against the flow's schema, its validator built once."""
        return ArgumentChecker(self.schema_)


BranchSpec.model_rebuild()
StepSpec.model_rebuild()
FlowSpec.model_rebuild()


def iter_steps(steps: Iterable[StepSpec]) -> Iterator[StepSpec]:
    """Every step in `steps`, nested ones included, depth-first in file order."""
    for step in steps:
        yield step
        yield from iter_steps(_children(step))


def _children(step: StepSpec) -> list[StepSpec]:
    branches = [*(step.branch_one or []), *(step.branch_all or [])]
    return [*step.steps, *(s for branch in branches for s in branch.steps), *step.default]
