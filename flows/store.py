"""The run store interface: durable runs, step attempts, logs, the queue and tokens.

`RunStore` is what the engine talks to. The DuckDB implementation lives in
`duckdb_store.py`; a PostgreSQL one (many machines, `FOR UPDATE SKIP LOCKED`) can be
added beside it without touching the engine. Every write is durable when its awaitable
returns: nothing is acknowledged before it is committed.

Operations are typed as plain methods returning an awaitable, so a backend may queue
the operation at the call and hand back a future (no Task per call when thousands are
gathered); an `async def` satisfies them too. Callers always await the result, and a
refused operation raises there. `finish_run` and `close` are coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from flows.records import LogRecord, RunRecord, StepRecord


class RunStore(Protocol):
    """Durable state of runs. Called by the engine and the dispatcher, from one event loop."""

    def create_run(self, run: RunRecord, *, new_id: bool = False) -> Awaitable[None]:
        """Insert a new run (normally `queued`); an existing id is a `StoreError`.
        `new_id`: the caller has just made the id at random, so the store need not look."""

    def update_run(self, run_id: str, **fields: Any) -> Awaitable[None]:
        """Change fields of a run (status, result, error, started_at, wake_at, worker...)."""

    def get_run(self, run_id: str) -> Awaitable[RunRecord | None]:
        """The run, or None."""

    def list_runs(
        self,
        *,
        status: str | None = None,
        path: str | None = None,
        trigger: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Awaitable[list[RunRecord]]:
        """Runs, newest first; `path` and `trigger` match a prefix, `since`/`until`
        bound `created_at`."""

    def count_runs(
        self,
        *,
        status: str | None = None,
        path: str | None = None,
        trigger: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Awaitable[int]:
        """How many runs `list_runs` pages through with the same filters."""

    def run_for_key(self, dedupe_key: str) -> Awaitable[RunRecord | None]:
        """The run created with this dedupe key (`RunRecord.dedupe_key`), if any."""

    def claim(self, worker: str, now: float) -> Awaitable[RunRecord | None]:
        """Mark and return the next runnable run for `worker`, or None.

        Runnable: `queued`, or `suspended` with `wake_at <= now`. Highest priority first,
        then oldest; a run whose concurrency key already has `concurrency_limit` runs
        `running` is skipped. The claimed run becomes `running` with `worker` set.
        """

    def recover(self, now: float) -> Awaitable[list[str]]:
        """Put runs left `running` by a process that died back in the queue; their ids."""

    def record_step(self, step: StepRecord, *, new: bool = False) -> Awaitable[None]:
        """Insert or replace the attempt (`run_id`, `key`, `attempt`).

        `new=True` promises that no row of this attempt exists yet (its first write), so
        a backend may insert it blindly, which costs DuckDB about half a replace.
        """

    async def finish_run(
        self,
        run_id: str,
        steps: Sequence[tuple[StepRecord, bool]],
        *,
        create: RunRecord | None = None,
        **fields: Any,
    ) -> None:
        """Commit the given step attempts (each with its `new` flag, as in `record_step`)
        and change the run's fields, in one transaction: a run's last step and its end
        cost one commit. `create` is the whole run when it was never written (a short
        run started before its record, see FlowEngine._create): inserted instead.

        A coroutine: it is gathered after the writes that `settle()` queues (the run's
        last logs), and must not be queued before them."""

    def steps(self, run_id: str) -> Awaitable[list[StepRecord]]:
        """Every attempt of every step of the run, in the order they started."""

    def append_logs(self, logs: list[LogRecord]) -> Awaitable[None]:
        """Append log pieces."""

    def logs(self, run_id: str, offset: int = 0) -> Awaitable[list[LogRecord]]:
        """Log pieces of a run with `seq >= offset`, in order."""

    def use_token(self, token_id: str, now: float) -> Awaitable[bool]:
        """Mark a single-use token used; False when it was used before."""

    def cache_get(self, key: str, now: float) -> Awaitable[tuple[bool, Any]]:
        """(True, value) for an unexpired cached step result, else (False, None)."""

    def cache_put(self, key: str, value: Any, expires_at: float) -> Awaitable[None]:
        """Cache a step result until `expires_at`."""

    def query(self, sql: str) -> Awaitable[tuple[list[str], list[tuple[Any, ...]]]]:
        """Run a read-only user query over `runs`, `steps` and `logs`; columns and rows."""

    async def close(self) -> None:
        """Flush and close."""


class ItemSource(Protocol):
    """Scripts and flows by workspace path (`f/team/load`), for `script:` and `flow:`
    steps of runs the server executes. The engine calls these as such a step starts,
    with the path and whoever started the run; None means no such item, or not one that
    person may run (the two are not told apart)."""

    def script(self, path: str, actor: str) -> tuple[str, str] | None:
        """(source, language) of the latest version of the script at `path`."""

    def flow(self, path: str, actor: str) -> str | None:
        """The YAML of the latest version of the flow at `path`."""

    def resource(self, path: str, actor: str) -> tuple[str, dict[str, Any]] | None:
        """(resource type, value) of the resource at `path`, if `actor` may read it."""
