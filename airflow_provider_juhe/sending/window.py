"""Send windows: the local hours between which calls may start. Pure: pendulum only."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pendulum

_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")


@dataclass(frozen=True)
class SendWindow:
    """
    ``start <= local time < end`` every day in ``timezone``; a window whose end is earlier than its
    start runs over midnight (``("22:00", "06:00")``).
    """

    start: datetime.time
    end: datetime.time
    timezone: pendulum.Timezone

    @classmethod
    def parse(cls, send_window: Sequence[str] | None, timezone: Any) -> SendWindow | None:
        """
        :param send_window: two ``HH:MM`` or ``HH:MM:SS`` times, or ``None`` (any time).
        :param timezone: an IANA name such as ``Asia/Shanghai`` (or a pendulum time zone).
        :raises ValueError: naming ``send_window`` or ``timezone`` (checked even without a window).
        """
        zone = parse_timezone(timezone)
        if send_window is None:
            return None
        if isinstance(send_window, str) or not isinstance(send_window, Sequence) or len(send_window) != 2:
            raise ValueError(
                f"send_window: expected two times such as ('08:00', '21:00'), got {send_window!r}"
            )
        start, end = (_parse_time(value) for value in send_window)
        if start == end:
            raise ValueError(f"send_window: start and end are the same time ({send_window[0]!r})")
        return cls(start, end, zone)

    def is_open(self, moment: datetime.datetime) -> bool:
        local = pendulum.instance(moment).in_timezone(self.timezone).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_opening(self, moment: datetime.datetime) -> pendulum.DateTime:
        """
        The first instant after ``moment`` at which the window is open, in UTC.

        The local clock enters the window where it reaches ``start`` (twice on the night the clocks
        go back: the second time counts when the first has passed) or where a clock change moves it
        into the window: a start in the hour the clocks skip opens when they jump, not an hour later.
        """
        after = pendulum.instance(moment).in_timezone("UTC")
        day = after.in_timezone(self.timezone).date()
        starts = [
            datetime.datetime.combine(day + datetime.timedelta(days=offset), self.start, self.timezone)
            for offset in range(-1, 3)
        ]
        # A wall time the clocks go back over comes twice (fold 0 and 1); one they skip, never.
        starts += [start.replace(fold=1) for start in starts]
        candidates = [pendulum.instance(start.astimezone(datetime.timezone.utc)) for start in starts]
        candidates += _clock_changes(self.timezone, after, after.add(days=3))
        opening = min((c for c in candidates if c > after and self.is_open(c)), default=None)
        if opening is None:  # pragma: no cover
            raise AssertionError("a daily window opens within two days")
        return opening.in_timezone("UTC")

    def __str__(self) -> str:
        return f"{self.start.isoformat()}-{self.end.isoformat()} {self.timezone.name}"


def _clock_changes(zone: pendulum.Timezone, start: pendulum.DateTime, end: pendulum.DateTime) -> list[Any]:
    """The instants in ``[start, end)`` where the zone's UTC offset changes (hours apart at least)."""

    def offset(seconds: int) -> datetime.timedelta | None:
        return datetime.datetime.fromtimestamp(seconds, zone).utcoffset()

    changes = []
    for hour in range(int(start.timestamp()), int(end.timestamp()), 3600):
        low, high = hour, hour + 3600
        if offset(low) == offset(high):
            continue
        while high - low > 1:  # zones change at whole seconds
            middle = (low + high) // 2
            low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
        changes.append(pendulum.from_timestamp(high, "UTC"))
    return changes


def now() -> pendulum.DateTime:
    return pendulum.now("UTC")


def parse_timezone(timezone: Any) -> pendulum.Timezone:
    if isinstance(timezone, pendulum.Timezone):
        return timezone
    try:
        return pendulum.timezone(str(timezone))
    except Exception:  # pendulum raises its own InvalidTimezone, zoneinfo a KeyError
        raise ValueError(f"timezone: unknown time zone {timezone!r} (e.g. 'Asia/Shanghai')") from None


def _parse_time(value: Any) -> datetime.time:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"send_window: expected HH:MM or HH:MM:SS, got {value!r}")
    hour, minute, second = match.groups()
    return datetime.time(int(hour), int(minute), int(second or 0))
