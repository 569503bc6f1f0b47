"""JuheSmsNotifier in callbacks of real DAG runs, and rendering afresh for every call."""

from __future__ import annotations

import pytest

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier, send_juhe_sms_notification
from tests.dag_runs import run_dag


@pytest.mark.usefixtures("airflow_db")
def test_success_and_failure_callbacks_each_send_one_sms(sandbox_conn):
    tpl_id = sandbox_conn.add_template("任务#task#结束", "运维")

    result = run_dag("juhe_test_notifier", mobiles="13800138000", tpl_id=tpl_id)

    assert result.states == {"succeeds": "success", "fails": "failed"}
    assert sorted((m["mobiles"][0], m["text"]) for m in sandbox_conn.messages()) == [
        ("13800138000", "【运维】任务fails结束"),
        ("13800138000", "【运维】任务succeeds结束"),
    ]


@pytest.mark.usefixtures("airflow_db")
def test_a_failed_notification_never_masks_the_task_outcome(sandbox_conn):
    unapproved = sandbox_conn.add_template("任务#task#结束", "运维", state=0)

    result = run_dag("juhe_test_notifier", mobiles="13800138000", tpl_id=unapproved)

    assert result.states == {"succeeds": "success", "fails": "failed"}
    assert sandbox_conn.messages() == []
    assert len([c for c in sandbox_conn.calls() if c["path"].endswith("send.php")]) == 2


def test_one_shared_instance_renders_afresh_for_every_call(sandbox_conn):
    from airflow.sdk import DAG

    tpl_id = sandbox_conn.add_template("#dag#.#task# 失败", "运维")
    notifier = send_juhe_sms_notification(
        mobiles="{{ params.on_call }}",
        tpl_id=tpl_id,
        tpl_value={"#dag#": "{{ dag.dag_id }}", "#task#": "{{ ti.task_id }}"},
    )
    dag = DAG("shared_notifier")

    class FakeTI:
        def __init__(self, task_id):
            self.task_id = task_id

    for task_id in ("extract", "load"):
        notifier({"dag": dag, "ti": FakeTI(task_id), "params": {"on_call": "13800138000"}})

    assert [m["text"] for m in sandbox_conn.messages()] == [
        "【运维】shared_notifier.extract 失败",
        "【运维】shared_notifier.load 失败",
    ]
    assert notifier.tpl_value == {"#dag#": "{{ dag.dag_id }}", "#task#": "{{ ti.task_id }}"}
    assert send_juhe_sms_notification is JuheSmsNotifier


def test_errors_are_logged_not_raised(sandbox_conn, capsys, caplog):
    notifier = JuheSmsNotifier(mobiles="13800138000", tpl_id=999)

    notifier({"dag": None})

    # Airflow 3.3 logs through structlog to stdout, older ones through the logging module; 3.0's own
    # BaseNotifier already logs (and swallows) the error.
    assert "Juhe error 228801" in capsys.readouterr().out + caplog.text


@pytest.mark.usefixtures("airflow_db")
def test_an_invalid_number_in_the_on_call_list_does_not_stop_the_page(sandbox_conn):
    tpl_id = sandbox_conn.add_template("任务#task#结束", "运维")

    result = run_dag("juhe_test_notifier", mobiles="13800138000, 1380013800, 13100001111", tpl_id=tpl_id)

    assert result.states == {"succeeds": "success", "fails": "failed"}
    assert [sorted(m["mobiles"]) for m in sandbox_conn.messages()] == [["13100001111", "13800138000"]] * 2


def test_the_contract_signature_takes_mobiles_tpl_id_and_values_by_position(sandbox_conn):
    tpl_id = sandbox_conn.add_template("#dag#失败", "运维")

    JuheSmsNotifier("13800138000", tpl_id, {"#dag#": "etl"})({"dag": None})

    assert [m["text"] for m in sandbox_conn.messages()] == ["【运维】etl失败"]
