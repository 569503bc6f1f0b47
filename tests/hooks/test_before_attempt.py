"""send_sms(before_attempt=...): a check made right before each request starts, after every wait."""

from __future__ import annotations

import json

import pytest

from airflow_provider_juhe.exceptions import JuheNotStarted
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.hooks.rate_limit import RateLimiter

BASE = "http://juhe.test"
SEND = f"{BASE}/shortLetter/send.php"


@pytest.fixture
def events(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": BASE, "password": "k", "extra": {"max_retries": 3}}),
    )
    return []


def hook_recording(events: list[str]) -> JuheSmsHook:
    hook = JuheSmsHook(retry_wait=1, sleep=lambda seconds: events.append(f"backoff {seconds:g}"))
    hook._limiter = RateLimiter(1.0, clock=lambda: 0.0, sleep=lambda seconds: events.append("pacer"))
    hook._limiter._next_slot = 5.0  # every call waits for its slot
    return hook


def test_the_check_comes_after_the_pacer_and_before_each_retry(events, requests_mock):
    requests_mock.post(
        SEND,
        [
            {"json": {"error_code": 222800, "reason": "网络错误", "result": None}},
            {"json": {"error_code": 0, "reason": "ok", "result": {"sid": "1", "fee": 1}}},
        ],
    )
    hook = hook_recording(events)

    hook.send_sms(["13800000001"], 1, before_attempt=lambda: events.append("check"))

    assert events == ["pacer", "check", "backoff 1", "pacer", "check"]


def test_a_refusing_check_stops_the_call_with_nothing_sent_and_no_retry(events, requests_mock):
    requests_mock.post(SEND, [{"json": {"error_code": 222800, "reason": "网络错误", "result": None}}])
    hook = hook_recording(events)
    checks = iter([None])

    def check():
        events.append("check")
        if next(checks, "closed") == "closed":
            raise JuheNotStarted("the send window has closed; nothing was sent")

    with pytest.raises(JuheNotStarted, match="window has closed"):
        hook.send_sms(["13800000001"], 1, before_attempt=check)

    assert requests_mock.call_count == 1  # the first attempt went out; the retry never started
    assert events == ["pacer", "check", "backoff 1", "pacer", "check"]
