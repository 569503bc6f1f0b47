"""Bulk send, the numbers an upstream task's XCom: the operator, and the same by hand."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import DAG, task

sys.path.insert(0, str(Path(__file__).parent))  # bench_common, beside this file
from bench_common import SETTINGS, START, WORKERS, bulk_calls, juhe_connection, numbers, send_by_hand

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

with DAG("juhe_bench_xcomarg", schedule=None, start_date=START, catchup=False):

    @task(show_return_value_in_logs=False)
    def load() -> list[str]:
        return numbers()

    JuheSendSmsOperator(task_id="send", mobiles=load(), **SETTINGS)

with DAG("juhe_bench_xcomarg_by_hand", schedule=None, start_date=START, catchup=False):

    @task(task_id="load", show_return_value_in_logs=False)
    def load_numbers() -> list[str]:
        return numbers()

    @task
    def send(mobiles: list[str]) -> int:
        return send_by_hand(*juhe_connection(), bulk_calls(mobiles), WORKERS)

    send(load_numbers())
