"""
Page on-call by SMS when a pipeline fails: one notifier for every task, one for the whole run.

Set the Airflow Variables ``juhe_on_call_mobiles`` (comma separated) and ``juhe_alert_tpl_id`` (an
approved template: signature ``运维``, content ``#dag#.#task# 失败，请处理``; the content excludes the
【signature】, which Juhe adds).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier

ON_CALL = "{{ var.value.juhe_on_call_mobiles }}"
ALERT_TPL_ID = "{{ var.value.juhe_alert_tpl_id }}"

# One instance shared through default_args: each failing task still gets an SMS naming itself.
task_failed = JuheSmsNotifier(
    mobiles=ON_CALL,
    tpl_id=ALERT_TPL_ID,
    tpl_value={"#dag#": "{{ dag.dag_id }}", "#task#": "{{ ti.task_id }}"},
)
run_failed = JuheSmsNotifier(
    mobiles=ON_CALL,
    tpl_id=ALERT_TPL_ID,
    tpl_value={"#dag#": "{{ dag.dag_id }}", "#task#": "整个运行"},
)

with DAG(
    dag_id="example_juhe_failure_alert",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    default_args={"on_failure_callback": task_failed, "retries": 0},
    on_failure_callback=run_failed,
    tags=["juhe", "example"],
) as dag:

    @task
    def extract_statements() -> int:
        raise RuntimeError("the statements export is missing")

    @task
    def reconcile_ledger() -> int:
        raise RuntimeError("ledger totals do not match")

    @task
    def publish_report(statements: int, ledger: int) -> None:
        print(f"{statements} statements, {ledger} ledger rows")

    publish_report(extract_statements(), reconcile_ledger())
