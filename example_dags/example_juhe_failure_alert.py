"""
Page on-call by SMS when a pipeline fails, without a storm: 20 tasks fail together, one SMS goes out.

Every notifier shares ``group_key="{{ dag.dag_id }}"``: the first failure of an episode pages, the
other failures within ``repeat_interval`` (the other 19 tasks, the DAG-level callback, later runs that
fail again) are held back and counted, and the next SMS shows the count. When a run succeeds again,
the recovery SMS closes the episode. ``max_per_number`` keeps each phone under the carriers' caps.

Set the Airflow Variables ``juhe_on_call_mobiles`` (comma separated), ``juhe_alert_tpl_id`` and
``juhe_recovery_tpl_id`` (approved templates, signature ``运维``; their content excludes the
【signature】, which Juhe adds):

- alert: ``#dag#：#task#失败，请处理（本条告警代表#count#次失败）`` (reads well on the first SMS too)
- recovery: ``#dag#已恢复，期间合并告警#more#条``

Trigger with ``{"warehouse_down": false}`` to see the recovery.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier

ON_CALL = "{{ var.value.juhe_on_call_mobiles }}"
EPISODE = {
    "mobiles": ON_CALL,
    "group_key": "{{ dag.dag_id }}",  # one episode per pipeline, across its tasks and runs
    "max_per_number": {"minute": 1, "hour": 5, "day": 15},  # under the carriers' 1/minute, 20/day
}
ALERT = {
    **EPISODE,
    "tpl_id": "{{ var.value.juhe_alert_tpl_id }}",
    "repeat_interval": timedelta(hours=1),
}

# One instance shared through default_args: it renders afresh for every task.
task_failed = JuheSmsNotifier(
    **ALERT,
    tpl_value={
        "#dag#": "{{ dag.dag_id }}",
        "#task#": "{{ ti.task_id }}",
        "#count#": "{{ suppressed_count + 1 }}",
    },
)
run_failed = JuheSmsNotifier(
    **ALERT,
    tpl_value={"#dag#": "{{ dag.dag_id }}", "#task#": "整个运行", "#count#": "{{ suppressed_count + 1 }}"},
)
recovered = JuheSmsNotifier(
    **EPISODE,
    tpl_id="{{ var.value.juhe_recovery_tpl_id }}",
    tpl_value={"#dag#": "{{ dag.dag_id }}", "#more#": "{{ suppressed_count }}"},
    resolve=True,
)

with DAG(
    dag_id="example_juhe_failure_alert",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    default_args={"on_failure_callback": task_failed, "retries": 0},
    on_failure_callback=run_failed,
    on_success_callback=recovered,
    params={"warehouse_down": Param(True, type="boolean")},
    tags=["juhe", "example"],
) as dag:
    for partition in range(20):

        @task(task_id=f"load_partition_{partition:02d}")
        def load_partition(params: dict) -> None:
            if params["warehouse_down"]:
                raise RuntimeError("the warehouse does not answer")

        load_partition()
