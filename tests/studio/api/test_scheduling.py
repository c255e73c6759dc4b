"""The scheduler's server side against real Services: one run per fire, the latest run
from the history, whose permissions a schedule's runs carry, handlers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flows.scheduler import fire_key
from studio.scheduling import DispatcherFires, WorkspaceSchedules, schedule_actor, schedule_spec
from studio.workspace.models import Schedule
from tests.studio.api.conftest import Api, seed, start_api, stop_api


@pytest.fixture(scope="module")
def api(portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    harness, server = start_api(portal, tmp_path_factory.mktemp("scheduling") / "data")
    seed(harness)
    yield harness
    stop_api(harness, server)


def test_a_fire_starts_one_run_and_is_the_latest_run(api: Api) -> None:
    ws = api.workspace
    ws.set_schedule(
        Schedule(
            path="f/team/every_minute",
            cron="* * * * *",
            timezone="Europe/Paris",
            target_kind="script",
            target_path="f/team/hello",
            args={"name": "cron"},
        )
    )
    spec = schedule_spec(ws.get_schedule("f/team/every_minute"))
    fires = DispatcherFires(ws, api.services.dispatcher)
    fire_at = float(int(time.time()))

    async def go():
        first = await fires.submit(spec, fire_at)
        again = await fires.submit(spec, fire_at)  # a restart between submit and set_last_fire
        outcome = await fires.outcome(first)
        return first, again, outcome, await fires.latest_run(spec.path)

    first, again, outcome, latest = api.portal.run(go())
    assert first is not None and again is None and latest == first
    assert outcome.status == "success"
    run = api.portal.run(api.services.store.get_run(first))
    assert (run.trigger, run.actor, run.dedupe_key) == (
        "schedule:f/team/every_minute",
        "dev",  # the folder's owner: the schedule can do no more than they can
        fire_key("f/team/every_minute", fire_at),
    )
    assert run.result == {"greeting": "hello cron", "times": 1}
    source = WorkspaceSchedules(ws)
    source.set_last_fire(spec.path, fire_at)
    assert source.last_fire(spec.path) == fire_at
    assert [s.path for s, _ in source.schedules()] == ["f/team/every_minute"]


def test_schedule_actor_is_the_owner_of_a_private_schedule(api: Api) -> None:
    assert schedule_actor("u/bob/nightly", api.workspace) == "bob"
    assert schedule_actor("f/team/x", api.workspace) == "dev"


def test_handler_runs_a_script_with_the_error(api: Api) -> None:
    fires = DispatcherFires(api.workspace, api.services.dispatcher)
    api.portal.run(fires.run_handler("f/team/hello", {"name": "alert"}))

    async def latest():
        runs = await api.services.store.list_runs(path="f/team/hello", trigger="schedule-handler")
        return runs[0] if runs else None

    from tests.conftest import wait_for

    wait_for(lambda: api.portal.run(latest()) is not None, what="the handler's run")
