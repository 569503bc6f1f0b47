"""
Page on-call by SMS when a pipeline misses its deadline: a Deadline Alert (Airflow 3.1+) whose
callback is ``JuheSmsNotifier``, run by the triggerer.

The DAG's runs must finish within 30 minutes of being queued; a run still going then pages on-call
once per DAG (``group_key`` from ``dag_run``: a deadline callback's context has ``dag_run`` and
``deadline``, no ``ti`` and no ``dag``). Misses of later runs within ``repeat_interval`` are held back
and counted into the next SMS.

Set the Airflow Variables ``juhe_on_call_mobiles`` (comma separated) and ``juhe_deadline_tpl_id`` (an
approved template, signature ``运维``, e.g. ``#dag#的运行#run#超过30分钟仍未完成（另有#more#次）``).
The callback's kwargs are stored with the DAG as JSON and rendered in the triggerer with the deadline's
small context, so the numbers and the template id are read when the DAG file is parsed (from the
environment here: ``AIRFLOW_VAR_...``), and ``repeat_interval`` is given in seconds.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

try:
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference
except ImportError:  # Airflow 3.0 has no Deadline Alerts (3.1 brought them): this file defines no DAG there
    DeadlineAlert = None

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier

# Read when the DAG file is parsed; environment variables keep parsing free of metadata-DB calls.
ON_CALL = os.environ.get("AIRFLOW_VAR_JUHE_ON_CALL_MOBILES", "13800138000")
TPL_ID = os.environ.get("AIRFLOW_VAR_JUHE_DEADLINE_TPL_ID", "0")

if DeadlineAlert is not None:
    with DAG(
        dag_id="example_juhe_deadline_alert",
        schedule="@hourly",
        start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
        catchup=False,
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(minutes=30),
            callback=AsyncCallback(
                JuheSmsNotifier,
                kwargs={
                    "mobiles": ON_CALL,
                    "tpl_id": TPL_ID,
                    "tpl_value": {
                        "#dag#": "{{ dag_run.dag_id }}",
                        "#run#": "{{ dag_run.run_id }}",
                        "#more#": "{{ suppressed_count }}",
                    },
                    "group_key": "deadline:{{ dag_run.dag_id }}",
                    "repeat_interval": 3600,  # seconds
                },
            ),
        ),
        tags=["juhe", "example"],
    ) as dag:

        @task
        def slow_load(minutes: float = 0.0) -> None:
            import time

            time.sleep(minutes * 60)

        slow_load()
