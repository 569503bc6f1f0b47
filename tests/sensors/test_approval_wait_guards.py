"""
The approval wait holds its guards: a poll floor of 1 s, and transient read failures tolerated with
backoff for 60 s (a blip never ends a wait; a longer outage fails naming its cause), in every mode.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest

from airflow_provider_juhe.exceptions import JuheError, JuheResponseError
from airflow_provider_juhe.hooks import polling
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sensors import juhe_sms as sensor_module
from airflow_provider_juhe.sensors.juhe_sms import JuheTemplateApprovedSensor
from airflow_provider_juhe.triggers import juhe_sms as trigger_module
from airflow_provider_juhe.triggers.juhe_sms import JuheTemplateApprovedTrigger
from tests.dag_runs import run_dag

MODES = ["poke", "reschedule", "deferrable"]
BASE = "http://juhe.test"
TEMPLATES = f"{BASE}/shortLetter/myTemplates.php"
BAD_GATEWAY = {"status_code": 502, "text": "<html>502 Bad Gateway</html>"}
APPROVED = {
    "json": {
        "error_code": 0,
        "reason": "ok",
        "result": {"templates": [{"tplId": 7, "tpl": "x", "tpl_state": 3}]},
    }
}


def template_reads(sandbox) -> int:
    return sum(call["path"].endswith("myTemplates.php") for call in sandbox.calls())


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", MODES)
def test_a_poll_interval_of_zero_polls_once_a_second(sandbox_conn, mode):
    """Before: poke_interval=0 made 2,345 myTemplates calls in 2 s."""
    tpl_id = sandbox_conn.add_template("验证码#code#", state=0)  # never reviewed: waits out its timeout

    began = time.monotonic()
    result = run_dag(f"juhe_test_sensor_floor_{mode}", tpl_id=tpl_id)
    took = time.monotonic() - began

    assert result.state == "failed"  # the sensor's timeout
    # At most one look a second, plus the first look (and the deferrable pre-check): how long the
    # timeout takes to end the wait differs between Airflow versions' reschedule handling.
    assert template_reads(sandbox_conn) <= took + 2


def test_the_floor_is_a_warning_and_one_second():
    sensor = JuheTemplateApprovedSensor(task_id="wait", tpl_id=1, poke_interval=0.01)
    trigger = JuheTemplateApprovedTrigger([1], "juhe_sms_default", poll_interval=0)

    assert sensor.poke_interval == trigger.poll_interval == polling.MIN_POLL_SECONDS == 1.0
    assert JuheTemplateApprovedSensor(task_id="w", tpl_id=1, poke_interval=5).poke_interval == 5


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", MODES)
def test_a_blip_of_bad_gateways_does_not_end_the_wait(sandbox_conn, mode):
    """Before: a 502 blip under 3 s (the hook's own retries spent) failed the try."""
    tpl_id = sandbox_conn.add_template("验证码#code#")
    sandbox_conn.inject("html_502", times=6, path="myTemplates.php")  # more than the hook's 4 attempts

    result = run_dag(f"juhe_test_sensor_{mode}", tpl_id=tpl_id)

    assert result.state == "success"
    assert result.tries["wait_for_approval"] == 1  # no Airflow retry was spent on the blip
    assert template_reads(sandbox_conn) == 7


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(polling, "monotonic", fake)
    monkeypatch.setattr(sensor_module.time, "sleep", fake.sleep)
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": BASE, "password": "k", "extra": {"max_retries": 0}}),
    )
    return fake


def outage(clock: FakeClock, seconds: float):
    """requests-mock answers: 502 while the fake clock is within ``seconds`` of its start, then approved."""

    def answer(request, context):
        if clock.now < seconds:
            clock.now += 0.5  # each failed read takes a moment
            context.status_code = 502
            return "<html>502 Bad Gateway</html>"
        return json.dumps(APPROVED["json"])

    return answer


def poking_sensor(clock: FakeClock) -> JuheTemplateApprovedSensor:
    sensor = JuheTemplateApprovedSensor(task_id="wait", tpl_id=7)
    sensor.__dict__["hook"] = JuheSmsHook(sleep=clock.sleep)
    return sensor


@pytest.mark.parametrize("seconds", [5, 30, 59])
def test_poke_rides_out_an_outage_shorter_than_a_minute(clock, requests_mock, seconds):
    requests_mock.post(TEMPLATES, text=outage(clock, seconds))

    checked = poking_sensor(clock).poke({})

    assert checked.is_done
    waits = requests_mock.call_count - 1
    assert waits <= 12  # backoff, not a tight loop


@pytest.mark.parametrize("seconds", [61, 3600])
def test_poke_fails_after_a_minute_of_failures_naming_the_cause(clock, requests_mock, seconds):
    requests_mock.post(TEMPLATES, text=outage(clock, seconds))

    with pytest.raises(JuheError) as raised:
        poking_sensor(clock).poke({})

    message = str(raised.value)
    assert "could not be read for 60 s" in message
    assert "HTTP 502" in message
    assert not raised.value.final  # the task's retries apply
    assert clock.now < 62


def test_the_trigger_rides_out_a_blip_and_ends_a_long_outage_with_an_error_event(monkeypatch, requests_mock):
    fake = FakeClock()
    monkeypatch.setattr(polling, "monotonic", fake)

    async def no_wait(seconds):
        fake.sleep(seconds)

    monkeypatch.setattr(
        trigger_module, "asyncio", SimpleNamespace(sleep=no_wait, to_thread=asyncio.to_thread)
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": BASE, "password": "k", "extra": {"max_retries": 0}}),
    )

    def first_event(seconds):
        requests_mock.post(TEMPLATES, text=outage(fake, fake.now + seconds))

        async def collect():
            async for event in JuheTemplateApprovedTrigger([7], "juhe_sms_default").run():
                return event.payload

        return asyncio.run(asyncio.wait_for(collect(), timeout=10))

    assert first_event(50)["status"] == "approved"
    failed = first_event(600)
    assert failed["status"] == "error"
    assert failed["final"] is False
    assert "could not be read for 60 s" in failed["message"]
    assert "HTTP 502" in failed["message"]


def test_the_outage_policy_at_its_bounds():
    fake = FakeClock()
    policy = polling.ReadOutage(clock=fake)
    error = JuheResponseError(502, "<html>")
    waits = []
    while fake.now < 59.9:
        waits.append(policy.failed(error))
        fake.sleep(waits[-1])
    assert waits[:5] == [1, 2, 4, 8, 15]
    with pytest.raises(JuheError, match=r"could not be read for 60 s \(\d+ attempts in a row"):
        policy.failed(error)
    policy.succeeded()
    assert policy.failed(error) == 1  # a new run of failures starts over


def test_warning_is_logged(monkeypatch):
    warned = []
    monkeypatch.setattr(polling, "MIN_POLL_SECONDS", 1.0)
    assert polling.poll_interval(0, warned.append) == 1.0
    assert "below the floor of 1 s" in warned[0]
