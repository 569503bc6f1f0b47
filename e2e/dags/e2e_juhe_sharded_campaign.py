"""
A sharded campaign the Celery tier runs: the splitter over a customers file with repeated rows and a
campaign-wide cap, a send mapped over the shards (spread over both workers), and the totals.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, XComArg

from airflow_provider_juhe.operators.juhe_sms import (
    JuheCampaignTotalsOperator,
    JuheSendSmsOperator,
    JuheSplitAudienceOperator,
)

with DAG(
    "e2e_juhe_sharded_campaign",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"customers": "", "suppress": [], "tpl_id": 0, "shards": 8, "max_recipients": None, "folder": ""},
    render_template_as_native_obj=True,
):
    split = JuheSplitAudienceOperator(
        task_id="split",
        shards="{{ params.shards }}",
        output_uri="{{ params.folder }}/{{ run_id | replace(':', '_') }}/shards",
        recipients="{{ params.customers }}",
        suppress="{{ params.suppress }}",
        tpl_id="{{ params.tpl_id }}",
        max_recipients="{{ params.max_recipients }}",
    )
    sends = JuheSendSmsOperator.partial(
        task_id="send",
        tpl_id="{{ params.tpl_id }}",
        report_path="{{ params.folder }}/{{ run_id | replace(':', '_') }}/shard-{{ ti.map_index }}.csv",
        batch_size=5,
        max_workers=2,
    ).expand(recipients=split.output)
    JuheCampaignTotalsOperator(
        task_id="totals",
        summaries=sends.output,
        split_summary=XComArg(split, key="summary"),
        report_path="{{ params.folder }}/{{ run_id | replace(':', '_') }}/campaign.csv",
        trigger_rule="all_done",
    )
