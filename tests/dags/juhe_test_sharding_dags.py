"""A sharded campaign: the splitter, a send mapped over its shards under a pool, and the totals."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, XComArg

from airflow_provider_juhe.operators.juhe_sms import (
    JuheCampaignTotalsOperator,
    JuheSendSmsOperator,
    JuheSplitAudienceOperator,
)

with DAG(
    dag_id="juhe_test_sharded_campaign",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={"rows": [], "tpl_id": 1, "shards": 2, "folder": "", "max_recipients": None, "suppress": None},
    default_args={"retries": 0, "retry_delay": timedelta(0)},
):
    split = JuheSplitAudienceOperator(
        task_id="split",
        shards="{{ params.shards }}",
        output_uri="{{ params.folder }}/shards",
        recipients="{{ params.rows }}",
        suppress="{{ params.suppress }}",
        tpl_id="{{ params.tpl_id }}",
        max_recipients="{{ params.max_recipients }}",
    )
    sends = JuheSendSmsOperator.partial(
        task_id="send",
        tpl_id="{{ params.tpl_id }}",
        report_path="{{ params.folder }}/reports/shard-{{ ti.map_index }}.csv",
        max_workers=2,
        pool="juhe_sms_test",
        pool_slots=2,
    ).expand(recipients=split.output)
    JuheCampaignTotalsOperator(
        task_id="totals",
        summaries=sends.output,
        split_summary=XComArg(split, key="summary"),
        report_path="{{ params.folder }}/campaign-report.csv",
        trigger_rule="all_done",
    )
