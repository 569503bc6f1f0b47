"""
A Deadline Alert that fires within seconds: each run must finish 3 s after it was queued, and its
task sleeps 30 s. The triggerer runs ``JuheSmsNotifier`` (``AsyncCallback``) for every run that
misses; all runs share ``group_key`` (from ``dag_run``), so a burst of missed runs pages once.

The on-call number and the template come from the environment when the file is parsed
(``AIRFLOW_VAR_E2E_DEADLINE_MOBILE``, ``AIRFLOW_VAR_E2E_DEADLINE_TPL_ID``, set by e2e/driver.py):
a deadline callback's kwargs are stored with the DAG. Defines no DAG on Airflow 3.0 (no Deadline Alerts).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier

try:
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference
except ImportError:
    DeadlineAlert = None

if DeadlineAlert is not None:
    with DAG(
        "e2e_juhe_deadline_alert",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=8,
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(seconds=3),
            callback=AsyncCallback(
                JuheSmsNotifier,
                kwargs={
                    "mobiles": os.environ.get("AIRFLOW_VAR_E2E_DEADLINE_MOBILE", ""),
                    "tpl_id": os.environ.get("AIRFLOW_VAR_E2E_DEADLINE_TPL_ID", "0"),
                    "tpl_value": {"#dag#": "{{ dag_run.dag_id }}", "#more#": "{{ suppressed_count }}"},
                    "group_key": "deadline:{{ dag_run.dag_id }}",
                    "repeat_interval": 3600,
                },
            ),
        ),
    ):

        @task
        def too_slow() -> None:
            time.sleep(30)

        too_slow()
