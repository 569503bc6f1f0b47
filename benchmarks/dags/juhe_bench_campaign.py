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
    send_by_hand_aiohttp,
    send_by_hand_async,
)

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

# The same send against the default connection, and against ``juhe_sms_jitter`` where a benchmark
# points it at a sandbox whose latency spreads (the deployed benchmark measures both in one deployment).
for suffix, conn_id in (("", "juhe_sms_default"), ("_jitter", "juhe_sms_jitter")):
    with DAG(f"juhe_bench_campaign{suffix}", schedule=None, start_date=START, catchup=False):
        JuheSendSmsOperator(
            task_id="send",
            recipients=RECIPIENTS_FILE,
            juhe_conn_id=conn_id,
            # The operator's limit: the ceiling benchmark runs only the clients by hand beyond it.
            **{**SETTINGS, "tpl_id": CAMPAIGN_TPL_ID, "max_workers": min(CAMPAIGN_WORKERS, 64)},
        )

    with DAG(f"juhe_bench_campaign{suffix}_by_hand", schedule=None, start_date=START, catchup=False):

        @task
        def send(conn_id: str = conn_id) -> int:
            return send_by_hand(
                *juhe_connection(conn_id), personal_calls(RECIPIENTS_FILE, CAMPAIGN_TPL_ID), CAMPAIGN_WORKERS
            )

        send()

with DAG("juhe_bench_campaign_async_by_hand", schedule=None, start_date=START, catchup=False):

    @task(task_id="send")
    def send_async() -> int:
        return send_by_hand_async(
            *juhe_connection(), personal_calls(RECIPIENTS_FILE, CAMPAIGN_TPL_ID), CAMPAIGN_WORKERS
        )

    send_async()

with DAG("juhe_bench_campaign_aiohttp_by_hand", schedule=None, start_date=START, catchup=False):

    @task(task_id="send")
    def send_aiohttp() -> int:
        return send_by_hand_aiohttp(
            *juhe_connection(), personal_calls(RECIPIENTS_FILE, CAMPAIGN_TPL_ID), CAMPAIGN_WORKERS
        )

    send_aiohttp()

with DAG("juhe_bench_campaign_dry_run", schedule=None, start_date=START, catchup=False):
    JuheSendSmsOperator(task_id="send", recipients=RECIPIENTS_FILE, dry_run=True, **SETTINGS)
