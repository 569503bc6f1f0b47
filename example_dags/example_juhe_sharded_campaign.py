"""
A large campaign scaled out on Airflow: the customers file is split into shards, one mapped send per
shard, each with its own plan, ledger and report, and an Airflow pool caps the calls in flight across
every worker.

Create the pool once: ``airflow pools set juhe_sms 16 "Juhe SMS calls in flight"``. Each shard's task
takes ``pool_slots = max_workers`` slots, so at most 16 calls are in flight however many shards run.
Rows are sharded by their number, so that all rows of one number land in the same shard and are
de-duplicated there. Uses the Variables of ``example_juhe_repayment_reminders``.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, Variable, task

from airflow_provider_juhe.mobiles import normalise_mobile
from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

CUSTOMERS = Path(__file__).resolve().with_name("repayment_customers.csv")
SHARDS = 3
WORKERS_PER_SHARD = 4

with DAG(
    dag_id="example_juhe_sharded_campaign",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["juhe", "example"],
) as dag:

    @task
    def write_shards(dag_run=None) -> list[str]:
        """Stream the export into shard files by number; return their URIs."""
        base = Variable.get("juhe_report_folder", default="file:///tmp/juhe-reports")
        folder = ObjectStoragePath(f"{base}/shards/{dag_run.run_id.replace(':', '_')}")
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"customers-{shard}.csv" for shard in range(SHARDS)]
        with CUSTOMERS.open(encoding="utf-8", newline="") as source:
            reader = csv.DictReader(source)
            files = [path.open("w", encoding="utf-8", newline="") for path in paths]
            try:
                writers = [csv.DictWriter(file, fieldnames=reader.fieldnames) for file in files]
                for writer in writers:
                    writer.writeheader()
                for row in reader:
                    shard = zlib.crc32(normalise_mobile(row["mobile"]).encode()) % SHARDS
                    writers[shard].writerow(row)
            finally:
                for file in files:
                    file.close()
        return [str(path) for path in paths]

    sends = JuheSendSmsOperator.partial(
        task_id="send_shard",
        tpl_id="{{ var.value.juhe_repayment_tpl_id }}",
        suppress=str(CUSTOMERS.with_name("opt_outs.txt")),
        report_path="{{ ti.xcom_pull('write_shards')[ti.map_index] | replace('.csv', '-report.csv') }}",
        max_workers=WORKERS_PER_SHARD,
        pool="juhe_sms",
        pool_slots=WORKERS_PER_SHARD,
    ).expand(recipients=write_shards())

    @task
    def totals(summaries: list[dict]) -> dict[str, int]:
        """One line over every shard: what a dashboard shows."""
        keys = ("requested", "sent", "invalid_count", "suppressed", "failed_count", "unknown_count", "fee")
        result = {key: sum(summary[key] for summary in summaries) for key in keys}
        print(f"Campaign totals: {result}")
        return result

    totals(sends.output)
