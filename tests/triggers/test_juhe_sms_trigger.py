"""JuheTemplateApprovedTrigger on its own: serialisation and the events it yields against the sandbox."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_provider_juhe.triggers.juhe_sms import JuheTemplateApprovedTrigger


def first_event(trigger):
    async def collect():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(collect(), timeout=10))


def test_serialize_round_trip_carries_no_secret():
    trigger = JuheTemplateApprovedTrigger(tpl_ids=[1, 2], juhe_conn_id="my_conn", poll_interval=5)

    path, kwargs = trigger.serialize()

    assert path == "airflow_provider_juhe.triggers.juhe_sms.JuheTemplateApprovedTrigger"
    assert kwargs == {"tpl_ids": [1, 2], "juhe_conn_id": "my_conn", "poll_interval": 5.0, "end_time": None}
    assert JuheTemplateApprovedTrigger(**kwargs).serialize() == (path, kwargs)


def test_polls_until_approved(sandbox_conn):
    sandbox_conn.state.approve_after = 0.3
    tpl_id = sandbox_conn.add_template("验证码#code#", state=2)

    event = first_event(JuheTemplateApprovedTrigger([tpl_id], "juhe_sms_default", poll_interval=0.1))

    assert event["status"] == "approved"
    assert [t["tpl_id"] for t in event["templates"]] == [tpl_id]
    polls = [c for c in sandbox_conn.calls() if c["path"].endswith("myTemplates.php")]
    assert len(polls) >= 2


def test_times_out_at_end_time(sandbox_conn):
    tpl_id = sandbox_conn.add_template("验证码#code#", state=0)

    event = first_event(
        JuheTemplateApprovedTrigger([tpl_id], "juhe_sms_default", poll_interval=5, end_time=time.time() + 0.3)
    )

    assert event == {"status": "timeout", "tpl_ids": [tpl_id]}


def test_rejected_and_unknown(sandbox_conn):
    rejected = sandbox_conn.add_template("x", state=1)
    approved = sandbox_conn.add_template("y")

    assert first_event(JuheTemplateApprovedTrigger([approved, rejected], "juhe_sms_default"))["tpl_ids"] == [
        rejected
    ]
    unknown = first_event(JuheTemplateApprovedTrigger([approved, 999], "juhe_sms_default"))
    assert (unknown["status"], unknown["tpl_ids"]) == ("unknown", [999])


def test_error_event_never_carries_the_key(sandbox_conn, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": sandbox_conn.url, "password": "wrong-key-123"}),
    )

    event = first_event(JuheTemplateApprovedTrigger([1], "juhe_sms_default"))

    assert event["status"] == "error"
    assert "10001" in event["message"]
    assert "wrong-key-123" not in event["message"]


try:
    from airflow.sdk.execution_time.comms import DeadlockImminentError
except ImportError:  # before 3.3 the channel has no such check: the stand-in brings its own

    class DeadlockImminentError(RuntimeError):
        """What 3.3's channel raises on a blocking call from the event loop."""


class StrictComms:
    """
    Stands in for the triggerer's supervisor channel: like the real one while an async call is in
    flight, a blocking ``send`` from the event loop's thread raises ``DeadlockImminentError``.
    """

    def __init__(self) -> None:
        self.async_messages: list[str] = []

    def send(self, msg):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        raise DeadlockImminentError(msg)

    async def asend(self, msg):
        self.async_messages.append(type(msg).__name__)
        return None


def test_trigger_makes_no_blocking_supervisor_call_on_the_event_loop(sandbox_conn, monkeypatch):
    import airflow.sdk.log
    from airflow.sdk.execution_time import task_runner

    comms = StrictComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    tpl_id = sandbox_conn.add_template("验证码#code#")

    event = first_event(JuheTemplateApprovedTrigger([tpl_id], "juhe_sms_default", poll_interval=0.1))

    assert event["status"] == "approved"
    if hasattr(airflow.sdk.log, "amask_secret"):  # 3.3: the key was masked through the async channel
        assert "MaskSecret" in comms.async_messages


def test_strict_comms_catches_a_blocking_call(monkeypatch):
    """The stand-in is strict: the masking a sync config read does raises on the loop."""
    import airflow.sdk.log
    from airflow.sdk.execution_time import task_runner

    if not hasattr(airflow.sdk.log, "amask_secret"):
        pytest.skip("before 3.3 the secrets masker makes no supervisor call to catch")
    mask_secret = airflow.sdk.log.mask_secret
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", StrictComms(), raising=False)

    async def blocking():
        mask_secret("a-secret-value")

    with pytest.raises(DeadlockImminentError):
        asyncio.run(blocking())


def test_auth_error_event_says_so(sandbox_conn, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": sandbox_conn.url, "password": "revoked"}),
    )

    event = first_event(JuheTemplateApprovedTrigger([1], "juhe_sms_default"))

    assert (event["status"], event["error_code"], event["auth"]) == ("error", 10001, True)
