"""JuheTemplateApprovedSensor in poke, reschedule and deferrable modes, inside real DAG runs."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from airflow_provider_juhe.sensors.juhe_sms import JuheTemplateApprovedSensor
from airflow_provider_juhe.triggers.juhe_sms import JuheTemplateApprovedTrigger
from tests.dag_runs import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")
MODES = ["poke", "reschedule", "deferrable"]


@pytest.mark.parametrize("mode", MODES)
def test_succeeds_once_approved_and_returns_the_records(sandbox_conn, mode):
    sandbox_conn.state.approve_after = 0.5
    tpl_id = sandbox_conn.add_template("验证码#code#", state=2)

    result = run_dag(f"juhe_test_sensor_{mode}", tpl_id=tpl_id)

    assert result.state == "success"
    (record,) = result.xcom("wait_for_approval")
    assert (record["tpl_id"], record["state"], record["state_name"]) == (tpl_id, 3, "approved")


@pytest.mark.parametrize("mode", MODES)
def test_rejected_template_fails_at_once_without_retries(sandbox_conn, mode):
    sandbox_conn.state.approve_after = 0.3
    tpl_id = sandbox_conn.add_template("线上赌博", state=2)

    result = run_dag(f"juhe_test_sensor_{mode}", tpl_id=tpl_id)

    assert result.state == "failed"
    assert result.tries["wait_for_approval"] == 1  # the DAG allows 2 retries: none was used


@pytest.mark.parametrize("mode", MODES)
def test_unknown_template_fails_at_once_without_retries(sandbox_conn, mode):
    result = run_dag(f"juhe_test_sensor_{mode}", tpl_id=4242)

    assert result.state == "failed"
    assert result.tries["wait_for_approval"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_timeout_is_honoured(sandbox_conn, mode):
    tpl_id = sandbox_conn.add_template("验证码#code#", state=0)  # never reviewed

    result = run_dag(f"juhe_test_sensor_{mode}", tpl_id=tpl_id)

    assert result.state == "failed"
    if mode == "reschedule" and _airflow_before("3.1"):
        # Airflow 3.0's dag.test() counts every reschedule as a try: no retry is used all the same.
        assert result.tries["wait_for_approval"] >= 1
    else:
        assert result.tries["wait_for_approval"] == 1


def _airflow_before(version: str) -> bool:
    from airflow import __version__
    from packaging.version import Version

    return Version(__version__) < Version(version)


def test_deferrable_mode_checks_once_then_waits_in_the_trigger(sandbox_conn, monkeypatch):
    sandbox_conn.state.approve_after = 3600  # approved only once the trigger runs (below)
    tpl_id = sandbox_conn.add_template("验证码#code#", state=2)
    runs = []
    original_run = JuheTemplateApprovedTrigger.run
    original_poke = JuheTemplateApprovedSensor.poke

    async def recording_run(self):
        runs.append(self.serialize())
        # Approved while the task waits in the trigger, after a few of its looks (a fixed delay from
        # the DAG run's start raced the parsing and the first poke on a loaded machine).
        sandbox_conn.state.approve_after = 0.5
        sandbox_conn.set_template_state(tpl_id, 2)
        async for event in original_run(self):
            runs.append(event.payload["status"])
            yield event

    def recording_poke(self, context):
        checked = original_poke(self, context)
        runs.append(("poke", checked.is_done))
        return checked

    monkeypatch.setattr(JuheTemplateApprovedTrigger, "run", recording_run)
    monkeypatch.setattr(JuheTemplateApprovedSensor, "poke", recording_poke)

    result = run_dag("juhe_test_sensor_deferrable", tpl_id=tpl_id)

    assert result.state == "success"
    assert runs == [
        ("poke", False),  # one look before deferring, then the worker slot is freed
        (
            "airflow_provider_juhe.triggers.juhe_sms.JuheTemplateApprovedTrigger",
            {"tpl_ids": [tpl_id], "juhe_conn_id": "juhe_sms_default", "poll_interval": 1.0, "end_time": ANY},
        ),
        "approved",
    ]


def test_deferrable_mode_does_not_defer_for_an_approved_template(sandbox_conn, monkeypatch):
    tpl_id = sandbox_conn.add_template("验证码#code#")

    def no_trigger(self):
        raise AssertionError("an approved template needs no deferral")

    monkeypatch.setattr(JuheTemplateApprovedTrigger, "run", no_trigger)

    result = run_dag("juhe_test_sensor_deferrable", tpl_id=tpl_id)

    assert result.state == "success"
    assert len([c for c in sandbox_conn.calls() if c["path"].endswith("myTemplates.php")]) == 1


def test_deferrable_auth_error_in_the_trigger_fails_at_once_without_retries(sandbox_conn):
    sandbox_conn.state.approve_after = 60
    tpl_id = sandbox_conn.add_template("验证码#code#", state=2)
    # The check before deferring passes; the key is revoked while the trigger waits.
    sandbox_conn.inject("error", error_code=10001, times=None, after=1, path="myTemplates.php")

    result = run_dag("juhe_test_sensor_deferrable", tpl_id=tpl_id)

    assert result.state == "failed"
    assert result.tries["wait_for_approval"] == 1  # the DAG allows 2 retries; an auth error uses none


def test_tpl_id_accepts_a_submit_result_and_rejects_junk():
    from airflow_provider_juhe.template_review import template_ids

    submitted = {"tpl_id": 7, "carrier_tpl_ids": {"all": 7, "mobile": 8, "unicom": 9, "telecom": 10}}
    assert template_ids(submitted) == [7, 8, 9, 10]
    assert template_ids(["3", 3, 4]) == [3, 4]
    with pytest.raises(ValueError, match="tpl_id: expected positive template ids, got 'x'"):
        template_ids(["x"])
