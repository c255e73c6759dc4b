"""The scheduler's two sides in the server: schedules from the workspace, runs through
the dispatcher.

`WorkspaceSchedules` reads schedules and their last fire from the workspace store (so a
restarted server resumes where it stopped); `DispatcherFires` starts each fire's run
once (the run store keeps one run per fire key), follows it to its end and starts the
error and recovery handlers.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flows.dispatcher import Dispatcher
from flows.records import FINISHED
from flows.scheduler import RunOutcome, fire_key
from flows.schedules import ScheduleSpec
from studio.workspace import Workspace
from studio.workspace.errors import NotFound
from studio.workspace.models import Schedule
from studio.workspace.paths import owner_of


def schedule_spec(schedule: Schedule) -> ScheduleSpec:
    """The scheduler's view of a stored schedule."""
    return ScheduleSpec(
        path=schedule.path,
        cron=schedule.cron,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        no_overlap=schedule.no_overlap,
        catch_up=schedule.catch_up,
        on_failure=schedule.on_failure,
        on_recovery=schedule.on_recovery,
        args=dict(schedule.args),
        target_kind=schedule.target_kind,
        target_path=schedule.target_path,
    )


def schedule_actor(path: str, workspace: Workspace) -> str:
    """Whose permissions a schedule's runs carry: the owner of a `u/` schedule; for a
    folder schedule the folder's first owner, so that its runs can do no more than
    someone responsible for the folder."""
    tree, name = owner_of(path)
    if tree == "u":
        return name
    folder = workspace.folders().get(name)
    owners = sorted(p[2:] for p, r in (folder.rights if folder else {}).items() if r == "owner")
    users = [p for p in owners if workspace.get_user(p) is not None]
    return users[0] if users else "admin"


class WorkspaceSchedules:
    """`flows.scheduler.ScheduleSource` over the workspace store."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def schedules(self) -> list[tuple[ScheduleSpec, float]]:
        return [(schedule_spec(s), s.updated_at) for s in self.workspace.list_schedules()]

    def last_fire(self, path: str) -> float | None:
        try:
            return self.workspace.get_schedule(path).last_fire_at
        except NotFound:
            return None

    def set_last_fire(self, path: str, fire_at: float) -> None:
        # Deleted while its fire started: nothing left to record.
        with contextlib.suppress(NotFound):
            self.workspace.set_last_fire(path, fire_at)


class DispatcherFires:
    """`flows.scheduler.FireTarget` over the dispatcher and the workspace's items."""

    def __init__(self, workspace: Workspace, dispatcher: Dispatcher) -> None:
        self.workspace = workspace
        self.dispatcher = dispatcher

    async def submit(self, spec: ScheduleSpec, fire_at: float) -> str | None:
        key = fire_key(spec.path, fire_at)
        if await self.dispatcher.store.run_for_key(key) is not None:
            return None
        run = await self._start(
            spec.target_kind,
            spec.runs,
            dict(spec.args),
            trigger=f"schedule:{spec.path}",
            actor=schedule_actor(spec.path, self.workspace),
            dedupe_key=key,
        )
        return run

    async def is_running(self, run_id: str) -> bool:
        run = await self.dispatcher.store.get_run(run_id)
        return run is not None and run.status not in FINISHED

    async def latest_run(self, path: str) -> str | None:
        trigger = f"schedule:{path}"
        # `trigger` filters by prefix ("schedule:f/a/b" also finds "schedule:f/a/bc"):
        # the newest exact one is on the first pages unless a longer path fires far more.
        for page in range(5):
            runs = await self.dispatcher.store.list_runs(
                trigger=trigger, limit=50, offset=50 * page
            )
            exact = next((run.id for run in runs if run.trigger == trigger), None)
            if exact is not None or len(runs) < 50:
                return exact
        return None

    async def outcome(self, run_id: str) -> RunOutcome:
        while True:
            outcome = await self.dispatcher.wait(run_id)
            run = outcome.run
            if run.status in FINISHED:
                status: Any = run.status
                return RunOutcome(status, (run.error or {}).get("message"))

    async def run_handler(self, handler_path: str, args: dict[str, Any]) -> None:
        # A handler is a script, or a flow when only a flow lives at that path.
        kind = "script"
        try:
            self.workspace.get("script", handler_path)
        except NotFound:
            kind = "flow"
        await self._start(
            kind,
            handler_path,
            args,
            trigger=f"schedule-handler:{args.get('path', '')}",
            actor=schedule_actor(handler_path, self.workspace),
        )

    async def _start(self, kind: str, path: str, args: dict[str, Any], **options: Any) -> str:
        item = self.workspace.get("flow" if kind == "flow" else "script", path)
        if kind == "flow":
            run = await self.dispatcher.submit(item.content, args, path=path, **options)
        else:
            run = await self.dispatcher.submit_script(
                item.content, args, path=path, language=item.language, **options
            )
        return run.id
