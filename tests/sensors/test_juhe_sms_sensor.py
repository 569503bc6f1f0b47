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
    assert result.tries["wait_for_approval"] == 1


def test_deferrable_mode_waits_in_the_trigger_not_in_poke(sandbox_conn, monkeypatch):
    sandbox_conn.state.approve_after = 0.5
    tpl_id = sandbox_conn.add_template("验证码#code#", state=2)
    runs = []
    original_run = JuheTemplateApprovedTrigger.run

    async def recording_run(self):
        runs.append(self.serialize())
        async for event in original_run(self):
            runs.append(event.payload["status"])
            yield event

    def forbidden_poke(self, context):
        raise AssertionError("a deferrable sensor must not poke in the worker")

    monkeypatch.setattr(JuheTemplateApprovedTrigger, "run", recording_run)
    monkeypatch.setattr(JuheTemplateApprovedSensor, "poke", forbidden_poke)

    result = run_dag("juhe_test_sensor_deferrable", tpl_id=tpl_id)

    assert result.state == "success"
    assert runs == [
        (
            "airflow_provider_juhe.triggers.juhe_sms.JuheTemplateApprovedTrigger",
            {"tpl_ids": [tpl_id], "juhe_conn_id": "juhe_sms_default", "poll_interval": 0.2, "end_time": ANY},
        ),
        "approved",
    ]


def test_tpl_id_accepts_a_submit_result_and_rejects_junk():
    from airflow_provider_juhe.template_review import template_ids

    submitted = {"tpl_id": 7, "carrier_tpl_ids": {"all": 7, "mobile": 8, "unicom": 9, "telecom": 10}}
    assert template_ids(submitted) == [7, 8, 9, 10]
    assert template_ids(["3", 3, 4]) == [3, 4]
    with pytest.raises(ValueError, match="tpl_id: expected positive template ids, got 'x'"):
        template_ids(["x"])
