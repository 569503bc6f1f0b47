"""Episodes and per-number caps, decided from plain records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_juhe.alerting.policy import (
    admit,
    check_caps,
    decide_resolve,
    expire_claim,
    give_back,
    number_id,
    release,
    settle,
)
from airflow_provider_juhe.alerting.policy import decide_alert as claim_alert
from airflow_provider_juhe.alerting.state import variable_key

HOUR = timedelta(hours=1)
SECRET = "appkey-0123"
CLAIM = 30.0


def decide_alert(state, now, repeat_interval, token="t"):
    """An alert whose SMS then went out (its claim settled at once)."""
    decision = claim_alert(state, now, repeat_interval, token, CLAIM)
    if decision.send:
        return type(decision)(True, decision.suppressed_count, settle(decision.state, token, now))
    return decision


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
    first = admit(None, ["13800138000", "13100001111"], 0.0, limits, SECRET)
    refused = admit(first.state, ["13800138000"], 30.0, limits, SECRET)
    second = admit(refused.state, ["13800138000"], 61.0, limits, SECRET)
    hour_full = admit(second.state, ["13800138000"], 130.0, limits, SECRET)
    next_hour = admit(hour_full.state, ["13800138000"], 3601.0, limits, SECRET)

    assert first.allowed == {"13800138000": 0, "13100001111": 0}
    assert (refused.allowed, refused.refused) == ({}, ["13800138000"])
    assert second.allowed == {"13800138000": 1}
    assert hour_full.refused == ["13800138000"]
    assert next_hour.allowed == {"13800138000": 1}
    assert "13800138000" not in repr(first.state)  # Variables show digests, not numbers


def test_a_page_that_did_not_go_out_gives_its_slot_and_count_back():
    limits = {"minute": 1}
    refused = admit(
        admit(None, ["13800138000"], 0.0, limits, SECRET).state, ["13800138000"], 10.0, limits, SECRET
    )
    paged = admit(refused.state, ["13800138000"], 70.0, limits, SECRET)

    undone = release(paged.state, ["13800138000"], 70.0, paged.allowed, SECRET)

    again = admit(undone, ["13800138000"], 71.0, limits, SECRET)
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


def test_a_pending_claim_holds_back_racing_alerts_and_counts_them():
    claimed = claim_alert(None, 1000.0, HOUR, "a", CLAIM)
    racing = claim_alert(claimed.state, 1000.5, HOUR, "b", CLAIM)
    sent = settle(racing.state, "a", 1001.0)

    assert claimed.send
    assert racing.send is False
    assert sent["suppressed"] == 1
    assert sent["last_sent"] == 1001.0
    assert "claim" not in sent


def test_a_claim_whose_process_died_expires_and_the_next_alert_pages_with_the_count():
    earlier = decide_alert(None, 0.0, HOUR)
    held = claim_alert(earlier.state, 10.0, HOUR, "x", CLAIM)  # within the interval: counted
    claimed = claim_alert({**held.state, "last_sent": -5000.0}, 20.0, HOUR, "dies", CLAIM)

    during = claim_alert(claimed.state, 20.0 + CLAIM - 1, HOUR, "b", CLAIM)
    after = claim_alert(during.state, 20.0 + CLAIM + 1, HOUR, "c", CLAIM)

    assert claimed.send
    assert claimed.suppressed_count == 1
    assert during.send is False
    assert after.send
    assert after.suppressed_count == 2  # the dead claim's count and the one held while it was pending


def test_giving_back_restores_the_episode_and_its_count():
    opened = decide_alert(None, 0.0, HOUR)
    held = claim_alert(opened.state, 10.0, HOUR, "h", CLAIM)
    claimed = claim_alert({**held.state, "last_sent": -4000.0}, 20.0, HOUR, "mine", CLAIM)

    back = give_back(claimed.state, "mine", count_this_one=True)

    assert back["last_sent"] == -4000.0
    assert back["suppressed"] == 2
    assert back["open"] is True
    assert expire_claim(back, 10_000.0) == back


def test_a_first_alert_held_back_by_a_cap_leaves_no_episode_open():
    claimed = claim_alert(None, 0.0, HOUR, "mine", CLAIM)

    back = give_back(claimed.state, "mine", count_this_one=True)

    assert not back.get("open")
    assert decide_resolve(back, 5.0).send is False
    assert claim_alert(back, 6.0, HOUR, "next", CLAIM).suppressed_count == 1


def test_a_recovery_closes_the_episode_even_while_an_alert_is_claimed():
    opened = decide_alert(None, 0.0, HOUR)
    claimed = claim_alert({**opened.state, "last_sent": -4000.0}, 10.0, HOUR, "mine", CLAIM)

    recovery = decide_resolve(claimed.state, 11.0)

    assert recovery.send
    assert recovery.state["open"] is False
    assert claim_alert(recovery.state, 12.0, HOUR, "new", CLAIM).send  # the next failure pages


def test_numbers_are_keyed_digests():
    digest = number_id("13800138000", SECRET)

    assert digest != number_id("13800138000", "another key")
    assert "13800138000" not in digest
    # A plain hash of the number (what a 10-digit search reverses) is not what is stored.
    import hashlib

    assert not hashlib.sha256(b"13800138000").hexdigest().startswith(digest[:16])


def test_a_confirmation_beside_the_episode_settles_its_claim_even_after_it_expired():
    from airflow_provider_juhe.alerting.policy import confirm

    claimed = claim_alert(None, 0.0, HOUR, "sender", CLAIM)
    confirmed = confirm(claimed.state, {"token": "sender", "at": 1.0})
    expired_but_sent = claim_alert(
        confirm(claimed.state, {"token": "sender", "at": 1.0}), CLAIM + 5, HOUR, "n", CLAIM
    )
    stale = confirm(claimed.state, {"token": "someone else", "at": 1.0})

    assert confirmed["last_sent"] == 1.0
    assert "claim" not in confirmed
    assert expired_but_sent.send is False  # within repeat_interval of the confirmed SMS: no second page
    assert stale == claimed.state | {"suppressed": 0}
