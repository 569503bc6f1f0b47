"""A personalised campaign mapped over shard files (JUHE_BENCH_SHARDS: their paths, comma-separated)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

with DAG(
    "juhe_bench_shards", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
):
    JuheSendSmsOperator.partial(
        task_id="send",
        tpl_id=int(os.environ.get("JUHE_BENCH_CAMPAIGN_TPL_ID", "1")),
        max_workers=int(os.environ.get("JUHE_BENCH_CAMPAIGN_WORKERS", "16")),
    ).expand(recipients=[path for path in os.environ.get("JUHE_BENCH_SHARDS", "").split(",") if path])
