"""
Daily repayment reminders to customers listed in a CSV, sent in mapped batches.

The CSV beside this file holds some invalid and duplicate rows: the send reports them, never sends
them. Set the Airflow Variable ``juhe_reminder_tpl_id`` to an approved template such as
``您的账单将于#date#到期，请按时还款。``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.mobiles import normalise_mobile
from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

CUSTOMERS_CSV = Path(__file__).with_name("customers.csv")
NUMBERS_PER_MAPPED_TASK = 5

with DAG(
    dag_id="example_juhe_customer_notifications",
    schedule="0 9 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["juhe", "example"],
) as dag:
    # Customers' numbers are personal data: keep them out of the task log ("Returned value was: ...").
    @task(show_return_value_in_logs=False)
    def load_recipient_batches() -> list[list[str]]:
        """Read the CSV, de-duplicate across the whole file, and split it for the mapped sends."""
        with CUSTOMERS_CSV.open(encoding="utf-8") as file:
            numbers = list(dict.fromkeys(normalise_mobile(row["mobile"]) for row in csv.DictReader(file)))
        # Invalid rows travel along, in file order, so that each send's summary reports them.
        step = NUMBERS_PER_MAPPED_TASK
        return [numbers[start : start + step] for start in range(0, len(numbers), step)]

    send = JuheSendSmsOperator.partial(
        task_id="send_reminders",
        tpl_id="{{ var.value.juhe_reminder_tpl_id }}",
        # run_after, not ds: runs triggered from the CLI or REST API have no logical date.
        tpl_value={"date": "{{ (dag_run.run_after + macros.timedelta(days=3)) | ds }}"},
        source="local",
        batch_size=100,
    ).expand(mobiles=load_recipient_batches())

    @task
    def report(summaries: list[dict]) -> dict[str, int]:
        """Totals over every mapped send: what an operator would put on a dashboard."""
        totals = {
            "requested": sum(s["requested"] for s in summaries),
            "sent": sum(s["sent"] for s in summaries),
            "invalid": sum(s["invalid_count"] for s in summaries),
            "fee": sum(s["fee"] for s in summaries),
        }
        print(f"Reminders: {totals}")
        return totals

    report(send.output)
