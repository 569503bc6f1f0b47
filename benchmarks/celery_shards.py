"""
Sending across Celery workers: a personalised campaign mapped over shard files (one task instance per
shard), on the Celery tier of ``make e2e-celery`` (PostgreSQL, Redis, two Celery workers of
SLOTS task slots each), against a sandbox with 200 ms latency per call: latency-bound, so the two
cores are not the limit. The same DAG run with one worker consuming, then with both. Figure: calls
per second from the first shard's start to the last one's end.
Target: 2 workers >= 1.8x 1 worker.

Run with the Celery tier's virtualenv (``make e2e-celery`` builds ``.venv-e2e-celery``), from /tmp:
``cd /tmp && $REPO/.venv-e2e-celery/bin/python $REPO/benchmarks/celery_shards.py``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import load, machine
from campaign import TEMPLATE, write_customers
from driver import Deployment, JuheSandbox
from run_celery import WORKERS, CeleryDeployment

REPO = Path(__file__).resolve().parents[1]

LATENCY = 0.2
SHARDS, ROWS_PER_SHARD, CALLS_IN_FLIGHT = 4, 1_500, 16
#: Task slots per worker: one worker runs the shards two waves deep, two workers in one wave.
SLOTS = 2


class ShardDeployment(CeleryDeployment):
    tier = "bench-celery"

    def components(self) -> dict[str, list[str]]:
        workers = {
            name: [
                *f"celery worker --concurrency {SLOTS} -H {name} --skip-serve-logs".split(),
                "--pid",
                str(self.home / f"{name}.pid"),
            ]
            for name in WORKERS
        }
        return {**Deployment.components(self), **workers}


def calls_per_second(airflow: ShardDeployment) -> float:
    run_id = airflow.trigger("juhe_bench_shards")
    state = airflow.wait_run("juhe_bench_shards", run_id, timeout=600)
    assert state == "success", f"{run_id}: {state}; logs under {airflow.home}"
    shards = [ti for ti in airflow.task_instances("juhe_bench_shards", run_id) if ti["task_id"] == "send"]
    assert len(shards) == SHARDS, shards
    started = min(datetime.fromisoformat(ti["start_date"]) for ti in shards)
    ended = max(datetime.fromisoformat(ti["end_date"]) for ti in shards)
    return SHARDS * ROWS_PER_SHARD / (ended - started).total_seconds()


def main() -> None:
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="juhe-bench-celery-"))
    home = folder / "home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(REPO / "benchmarks" / "celery_dags" / "juhe_bench_shards.py", home / "dags")
    shards = [
        str(write_customers(folder / f"shard-{n}.csv", ROWS_PER_SHARD, seed=10 + n)) for n in range(SHARDS)
    ]
    print(
        f"celery_shards: {SHARDS} shards x {ROWS_PER_SHARD:,} personalised calls, W={CALLS_IN_FLIGHT} each, "
        f"{SLOTS} task slots per worker, sandbox latency {LATENCY * 1000:.0f} ms"
    )
    print(f"machine: {machine()}")
    with JuheSandbox(appkey="bench-appkey", latency=LATENCY) as sandbox:
        airflow = ShardDeployment(home, sandbox)
        airflow.env.update(
            JUHE_BENCH_SHARDS=",".join(shards),
            JUHE_BENCH_CAMPAIGN_WORKERS=str(CALLS_IN_FLIGHT),
            JUHE_BENCH_CAMPAIGN_TPL_ID=str(sandbox.add_template(TEMPLATE, "银行")),
        )
        try:
            airflow.start()
            print(f"Celery tier up after {time.monotonic() - started:.0f} s")
            airflow.consume(WORKERS[1], on=False)
            one = calls_per_second(airflow)
            print(f"1 worker:  {one:6,.0f} calls/s | {load()}")
            airflow.consume(WORKERS[1], on=True)
            two = calls_per_second(airflow)
            print(f"2 workers: {two:6,.0f} calls/s | 2 vs 1: {two / one:.2f}x (target >= 1.8x) | {load()}")
            print(f"ideal: {SHARDS * CALLS_IN_FLIGHT / LATENCY:,.0f} calls/s with every shard at once")
            assert len(sandbox.messages()) == 2 * SHARDS * ROWS_PER_SHARD
        finally:
            alive = airflow.stop()
            airflow.close()
            if alive:
                print(f"still alive after the stop: {alive}", file=sys.stderr)
    print(f"celery_shards: {time.monotonic() - started:.0f} s in all; logs under {home}")


if __name__ == "__main__":
    main()
