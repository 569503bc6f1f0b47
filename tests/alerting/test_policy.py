"""Episodes and per-number caps, decided from plain records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_juhe.alerting.policy import admit, check_caps, decide_alert, decide_resolve, release
from airflow_provider_juhe.alerting.state import variable_key

HOUR = timedelta(hours=1)


def test_an_episode_sends_once_per_interval_and_shows_what_it_held_back():
    first = decide_alert(None, 1000.0, HOUR)
    held = decide_alert(first.state, 1100.0, HOUR)
    held_again = decide_alert(held.state, 1200.0, HOUR)
    after = decide_alert(held_again.state, 1000.0 + 3600, HOUR)

    assert (first.send, first.suppressed_count) == (True, 0)
    assert (held.send, held_again.send) == (False, False)
    assert held_again.state["suppressed"] == 2
    assert (after.send, after.suppressed_count, after.state["suppressed"]) == (True, 2, 0)


def test_without_repeat_interval_every_alert_sends():
    first = decide_alert(None, 1000.0, None)

    assert decide_alert(first.state, 1001.0, None).send


def test_a_recovery_sends_only_while_an_episode_is_open_and_closes_it():
    alert = decide_alert(decide_alert(None, 1000.0, HOUR).state, 1010.0, HOUR)
    recovery = decide_resolve(alert.state, 1020.0)

    assert decide_resolve(None, 1000.0).send is False
    assert (recovery.send, recovery.suppressed_count) == (True, 1)
    assert decide_resolve(recovery.state, 1030.0).send is False
    assert decide_alert(recovery.state, 1040.0, HOUR).send  # a new episode pages at once


def test_caps_refuse_a_number_at_its_limit_and_count_it_into_its_next_page():
    limits = {"minute": 1, "hour": 2}
    first = admit(None, ["13800138000", "13100001111"], 0.0, limits)
    refused = admit(first.state, ["13800138000"], 30.0, limits)
    second = admit(refused.state, ["13800138000"], 61.0, limits)
    hour_full = admit(second.state, ["13800138000"], 130.0, limits)
    next_hour = admit(hour_full.state, ["13800138000"], 3601.0, limits)

    assert first.allowed == {"13800138000": 0, "13100001111": 0}
    assert (refused.allowed, refused.refused) == ({}, ["13800138000"])
    assert second.allowed == {"13800138000": 1}
    assert hour_full.refused == ["13800138000"]
    assert next_hour.allowed == {"13800138000": 1}
    assert "13800138000" not in repr(first.state)  # Variables show digests, not numbers


def test_a_page_that_did_not_go_out_gives_its_slot_and_count_back():
    limits = {"minute": 1}
    refused = admit(admit(None, ["13800138000"], 0.0, limits).state, ["13800138000"], 10.0, limits)
    paged = admit(refused.state, ["13800138000"], 70.0, limits)

    undone = release(paged.state, ["13800138000"], 70.0, paged.allowed)

    again = admit(undone, ["13800138000"], 71.0, limits)
    assert again.allowed == {"13800138000": 1}


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"week": 3}, "unknown window"),
        ({"minute": 0}, "positive integer"),
        ({"day": "20"}, "positive integer"),
        (["minute"], r"max_per_number: expected a mapping .* got list \['minute'\]"),
        ("minute", r"max_per_number: expected a mapping .* got str 'minute'"),
        ({1: 1, None: 2, "minute": 1}, r"max_per_number: unknown window\(s\) 1, None; use 'minute'"),
    ],
)
def test_caps_are_checked(limits, message):
    with pytest.raises(ValueError, match=message):
        check_caps(limits)


def test_variable_keys_are_short_and_url_safe_for_any_group_key():
    key = variable_key("alert", "example/manual__2026-11-27T00:40:14+00:00 " * 20)

    assert key.startswith("juhe_sms_alert_")
    assert len(key) < 64
    assert key.replace("_", "").isalnum()


def test_state_that_cannot_be_read_is_treated_as_absent(monkeypatch):
    from airflow_provider_juhe.alerting import state

    def broken(key):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    monkeypatch.setattr(state, "_load", broken)

    assert state.load("juhe_sms_alert_x") is None
