"""Schedules as pure data: when a cron expression fires, in a time zone, and which fires
are due now. No I/O; the loop that acts on these answers is `flows.scheduler`.

Cron has 5 fields (`min hour dom mon dow`) or 6 with the seconds FIRST
(`sec min hour dom mon dow`, Windmill's convention), or an alias (`@daily`, ...).

Time zones and daylight saving time: the expression is read in wall-clock time of the
schedule's zone; each wall time is turned into an instant by `zoneinfo`.
- A wall time the spring change skips (02:30 in Paris on the last Sunday of March)
  fires once, shifted by the gap (03:30 summer time), as PEP 495 reads it.
- A wall time the autumn change repeats fires once, at its first occurrence, unless
  the hour field is a wildcard (`*`, `*/n`): then the schedule is an interval and
  fires in both passes of the repeated hour.
croniter alone fires a 02:30 daily schedule twice on the autumn day, hence the walk
over naive wall times below.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from flows.errors import FlowError

CatchUp = Literal["all", "latest", "none"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("all", "latest", "none")
GRACE_S = 60.0


class ScheduleError(FlowError):
    """A schedule's cron expression, time zone or options are not valid."""


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule. `path` is the schedule's own path (the dedupe key uses it); it runs
    the `target_kind` at `target_path` (None: at `path`, like Windmill's primary
    schedule) with `args`.

    `catch_up` says what happens to fires missed while the server was down (see
    `due_fires`); `no_overlap` skips a fire while the previous run is still running;
    `on_failure` / `on_recovery` are script paths run after a failed run and after the
    first success that follows a failure.
    """

    path: str
    cron: str
    timezone: str = "UTC"
    enabled: bool = True
    no_overlap: bool = False
    catch_up: CatchUp = "latest"
    max_catch_up: int = 100
    on_failure: str | None = None
    on_recovery: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    target_kind: Literal["script", "flow"] = "script"
    target_path: str | None = None

    @property
    def runs(self) -> str:
        """The path of the script or flow a fire runs."""
        return self.target_path or self.path


# ---------------------------------------------------------------------------- checking

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# (name, low, high) in the order of a 6-field expression, seconds first.
_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_NUMBER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class _Cron:
    """A checked expression: six fields, seconds first."""

    fields: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.fields)

    @property
    def hour_is_interval(self) -> bool:
        hour = self.fields[2]
        return hour == "*" or hour.startswith("*/")


def _split(cron: str) -> tuple[str, ...]:
    text = cron.strip()
    if text.lower() in _ALIASES:
        text = _ALIASES[text.lower()]
    parts = text.split()
    if len(parts) == 5:
        return ("0", *parts)
    if len(parts) == 6:
        return tuple(parts)
    aliases = ", ".join(_ALIASES)
    raise ScheduleError(
        f"cron '{cron}': has {len(parts)} fields; expected 5 (minute hour day-of-month "
        f"month day-of-week), 6 with seconds first (second minute hour day-of-month month "
        f"day-of-week), or one of {aliases}"
    )


def _check_numbers(cron: str, name: str, low: int, high: int, text: str) -> None:
    """Name the first number out of range: croniter only says 'out of range'."""
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and (not _NUMBER.match(step) or int(step) < 1):
            raise ScheduleError(
                f"cron '{cron}': {name} step '{step}' is not valid; expected a whole number >= 1"
            )
        base = base.split("#")[0] if name == "day-of-week" else base
        for bound in base.split("-"):
            value = bound.strip("LlWw") if name in ("day-of-month", "day-of-week") else bound
            if _NUMBER.match(value) and not low <= int(value) <= high:
                raise ScheduleError(
                    f"cron '{cron}': {name} {int(value)} is out of range {low}-{high}"
                )


@lru_cache(maxsize=1024)
def _parse(cron: str) -> _Cron:
    fields = _split(cron)
    for index, ((name, low, high), text) in enumerate(zip(_FIELDS, fields, strict=True)):
        _check_numbers(cron, name, low, high, text)
        # The other errors (bad names, misplaced L/W/#) come from croniter; checking one
        # field at a time against wildcards lets the message name the field.
        alone = ["*"] * 6
        alone[index] = text
        if not croniter.is_valid(" ".join(alone), second_at_beginning=True):
            raise ScheduleError(
                f"cron '{cron}': {name} '{text}' is not valid; expected a number "
                f"{low}-{high}, a range a-b, a step */n or a-b/n, or a list of those"
            )
    parsed = _Cron(fields)
    if not croniter.is_valid(parsed.text, second_at_beginning=True):
        raise ScheduleError(f"cron '{cron}': is not a valid cron expression")
    return parsed


@lru_cache(maxsize=256)
def _zone(timezone: str) -> tzinfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"timezone '{timezone}': not a known IANA time zone; expected a name such as "
            "'UTC', 'Europe/Paris' or 'America/New_York'"
        ) from None


def check_schedule(cron: str, timezone: str) -> None:
    """Raise `ScheduleError` naming the field and value when the cron expression or the
    time zone is not valid, or when the expression never fires (`0 0 31 2 *`)."""
    parsed = _parse(cron)
    _zone(timezone)
    try:
        croniter(parsed.text, datetime(2000, 1, 1), second_at_beginning=True).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(
            f"cron '{cron}': never fires (no date matches day-of-month, month and day-of-week)"
        ) from None


def check_spec(spec: ScheduleSpec) -> None:
    """`check_schedule` plus the options of a spec."""
    check_schedule(spec.cron, spec.timezone)
    if spec.catch_up not in CATCH_UP_POLICIES:
        raise ScheduleError(
            f"catch_up '{spec.catch_up}': expected one of {', '.join(CATCH_UP_POLICIES)}"
        )
    if spec.max_catch_up < 1:
        raise ScheduleError(f"max_catch_up {spec.max_catch_up}: expected a whole number >= 1")


# ---------------------------------------------------------------------------- fire times

# Wall clock and instants only disagree in order near a DST change; the largest change
# in use is 2 h (Antarctica/Troll), so this margin covers every zone.
_MARGIN = timedelta(hours=3)


def _wall(instant: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None, fold=0)


def _margin(instant: float, zone: tzinfo) -> timedelta:
    """How far before/after the pivot's wall time the walk must start: zero unless a DST
    change is near, so a per-second schedule does not walk 3 h of seconds every call."""
    span = 4 * 3600
    before = datetime.fromtimestamp(instant - span, zone).utcoffset()
    after = datetime.fromtimestamp(instant + span, zone).utcoffset()
    return _MARGIN if before != after else timedelta(0)


def _instants(wall: datetime, zone: tzinfo, interval: bool) -> tuple[list[float], bool]:
    """The instants a wall time fires at, and whether it is an ordinary (unique) time."""
    first = wall.replace(tzinfo=zone, fold=0).timestamp()
    second = wall.replace(tzinfo=zone, fold=1).timestamp()
    if first == second:
        return [first], True
    if first < second:  # repeated (autumn): two real instants
        return ([first, second] if interval else [first]), False
    return [first], False  # skipped (spring): fold=0 shifts it forward by the gap


def _same_offset(one: datetime, other: datetime, zone: tzinfo) -> bool:
    return one.replace(tzinfo=zone).utcoffset() == other.replace(tzinfo=zone).utcoffset()


def _walk(spec_cron: str, timezone: str, pivot: float, forward: bool) -> Iterator[float]:
    """Fire instants strictly after `pivot` ascending (forward), or at or before `pivot`
    descending. Wall times are walked in order; an ordinary wall time's instant bounds
    every later one, so the buffer is flushed up to it (backwards: every earlier one,
    away from a spring gap)."""
    parsed = _parse(spec_cron)
    zone = _zone(timezone)
    margin = _margin(pivot, zone)
    if forward:
        start = _wall(math.floor(pivot), zone) - margin - timedelta(seconds=1)
    else:
        start = _wall(math.ceil(pivot), zone) + margin + timedelta(seconds=1)
    walker = croniter(parsed.text, start, second_at_beginning=True)
    sign = 1.0 if forward else -1.0
    heap: list[float] = []  # sign * instant, so one min-heap serves both directions
    last: float | None = None
    while True:
        try:
            wall = walker.get_next(datetime) if forward else walker.get_prev(datetime)
        except CroniterBadDateError:
            bound = math.inf
        else:
            found, ordinary = _instants(wall, zone, parsed.hour_is_interval)
            for instant in found:
                if (instant > pivot) if forward else (instant <= pivot):
                    heapq.heappush(heap, sign * instant)
            # Backwards, a wall time just after a spring gap is no bound: the skipped wall
            # times before it are shifted to instants after it.
            if not ordinary or not (forward or _same_offset(wall, wall - _MARGIN, zone)):
                continue
            bound = sign * found[0]
        while heap and heap[0] <= bound:
            key = heapq.heappop(heap)
            if key != last:
                last = key
                yield sign * key
        if bound == math.inf:
            return


def next_fires(spec: ScheduleSpec, after: float, n: int) -> list[float]:
    """The next `n` fire times (unix seconds) strictly after `after`, ascending.
    Paused schedules are answered too, so a page can show when one would fire."""
    return list(itertools.islice(_walk(spec.cron, spec.timezone, after, True), n))


def previous_fires(spec: ScheduleSpec, before: float, n: int) -> list[float]:
    """The last `n` fire times at or before `before`, most recent first."""
    return list(itertools.islice(_walk(spec.cron, spec.timezone, before, False), n))


def due_fires(
    spec: ScheduleSpec,
    last_fire: float | None,
    now: float,
    created_at: float,
    *,
    grace: float = GRACE_S,
) -> list[float]:
    """The fires to start now, oldest first: those in (last_fire or created_at, now].

    Nothing fires at or before `created_at`, nor while disabled. Fires missed while the
    server was down follow `spec.catch_up`:
    - "all": every one, at most `max_catch_up` (the most recent ones; older are dropped),
    - "latest": only the most recent,
    - "none": only the most recent, and only if it is at most `grace` seconds old.
    "latest" and "none" start at most one run per call.
    """
    if not spec.enabled:
        return []
    since = created_at if last_fire is None else max(last_fire, created_at)
    if now <= since:
        return []
    limit = spec.max_catch_up if spec.catch_up == "all" else 1
    recent: list[float] = []
    for instant in _walk(spec.cron, spec.timezone, now, False):
        if instant <= since or len(recent) >= limit:
            break
        recent.append(instant)
    if spec.catch_up == "none":
        recent = [instant for instant in recent if now - instant <= grace]
    recent.reverse()
    return recent


__all__ = [
    "CATCH_UP_POLICIES",
    "GRACE_S",
    "CatchUp",
    "ScheduleError",
    "ScheduleSpec",
    "check_schedule",
    "check_spec",
    "due_fires",
    "next_fires",
    "previous_fires",
]
