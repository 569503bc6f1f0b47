"""
Twelve tasks raise at the same instant, each paging one on-call number from its own alert episode
(``group_key`` per task) under ``max_per_number={"minute": 1}``: the number gets one SMS, or the
per-number cap does not hold when callbacks race.

Trigger with ``{"on_call": "150...", "tpl_id": 12}``: a fresh number (and template) per run, so no
earlier caps count. Each task logs ``e2e race: S s before T`` (S < 0: it started too late to race),
and its last callback ``e2e race: callbacks done``.
"""

from __future__ import annotations

import math
import time

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier

TASKS = 12
LEAD = 20  # seconds from the run's creation to the instant: every task starts within it on 2 cores
STEP = 10  # the instant is a multiple of STEP seconds of wall time

page = JuheSmsNotifier(
    mobiles="{{ params.on_call }}",
    tpl_id="{{ params.tpl_id }}",
    tpl_value={"#dag#": "{{ dag.dag_id }}", "#task#": "{{ ti.task_id }}", "#more#": "{{ suppressed_count }}"},
    group_key="storm-{{ ti.task_id }}",  # every task its own episode: only the cap stands between them
    max_per_number={"minute": 1},
)


def callbacks_done(context) -> None:
    print("e2e race: callbacks done", flush=True)


with DAG(
    "e2e_juhe_alert_race",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"on_call": "", "tpl_id": 0},
    max_active_tasks=TASKS,
    default_args={"retries": 0, "on_failure_callback": [page, callbacks_done]},
):
    for number in range(TASKS):

        @task(task_id=f"fail_{number:02d}")
        def fail_together(dag_run=None) -> None:
            # From the run's one creation time, so every task computes the same instant.
            instant = math.ceil((dag_run.run_after.timestamp() + LEAD) / STEP) * STEP
            slack = instant - time.time()
            print(f"e2e race: {slack:.2f} s before {instant}", flush=True)
            time.sleep(max(slack, 0))
            raise RuntimeError(f"failing at {instant} with the other tasks")

        fail_together()
