"""Send windows searched with hypothesis across DST changes: open or closed, and the next opening."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pendulum
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.sending.window import SendWindow

UTC = datetime.timezone.utc
#: Zones whose clocks change: forward and back by an hour in either hemisphere, by half an hour on
#: Lord Howe Island; and one that never changes.
ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "Asia/Shanghai")
#: 2025-2027, so that every kind of change in these zones is in range.
START, SPAN = int(datetime.datetime(2025, 1, 1, tzinfo=UTC).timestamp()), 3 * 365 * 86_400


def clock_changes(zone: str) -> list[int]:
    """The hours of 2026 in which the zone's clocks change, found with zoneinfo alone."""
    first = int(datetime.datetime(2026, 1, 1, tzinfo=UTC).timestamp())

    def offset(seconds: int) -> datetime.timedelta | None:
        return datetime.datetime.fromtimestamp(seconds, ZoneInfo(zone)).utcoffset()

    return [hour for hour in range(first, first + 365 * 86_400, 3600) if offset(hour) != offset(hour + 3600)]


CHANGES = {zone: clock_changes(zone) for zone in ZONES}
#: Any time of day, and more often one in the small hours, when clocks change.
times = st.one_of(
    st.builds(
        datetime.time, st.integers(0, 23), st.sampled_from((0, 1, 15, 29, 30, 59)), st.sampled_from((0, 59))
    ),
    st.builds(datetime.time, st.integers(0, 3), st.integers(0, 59)),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, datetime.time, datetime.time, datetime.datetime]:
    """A zone, a window, and an instant: half of the instants within a day or two of a clock change."""
    zone = draw(st.sampled_from(ZONES))
    start, end = draw(times), draw(times)
    assume(start != end)
    if CHANGES[zone] and draw(st.booleans()):
        seconds = draw(st.sampled_from(CHANGES[zone])) + draw(st.integers(-2 * 86_400, 86_400))
    else:
        seconds = draw(st.integers(START, START + SPAN))
    return zone, start, end, datetime.datetime.fromtimestamp(seconds, UTC)


def open_by_wall_clock(window: SendWindow, moment: datetime.datetime, zone: str) -> bool:
    """The definition, with the standard library's zoneinfo: the local wall-clock time in the window."""
    local = moment.astimezone(ZoneInfo(zone)).time()
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end


@settings(max_examples=200, deadline=None)
@given(cases())
def test_is_open_agrees_with_the_wall_clock(case):
    zone, start, end, moment = case
    window = SendWindow.parse((start.isoformat(), end.isoformat()), zone)

    assert window.is_open(moment) == open_by_wall_clock(window, moment, zone)


@settings(max_examples=100, deadline=None)
@given(cases())
# The start falls in the hour New York skips: the window opens when the clocks jump, at 03:00 EDT.
@example(
    ("America/New_York", datetime.time(2, 30), datetime.time(8), datetime.datetime(2026, 3, 8, 5, tzinfo=UTC))
)
# The start comes twice as London's clocks go back: the second 01:30 is still ahead.
@example(
    (
        "Europe/London",
        datetime.time(1, 30),
        datetime.time(1, 40),
        datetime.datetime(2026, 10, 25, 0, 45, tzinfo=UTC),
    )
)
def test_the_next_opening_is_the_first_open_instant_ahead(case):
    zone, start, end, moment = case
    window = SendWindow.parse((start.isoformat(), end.isoformat()), zone)
    assume(not window.is_open(moment))  # the operator asks only when the window is closed

    opening = window.next_opening(moment)

    assert opening > moment
    assert opening.tzinfo is not None
    assert open_by_wall_clock(window, opening, zone)
    # Nothing open in between: the wall clock can only enter the window at a whole second
    # (its start, or a clock change), so every second before the opening is checked.
    step = pendulum.instance(moment).add(seconds=1).replace(microsecond=0)
    first = int(step.timestamp())
    for seconds in range(first, int(opening.timestamp())):
        if seconds % 60 == 0 or seconds - first < 120:  # minutes, and the first seconds
            instant = datetime.datetime.fromtimestamp(seconds, UTC)
            assert not open_by_wall_clock(window, instant, zone), instant
