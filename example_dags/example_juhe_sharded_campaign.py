"""
A large campaign scaled out on Airflow: the splitter reads the customers file once, de-duplicates it
and applies the opt-outs and the campaign's guards (``max_recipients``, ``max_fee``) to the whole
campaign, then writes shards; one mapped send per shard, each with its own plan, ledger and report;
an Airflow pool caps the calls in flight across every worker; and a last step totals the shards and
merges their reports into one.

Create the pool once: ``airflow pools set juhe_sms 16 "Juhe SMS calls in flight"``. Each shard's task
takes ``pool_slots = max_workers`` slots, so at most 16 calls are in flight however many shards run.
Uses the Variables of ``example_juhe_repayment_reminders``.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, XComArg

from airflow_provider_juhe.operators.juhe_sms import (
    JuheCampaignTotalsOperator,
    JuheSendSmsOperator,
    JuheSplitAudienceOperator,
)

CUSTOMERS = Path(__file__).resolve().with_name("repayment_customers.csv")
FOLDER = "{{ var.value.get('juhe_report_folder', 'file:///tmp/juhe-reports') }}/sharded/{{ run_id | replace(':', '_') }}"
SHARDS = 3
WORKERS_PER_SHARD = 4

with DAG(
    dag_id="example_juhe_sharded_campaign",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["juhe", "example"],
) as dag:
    split = JuheSplitAudienceOperator(
        task_id="split",
        shards=SHARDS,
        output_uri=f"{FOLDER}/shards",
        recipients=str(CUSTOMERS),
        suppress=str(CUSTOMERS.with_name("opt_outs.txt")),
        tpl_id="{{ var.value.juhe_repayment_tpl_id }}",
        max_recipients=100_000,  # for the whole campaign, not per shard
    )

    sends = JuheSendSmsOperator.partial(
        task_id="send_shard",
        tpl_id="{{ var.value.juhe_repayment_tpl_id }}",
        report_path=f"{FOLDER}/reports/shard-{{{{ ti.map_index }}}}.csv",
        max_workers=WORKERS_PER_SHARD,
        pool="juhe_sms",
        pool_slots=WORKERS_PER_SHARD,
    ).expand(recipients=split.output)

    JuheCampaignTotalsOperator(
        task_id="totals",
        summaries=sends.output,
        split_summary=XComArg(split, key="summary"),
        report_path=f"{FOLDER}/campaign-report.csv",
        trigger_rule="all_done",  # the totals of a campaign some of whose shards failed, too
    )
