"""The DAG scripts/check_install.sh runs with `airflow dags test` in each freshly installed Airflow."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

with DAG(dag_id="check_install", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
    JuheSendSmsOperator(
        task_id="page",
        mobiles=["13800138000"],
        tpl_id=1000,
        tpl_value={"dag": "check_install", "task": "page", "count": "1"},
    )
