"""Personalised campaigns, rows from a CSV file: the operator, the same by hand, and a dry run."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import DAG, task

sys.path.insert(0, str(Path(__file__).parent))  # bench_common, beside this file
from bench_common import (
    CAMPAIGN_TPL_ID,
    CAMPAIGN_WORKERS,
    RECIPIENTS_FILE,
    SETTINGS,
    START,
    juhe_connection,
    personal_calls,
    send_by_hand,
)

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

with DAG("juhe_bench_campaign", schedule=None, start_date=START, catchup=False):
    JuheSendSmsOperator(
        task_id="send",
        recipients=RECIPIENTS_FILE,
        **{**SETTINGS, "tpl_id": CAMPAIGN_TPL_ID, "max_workers": CAMPAIGN_WORKERS},
    )

with DAG("juhe_bench_campaign_by_hand", schedule=None, start_date=START, catchup=False):

    @task
    def send() -> int:
        return send_by_hand(
            *juhe_connection(), personal_calls(RECIPIENTS_FILE, CAMPAIGN_TPL_ID), CAMPAIGN_WORKERS
        )

    send()

with DAG("juhe_bench_campaign_dry_run", schedule=None, start_date=START, catchup=False):
    JuheSendSmsOperator(task_id="send", recipients=RECIPIENTS_FILE, dry_run=True, **SETTINGS)
