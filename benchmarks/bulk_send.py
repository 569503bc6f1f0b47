"""
Bulk-send throughput against the sandbox with 50 ms latency per call.

(a) JuheSendSmsOperator, (b) HttpHook from apache-airflow-providers-http in a loop, one batch per
request (what a user would write without this provider), (c) the ideal W·B/latency.
Targets: a/c >= 0.85 and a/b >= 0.85·W.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _setup import APPKEY, distinct_mobiles, quiet_logs, sandbox_process, task_context

RECIPIENTS = 100_000
BATCH = 100
LATENCY = 0.05
WORKERS = (4, 8)


def operator_rate(numbers: list[str], tpl_id: int, workers: int) -> float:
    from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

    operator = JuheSendSmsOperator(
        task_id=f"send_w{workers}", mobiles=numbers, tpl_id=tpl_id, batch_size=BATCH, max_workers=workers
    )
    started = time.perf_counter()
    summary = operator.execute(task_context())
    elapsed = time.perf_counter() - started
    assert summary["sent"] == len(numbers), summary["sent"]
    return len(numbers) / elapsed


def http_hook_rate(numbers: list[str], tpl_id: int) -> float:
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="POST", http_conn_id="juhe_http")
    started = time.perf_counter()
    for start in range(0, len(numbers), BATCH):
        response = hook.run(
            "/shortLetter/send.php",
            data={"key": APPKEY, "mobile": ",".join(numbers[start : start + BATCH]), "tplId": tpl_id},
        )
        assert response.json()["error_code"] == 0
    return len(numbers) / (time.perf_counter() - started)


def main() -> None:
    quiet_logs()
    numbers = distinct_mobiles(RECIPIENTS)
    # The sandbox runs in its own process, so that it does not share this one's GIL with the client.
    with sandbox_process(latency=LATENCY) as url:
        os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = json.dumps(
            {"conn_type": "juhe_sms", "host": url, "password": APPKEY}
        )
        os.environ["AIRFLOW_CONN_JUHE_HTTP"] = json.dumps({"conn_type": "http", "host": url})
        tpl_id = submit_approved_template(url)

        print(
            f"bulk_send: {RECIPIENTS:,} distinct recipients, B={BATCH}, sandbox latency {LATENCY * 1000:.0f} ms"
        )
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        baseline = http_hook_rate(numbers, tpl_id)
        print(f"(b) HttpHook loop, one batch per request: {baseline:10,.0f} recipients/s")
        for workers in WORKERS:
            ours = operator_rate(numbers, tpl_id, workers)
            ideal = workers * BATCH / LATENCY
            print(
                f"W={workers}: (a) JuheSendSmsOperator {ours:10,.0f} recipients/s | (c) ideal {ideal:10,.0f} | "
                f"a/c = {ours / ideal:.2f} (target >= 0.85) | a/b = {ours / baseline:.2f} "
                f"(target >= {0.85 * workers:.2f})"
            )


def submit_approved_template(url: str) -> int:
    """The sandbox approves at once (--approve-after 0)."""
    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

    return JuheSmsHook().submit_template("银行", "您的账单已出，请按时还款。")["tpl_id"]


if __name__ == "__main__":
    main()
