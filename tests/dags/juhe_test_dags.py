"""DAGs the test suite runs with dag.test(); their inputs come from run_conf (params)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier
from airflow_provider_juhe.operators.juhe_sms import (
    JuheGroupMobilesOperator,
    JuheListTemplatesOperator,
    JuheSendSmsOperator,
)
from airflow_provider_juhe.sensors.juhe_sms import JuheTemplateApprovedSensor


def test_dag(dag_id: str, **params):
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        render_template_as_native_obj=True,
        params=params,
        default_args={"retries": 2, "retry_delay": timedelta(0)},
    )


with test_dag("juhe_test_send", mobiles=[], tpl_id=1, tpl_value=None):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        tpl_value="{{ params.tpl_value }}",
        batch_size=2,
        max_workers=2,
    )

with test_dag("juhe_test_send_lenient", mobiles=[], tpl_id=1):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        batch_size=2,
        max_workers=1,
        fail_on_unknown=False,
    )

with test_dag("juhe_test_send_carriers", mobiles=[], carrier_tpl_ids={}, source="api"):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        carrier_tpl_ids="{{ params.carrier_tpl_ids }}",
        source="{{ params.source }}",
        batch_size=2,
        max_workers=3,
    )

with test_dag("juhe_test_send_dry_run", mobiles=[], carrier_tpl_ids={}, tpl_value=None):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        carrier_tpl_ids="{{ params.carrier_tpl_ids }}",
        tpl_value="{{ params.tpl_value }}",
        source="local",
        batch_size=2,
        dry_run=True,
    )

with test_dag("juhe_test_reads", mobiles=[]):
    JuheListTemplatesOperator(task_id="list_templates")
    JuheGroupMobilesOperator(task_id="group_api", mobiles="{{ params.mobiles }}")
    JuheGroupMobilesOperator(task_id="group_local", mobiles="{{ params.mobiles }}", source="local")

for mode in ("poke", "reschedule", "deferrable"):
    with test_dag(f"juhe_test_sensor_{mode}", tpl_id=1):
        JuheTemplateApprovedSensor(
            task_id="wait_for_approval",
            tpl_id="{{ params.tpl_id }}",
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poke_interval=0.2,
            timeout=3,
        )

with test_dag("juhe_test_notifier", mobiles="", tpl_id=1):
    notify = JuheSmsNotifier(
        mobiles="{{ params.mobiles }}", tpl_id="{{ params.tpl_id }}", tpl_value={"#task#": "{{ ti.task_id }}"}
    )

    @task(on_success_callback=notify)
    def succeeds() -> str:
        return "fine"

    @task(on_failure_callback=notify, retries=0)
    def fails() -> None:
        raise ValueError("the task's own error")

    succeeds()
    fails()
