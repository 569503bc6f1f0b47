"""Peak RSS of a 1,000,000-recipient dry run (validate, group offline, plan, estimate the fee). Target < 500 MB."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _setup import APPKEY, distinct_mobiles, quiet_logs, sandbox_process, task_context

RECIPIENTS = 1_000_000


def main() -> None:
    quiet_logs()
    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
    from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    numbers = [*distinct_mobiles(RECIPIENTS), "1380013800", "not-a-number"]
    with sandbox_process() as url:
        os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = json.dumps(
            {"conn_type": "juhe_sms", "host": url, "password": APPKEY}
        )
        submitted = JuheSmsHook().submit_template("银行", "尊敬的#name#，您的账单已出，请按时还款。")
        operator = JuheSendSmsOperator(
            task_id="dry_run",
            mobiles=numbers,
            carrier_tpl_ids=submitted,
            tpl_value={"name": "客户"},
            source="local",
            batch_size=1000,
            dry_run=True,
        )
        started = time.perf_counter()
        summary = operator.execute(task_context())
        elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"dry_run_memory: {RECIPIENTS:,} recipients (+2 invalid), batch_size 1000, source=local")
    print(
        f"planned {summary['planned']:,} in {summary['planned_batches']:,} batches, invalid {len(summary['invalid'])}"
    )
    print(f"estimated fee {summary['estimated_fee']:,}; dry run took {elapsed:.1f} s")
    print(f"peak RSS {peak:,.0f} MB (interpreter with Airflow imported: {before:,.0f} MB) — target < 500 MB")


if __name__ == "__main__":
    main()
