"""
A bulk send the end-to-end tier kills mid-call: its task writes its process id where the tier can
find it, then sends in small batches so that the kill lands between calls and inside them.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator


def record_pid(context) -> None:
    Path(os.environ["JUHE_E2E_PID_FILE"]).write_text(str(os.getpid()))


with DAG(
    "e2e_juhe_bulk_send",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"mobiles": [], "tpl_id": 0},
    render_template_as_native_obj=True,
):
    JuheSendSmsOperator(
        task_id="send",
        mobiles="{{ params.mobiles }}",
        tpl_id="{{ params.tpl_id }}",
        batch_size=10,
        max_workers=2,
        fail_on_unknown=False,  # the retry's unknowns are reported; the tier reads them from XCom
        retries=1,
        retry_delay=timedelta(seconds=1),
        pre_execute=record_pid,
    )
