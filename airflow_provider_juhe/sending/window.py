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
        """The first opening after ``moment``, in UTC."""
        local = pendulum.instance(moment).in_timezone(self.timezone)
        day = local.date()
        for offset in range(3):
            date = day.add(days=offset)
            opening = pendulum.datetime(
                date.year, date.month, date.day, self.start.hour, self.start.minute, self.start.second,
                tz=self.timezone,
            )  # fmt: skip
            if opening > local:
                return opening.in_timezone("UTC")
        raise AssertionError("a daily window opens within two days")  # pragma: no cover

    def __str__(self) -> str:
        return f"{self.start.isoformat()}-{self.end.isoformat()} {self.timezone.name}"


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
