"""Bulk send, the numbers a literal list in the DAG file: the operator, and the same by hand."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import DAG, task

sys.path.insert(0, str(Path(__file__).parent))  # bench_common, beside this file
from bench_common import SETTINGS, START, WORKERS, bulk_calls, juhe_connection, numbers, send_by_hand

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

NUMBERS = numbers()

with DAG("juhe_bench_literal_list", schedule=None, start_date=START, catchup=False):
    JuheSendSmsOperator(task_id="send", mobiles=NUMBERS, **SETTINGS)

with DAG("juhe_bench_literal_list_by_hand", schedule=None, start_date=START, catchup=False):

    @task
    def send() -> int:
        return send_by_hand(*juhe_connection(), bulk_calls(NUMBERS), WORKERS)

    send()
