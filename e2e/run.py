"""
The end-to-end tier on one machine: the provider as installed from its wheel, inside a real Airflow
deployment (api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor) on 127.0.0.1.

Run by ``make e2e`` with the e2e virtualenv's Python, from outside the source tree, so that
``airflow_provider_juhe`` is the installed wheel. The machinery and the shared checks live in
``driver.py``; last line: ``e2e: N passed, M failed``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys

from driver import (
    PARALLEL_TASKS,
    Deployment,
    JuheSandbox,
    Templates,
    check_alert_race,
    check_campaign,
    check_clear,
    check_deadline_alert,
    check_examples,
    check_killed_send,
    killed_send,
    run_tier,
    start_campaign,
)

BULK_NUMBERS = [f"139{n:08d}" for n in range(10_000_000, 10_000_300)]
RACE_NUMBER = "19800007777"  # in no example file: every SMS it gets is the race's


class LocalDeployment(Deployment):
    """SQLite and the LocalExecutor: task processes are the scheduler's children."""

    def settings(self) -> dict[str, str]:
        return {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLEL_TASKS),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
        }

    def stored(self) -> tuple[list[str], dict[str, bytes]]:
        database = self.home / "airflow.db"
        with sqlite3.connect(database) as db:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = "\n".join(str(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"'))
            rendered = [
                str(row) for row in db.execute("SELECT rendered_fields FROM rendered_task_instance_fields")
            ]
        return rendered, {
            "the metadata DB's rows": rows.encode(),
            "the metadata DB's file": database.read_bytes(),
        }


def scenario(airflow: Deployment, sandbox: JuheSandbox, templates: Templates) -> None:
    campaign_run, opens = start_campaign(airflow)
    check_examples(airflow, sandbox, templates)
    check_campaign(airflow, sandbox, campaign_run, opens, templates.campaign)
    check_alert_race(airflow, sandbox, templates.race, RACE_NUMBER)
    check_deadline_alert(airflow, sandbox, templates.deadline, grouped=False)
    outcome = killed_send(
        airflow, sandbox, templates.bulk, BULK_NUMBERS, lambda pid: os.kill(pid, signal.SIGKILL)
    )
    check_killed_send("kill -9 of the task process", outcome, BULK_NUMBERS)
    check_clear(airflow, sandbox, outcome.run_id)


if __name__ == "__main__":
    sys.exit(run_tier(LocalDeployment, scenario, budget=420))
