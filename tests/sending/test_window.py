"""Send windows: parsing, open or closed at a moment, and the next opening, across midnight and DST."""

from __future__ import annotations

import pendulum
import pytest

from airflow_provider_juhe.sending.window import SendWindow


def at(text: str, tz: str = "Asia/Shanghai") -> pendulum.DateTime:
    return pendulum.parse(text, tz=tz)


def test_a_daytime_window():
    window = SendWindow.parse(("08:00", "21:00:30"), "Asia/Shanghai")

    assert not window.is_open(at("2026-11-27T07:59:59"))
    assert window.is_open(at("2026-11-27T08:00:00"))
    assert window.is_open(at("2026-11-27T21:00:29"))
    assert not window.is_open(at("2026-11-27T21:00:30"))
    assert window.is_open(pendulum.datetime(2026, 11, 27, 1, 0, tz="UTC"))  # 09:00 in Shanghai
    assert window.next_opening(at("2026-11-27T06:00")) == at("2026-11-27T08:00").in_timezone("UTC")
    assert window.next_opening(at("2026-11-27T22:00")) == at("2026-11-28T08:00")
    assert str(window) == "08:00:00-21:00:30 Asia/Shanghai"


def test_a_window_over_midnight():
    window = SendWindow.parse(["22:00", "06:00"], "Asia/Shanghai")

    assert window.is_open(at("2026-11-27T23:30"))
    assert window.is_open(at("2026-11-28T05:59"))
    assert not window.is_open(at("2026-11-28T12:00"))
    assert window.next_opening(at("2026-11-28T12:00")) == at("2026-11-28T22:00")


def test_the_next_opening_on_a_day_the_clocks_change():
    window = SendWindow.parse(("02:30", "08:00"), "America/New_York")

    # 2026-03-08 02:30 does not exist in New York: the window opens as the clocks jump, at 03:00
    # EDT, already past 02:30 (not at 03:30, an hour after 02:30 EST: the window was open then).
    opening = window.next_opening(at("2026-03-08T01:00", "America/New_York"))

    assert opening == pendulum.datetime(2026, 3, 8, 7, 0, tz="UTC")  # 03:00 EDT
    assert window.is_open(opening)


@pytest.mark.parametrize(
    ("send_window", "timezone", "message"),
    [
        ("08:00-21:00", "Asia/Shanghai", "send_window: expected two times"),
        (("08:00",), "Asia/Shanghai", "send_window: expected two times"),
        (("8:00", "21:00"), "Asia/Shanghai", "send_window: expected HH:MM or HH:MM:SS, got '8:00'"),
        (("08:00", "24:00"), "Asia/Shanghai", "send_window: expected HH:MM or HH:MM:SS, got '24:00'"),
        (("08:00", 2100), "Asia/Shanghai", "send_window: expected HH:MM or HH:MM:SS, got 2100"),
        (("08:00", "08:00:00"), "Asia/Shanghai", "send_window: start and end are the same time"),
        (("08:00", "21:00"), "Mars/Olympus", "timezone: unknown time zone 'Mars/Olympus'"),
        (None, "Beijing", "timezone: unknown time zone 'Beijing'"),
    ],
)
def test_bad_windows_and_zones_are_named(send_window, timezone, message):
    with pytest.raises(ValueError, match=message):
        SendWindow.parse(send_window, timezone)


def test_no_window_is_any_time():
    assert SendWindow.parse(None, "UTC") is None
