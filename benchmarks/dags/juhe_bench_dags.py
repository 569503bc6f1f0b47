"""
DAGs that benchmarks/bulk_send.py runs: the same send fed three ways, as users write it.

Set by the benchmark: JUHE_BENCH_NUMBERS (a file, one number a line), JUHE_BENCH_TPL_ID,
JUHE_BENCH_WORKERS, JUHE_BENCH_BATCH.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

NUMBERS_FILE = os.environ.get("JUHE_BENCH_NUMBERS", "")
SETTINGS = {
    "tpl_id": int(os.environ.get("JUHE_BENCH_TPL_ID", "1")),
    "max_workers": int(os.environ.get("JUHE_BENCH_WORKERS", "8")),
    "batch_size": int(os.environ.get("JUHE_BENCH_BATCH", "100")),
}


def numbers() -> list[str]:
    return Path(NUMBERS_FILE).read_text().split() if NUMBERS_FILE else []


def bench_dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)


with bench_dag("juhe_bench_xcomarg"):

    @task(show_return_value_in_logs=False)
    def load() -> list[str]:
        return numbers()

    JuheSendSmsOperator(task_id="send", mobiles=load(), **SETTINGS)

with bench_dag("juhe_bench_literal_list"):
    JuheSendSmsOperator(task_id="send", mobiles=numbers(), **SETTINGS)

with bench_dag("juhe_bench_comma_string"):
    JuheSendSmsOperator(task_id="send", mobiles=",".join(numbers()), **SETTINGS)

# Run once first: the first task of a process also starts dag.test()'s in-process API server.
with bench_dag("juhe_bench_warm_up"):

    @task
    def warm_up() -> None:
        pass

    warm_up()

# Campaigns (benchmarks/campaign.py): rows from a file, as users run them. Set by the benchmark:
# JUHE_BENCH_RECIPIENTS (a .csv path), JUHE_BENCH_TPL_ID, JUHE_BENCH_WORKERS, JUHE_BENCH_BATCH.
RECIPIENTS_FILE = os.environ.get("JUHE_BENCH_RECIPIENTS", "customers.csv")

with bench_dag("juhe_bench_campaign"):
    JuheSendSmsOperator(task_id="send", recipients=RECIPIENTS_FILE, **SETTINGS)

with bench_dag("juhe_bench_campaign_dry_run"):
    JuheSendSmsOperator(task_id="send", recipients=RECIPIENTS_FILE, dry_run=True, **SETTINGS)
