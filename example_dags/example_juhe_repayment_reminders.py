"""
Daily repayment reminders: each customer's own text, never to those who opted out, only inside a
send window, and a per-recipient report of who got what.

``repayment_customers.csv`` beside this file stands in for the daily export of a customers table
(in production a URI such as ``s3://bank-exports/{{ ds }}/customers.csv.gz``, read as a stream). It
holds what real exports hold: a duplicate row, an invalid number, a row without an amount (invalid:
the template needs ``#amount#``) and a customer listed in ``opt_outs.txt`` (suppressed).

Set the Airflow Variables ``juhe_repayment_tpl_id`` (an approved template such as
``尊敬的#name#，您尾号#card#的信用卡账单#amount#元将于#due_date#到期，请按时还款。``) and, optionally,
``juhe_report_folder`` (a folder URI; ``file:///tmp/juhe-reports`` by default).
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

HERE = Path(__file__).resolve().parent

with DAG(
    dag_id="example_juhe_repayment_reminders",
    schedule="0 10 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    # Customers are not texted at night: calls start only between these local times.
    params={"window_start": "09:00", "window_end": "20:00"},
    tags=["juhe", "example"],
) as dag:
    JuheSendSmsOperator(
        task_id="send_reminders",
        recipients=str(HERE / "repayment_customers.csv"),
        tpl_id="{{ var.value.juhe_repayment_tpl_id }}",
        suppress=str(HERE / "opt_outs.txt"),
        send_window=("{{ params.window_start }}", "{{ params.window_end }}"),
        timezone="Asia/Shanghai",
        # run_after, not ds: runs triggered from the CLI or REST API have no logical date.
        report_path=(
            "{{ var.value.get('juhe_report_folder', 'file:///tmp/juhe-reports') }}"
            "/{{ dag_run.run_after | ds }}/{{ dag_run.run_id | replace(':', '_') }}/reminders.csv"
        ),
        max_workers=8,
    )
