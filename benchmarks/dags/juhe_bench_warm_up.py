"""Run once first: the first task of a process also starts dag.test()'s in-process API server."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import DAG, task

sys.path.insert(0, str(Path(__file__).parent))  # bench_common, beside this file
from bench_common import START

with DAG("juhe_bench_warm_up", schedule=None, start_date=START, catchup=False):

    @task
    def warm_up() -> None:
        pass

    warm_up()
