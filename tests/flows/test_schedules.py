"""Fire-time logic: cron with seconds, time zones and DST, catch-up after downtime."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flows.schedules import (
    ScheduleError,
    ScheduleSpec,
    check_schedule,
    check_spec,
    due_fires,
    next_fires,
    previous_fires,
)

PARIS = ZoneInfo("Europe/Paris")
UTC = ZoneInfo("UTC")


def at(*parts: int, zone: ZoneInfo = UTC, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def local(instants: list[float], zone: ZoneInfo = PARIS) -> list[str]:
    return [datetime.fromtimestamp(t, zone).isoformat() for t in instants]


def spec(cron: str, timezone: str = "UTC", **options: object) -> ScheduleSpec:
    return ScheduleSpec("u/alice/job", cron, timezone, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- checking


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "cron '61 * * * *': minute 61 is out of range 0-59"),
        ("* 24 * * *", "cron '* 24 * * *': hour 24 is out of range 0-23"),
        ("0 0 0 * *", "cron '0 0 0 * *': day-of-month 0 is out of range 1-31"),
        ("0 0 1 13 *", "cron '0 0 1 13 *': month 13 is out of range 1-12"),
        ("0 0 * * 8", "cron '0 0 * * 8': day-of-week 8 is out of range 0-7"),
        ("60 * * * * *", "cron '60 * * * * *': second 60 is out of range 0-59"),
        ("1-70 * * * *", "cron '1-70 * * * *': minute 70 is out of range 0-59"),
        ("*/0 * * * *", "cron '*/0 * * * *': minute step '0' is not valid"),
        ("a * * * *", "cron 'a * * * *': minute 'a' is not valid"),
        ("0 0 * * mon#6", "cron '0 0 * * mon#6': day-of-week 'mon#6' is not valid"),
        ("* * * *", "cron '* * * *': has 4 fields; expected 5"),
        ("0 0 0 1 1 * 2030", "has 7 fields"),
        ("0 0 31 2 *", "cron '0 0 31 2 *': never fires"),
    ],
)
def test_bad_cron_is_refused_with_the_field_and_value(cron, message):
    with pytest.raises(ScheduleError) as caught:
        check_schedule(cron, "UTC")
    assert message in str(caught.value)


def test_bad_timezone_is_refused_by_name():
    with pytest.raises(ScheduleError, match=r"timezone 'Mars/Base': not a known IANA time zone"):
        check_schedule("* * * * *", "Mars/Base")


@pytest.mark.parametrize(
    "cron", ["*/5 * * * *", "0 30 2 * * *", "0 0 * * mon-fri", "@daily", "0 0 L * *", "0 9 * * 1#2"]
)
def test_good_cron_passes(cron):
    check_schedule(cron, "Europe/Paris")


def test_spec_options_are_checked():
    with pytest.raises(ScheduleError, match="catch_up 'some': expected one of all, latest, none"):
        check_spec(spec("* * * * *", catch_up="some"))
    with pytest.raises(ScheduleError, match="max_catch_up 0: expected a whole number >= 1"):
        check_spec(spec("* * * * *", max_catch_up=0))


# ---------------------------------------------------------------------------- fire times


def test_five_fields_fire_on_the_minute():
    fires = next_fires(spec("*/15 * * * *"), at(2024, 5, 1, 10, 7, 30), 3)
    assert fires == [at(2024, 5, 1, 10, 15), at(2024, 5, 1, 10, 30), at(2024, 5, 1, 10, 45)]


def test_six_fields_put_seconds_first():
    # Windmill's convention; croniter's default would read "10" as the seconds of "*/5".
    fires = next_fires(spec("10 */5 * * * *"), at(2024, 5, 1, 10, 0, 0), 3)
    assert fires == [
        at(2024, 5, 1, 10, 0, 10),
        at(2024, 5, 1, 10, 5, 10),
        at(2024, 5, 1, 10, 10, 10),
    ]


def test_next_fires_are_strictly_after():
    assert next_fires(spec("0 * * * *"), at(2024, 5, 1, 10), 1) == [at(2024, 5, 1, 11)]
    assert next_fires(spec("0 * * * *"), at(2024, 5, 1, 10) - 0.25, 1) == [at(2024, 5, 1, 10)]


def test_time_zone_is_wall_clock():
    fires = next_fires(spec("0 9 * * *", "America/New_York"), at(2024, 1, 15), 2)
    assert fires == [at(2024, 1, 15, 14), at(2024, 1, 16, 14)]  # 09:00 EST = 14:00 UTC


def test_spring_forward_fires_once_shifted_by_the_gap():
    # 2024-03-31 02:00 -> 03:00 in Paris: 02:30 does not exist.
    fires = next_fires(spec("30 2 * * *", "Europe/Paris"), at(2024, 3, 30, 12, zone=PARIS), 3)
    assert local(fires) == [
        "2024-03-31T03:30:00+02:00",
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]


def test_fall_back_fires_once_at_the_first_occurrence():
    # 2024-10-27 03:00 -> 02:00 in Paris: 02:30 happens twice; croniter alone fires twice.
    fires = next_fires(spec("0 30 2 * * *", "Europe/Paris"), at(2024, 10, 26, 12, zone=PARIS), 3)
    assert local(fires) == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
        "2024-10-29T02:30:00+01:00",
    ]


def test_interval_schedule_keeps_its_rhythm_across_both_changes():
    spring = next_fires(spec("*/30 * * * *", "Europe/Paris"), at(2024, 3, 31, 1, zone=PARIS), 4)
    assert local(spring) == [
        "2024-03-31T01:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:30:00+02:00",
        "2024-03-31T04:00:00+02:00",
    ]
    autumn = next_fires(spec("*/30 * * * *", "Europe/Paris"), at(2024, 10, 27, 1, zone=PARIS), 5)
    assert local(autumn) == [
        "2024-10-27T01:30:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T02:30:00+01:00",
    ]


@pytest.mark.parametrize("timezone", ["Europe/Paris", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("cron", ["30 2 * * *", "*/20 * * * *", "15 1-3 * * *", "*/7 */13 * * * *"])
def test_backward_walk_mirrors_forward_walk_around_dst(timezone, cron):
    zone = ZoneInfo(timezone)
    schedule = spec(cron, timezone)
    for day in [
        (2024, 3, 30),
        (2024, 10, 26),
        (2024, 3, 9),
        (2024, 11, 2),
        (2024, 4, 6),
        (2024, 10, 5),
    ]:
        start = datetime(*day, 22, 17, tzinfo=zone).timestamp()
        forward = next_fires(schedule, start, 30)
        assert all(a < b for a, b in itertools.pairwise(forward))
        assert previous_fires(schedule, forward[-1], 30) == forward[::-1]


# ---------------------------------------------------------------------------- due fires

CREATED = at(2024, 5, 1, 0, 0, 30)


def test_due_fires_in_window_and_never_before_creation():
    hourly = spec("0 * * * *")
    assert due_fires(hourly, None, at(2024, 5, 1, 0, 59), CREATED) == []
    assert due_fires(hourly, None, at(2024, 5, 1, 1) + 0.5, CREATED) == [at(2024, 5, 1, 1)]
    # The fire just handled is not due again.
    assert due_fires(hourly, at(2024, 5, 1, 1), at(2024, 5, 1, 1, 0, 2), CREATED) == []
    # A fire at the very second the schedule was created does not count.
    assert due_fires(spec("30 0 * * * *"), None, at(2024, 5, 1, 0, 0, 40), CREATED) == []


def test_disabled_schedule_has_nothing_due():
    paused = spec("* * * * *", enabled=False)
    assert due_fires(paused, None, at(2024, 5, 2), CREATED) == []
    assert next_fires(paused, at(2024, 5, 2), 1) == [at(2024, 5, 2, 0, 1)]


DOWN_FROM = at(2024, 5, 1, 1, 30)  # last fire handled 01:00; the server was down until 05:00:10


@pytest.mark.parametrize(
    ("policy", "now", "expected"),
    [
        ("all", at(2024, 5, 1, 5, 0, 10), [at(2024, 5, 1, h) for h in (2, 3, 4, 5)]),
        ("latest", at(2024, 5, 1, 5, 0, 10), [at(2024, 5, 1, 5)]),
        ("latest", at(2024, 5, 1, 5, 30), [at(2024, 5, 1, 5)]),
        ("none", at(2024, 5, 1, 5, 0, 10), [at(2024, 5, 1, 5)]),
        ("none", at(2024, 5, 1, 5, 1, 1), []),
    ],
)
def test_catch_up_policies(policy, now, expected):
    hourly = spec("0 * * * *", catch_up=policy)
    assert due_fires(hourly, at(2024, 5, 1, 1), now, CREATED) == expected


def test_catch_up_all_keeps_the_most_recent_up_to_the_cap():
    every_minute = spec("* * * * *", catch_up="all", max_catch_up=3)
    fires = due_fires(every_minute, at(2024, 5, 1, 1), at(2024, 5, 1, 2, 0, 5), CREATED)
    assert fires == [at(2024, 5, 1, 1, 58), at(2024, 5, 1, 1, 59), at(2024, 5, 1, 2)]


def test_none_grace_is_adjustable():
    hourly = spec("0 * * * *", catch_up="none")
    now = at(2024, 5, 1, 5, 2)
    assert due_fires(hourly, at(2024, 5, 1, 1), now, CREATED) == []
    assert due_fires(hourly, at(2024, 5, 1, 1), now, CREATED, grace=300) == [at(2024, 5, 1, 5)]


def test_daily_paris_schedule_on_dst_days_fires_once_each():
    nightly = spec("30 2 * * *", "Europe/Paris", catch_up="all")
    for day in (31, 27):
        month = 3 if day == 31 else 10
        eve = at(2024, month, day - 1, 12, zone=PARIS)
        fires = due_fires(nightly, eve, eve + 86400, created_at=eve - 86400)
        assert len(fires) == 1, local(fires)
