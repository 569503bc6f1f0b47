"""
Personalised campaigns inside real DAG runs (dag.test(), the real task state store), rows read from a
CSV file, against the sandbox in its own process with 50 ms latency per call:

(1) every row distinct (one number per call), 10,000 rows, W = 32: calls/s against the ideal W/L
    and against (d) the same send written by hand as a task of a DAG run (W threads, each with its
    own pooled requests.Session, the same calls: dags/bench_common.py), run alternately with the
    operator, each JUHE_BENCH_REPEAT times (2), the best counting; under steady latency and lognormal
    latency (sigma = 0.3) around the same mean (JUHE_BENCH_SIGMAS), with the ledger writes per 1,000
    calls and the CPU each DAG run took;
(2) rows sharing values (10 distinct value sets), 100,000 rows, B = 100, W = 8: recipients/s against
    the ideal W·B/L;
(3) reading: a dry run of a 1,000,000-row customers CSV: time and peak RSS.
Each DAG run happens in a fresh process (as each task does in a deployment).
Targets: (1) >= 0.80 of W/L and a/d >= 0.95, (2) >= 0.85, (3) peak RSS < 500 MB. Arguments, if any,
pick parts: 1 2 3.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _setup import (
    APPKEY,
    SIGMAS,
    airflow_home,
    best_alternately,
    distinct_mobiles,
    load,
    machine,
    profile,
    quiet_logs,
    sandbox_process,
)

LATENCY = 0.05
TEMPLATE = "尊敬的#name#，您尾号#card#的账单#amount#元将于#due_date#到期，请按时还款。"
NAMES = ["王芳", "李伟", "张敏", "刘洋", "陈静", "杨磊", "赵丽", "黄强", "周杰", "吴霞"]


def write_customers(path: Path, count: int, *, value_sets: int | None = None, seed: int = 1) -> Path:
    """``count`` customers with distinct numbers; every row distinct, or ``value_sets`` distinct values."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["mobile", "name", "card", "amount", "due_date"])
        for index, number in enumerate(distinct_mobiles(count, seed=seed)):
            if value_sets is None:
                row = [rng.choice(NAMES), f"{rng.randrange(10_000):04d}", f"{rng.randrange(10**7) / 100:.2f}"]
            else:
                row = ["客户", f"{index % value_sets:04d}", "100.00"]
            writer.writerow([number, *row, "12月5日"])
    return path


# Each measurement runs in a fresh process, as each task of a real deployment does.
CHILD = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from _setup import LedgerWrites, cpu_seconds, quiet_logs
quiet_logs()
from tests.dag_runs import run_dag
run_dag("juhe_bench_warm_up")
writes = LedgerWrites.installed()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cpu = cpu_seconds()
result = run_dag(sys.argv[2])
cpu = cpu_seconds() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=result.dag_id, run_id=result.run_id, task_id="send").one()
    seconds = (ti.end_date - ti.start_date).total_seconds()
print(json.dumps({"state": result.state, "before": before, "peak": peak, "seconds": seconds,
                  "cpu": cpu, "writes": writes.writes, "write_seconds": writes.write_seconds,
                  "summary": result.xcom("send")}))
"""


def run_in_a_process(dag_id: str, **settings: str) -> dict:
    """One DAG run in a child process; its task's duration, peak RSS and summary."""
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(Path(__file__).parent), dag_id],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        env={**os.environ, **settings},
    )
    assert child.returncode == 0, child.stderr[-3000:]
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    assert measured["state"] == "success", measured
    measured["process_seconds"] = time.perf_counter() - started
    return measured


def timed_send(rows: int, workers: int, batch: int, recipients: Path) -> tuple[dict, dict]:
    measured = run_in_a_process(
        "juhe_bench_campaign",
        JUHE_BENCH_WORKERS=str(workers),
        JUHE_BENCH_BATCH=str(batch),
        JUHE_BENCH_RECIPIENTS=str(recipients),
    )
    summary = measured["summary"]
    assert summary["sent"] == rows, summary["sent"]
    return summary, measured


@contextlib.contextmanager
def sandbox_with_template(sigma: float = 0.0) -> Iterator[None]:
    with sandbox_process(latency=LATENCY, sigma=sigma) as url:
        os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = json.dumps(
            {"conn_type": "juhe_sms", "host": url, "password": APPKEY}
        )
        from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

        os.environ["JUHE_BENCH_TPL_ID"] = str(JuheSmsHook().submit_template("银行", TEMPLATE)["tpl_id"])
        yield


def personalised(folder: Path, sigma: float) -> None:
    """(1): the operator against the same send by hand, 10,000 distinct rows at W = 32."""
    rows, workers = 10_000, 32
    distinct = folder / "distinct.csv"
    if not distinct.exists():
        write_customers(distinct, rows)
    runs: dict[str, list[dict]] = {"a": [], "d": []}

    def operator() -> float:
        summary, measured = timed_send(rows, workers, 100, distinct)
        assert summary["batches_count"] == rows, summary["batches_count"]
        runs["a"].append(measured)
        return rows / measured["seconds"]

    def by_hand() -> float:
        measured = run_in_a_process(
            "juhe_bench_campaign_by_hand",
            JUHE_BENCH_WORKERS=str(workers),
            JUHE_BENCH_RECIPIENTS=str(distinct),
        )
        assert measured["summary"] == rows, measured["summary"]
        runs["d"].append(measured)
        return rows / measured["seconds"]

    with sandbox_with_template(sigma):
        (rate, hand), ideal = best_alternately(operator, by_hand), workers / LATENCY
    writes = sum(run["writes"] for run in runs["a"]) / len(runs["a"])
    write_ms = 1000 * sum(run["write_seconds"] for run in runs["a"]) / max(1, len(runs["a"]) * writes)
    cpu = {key: sum(run["cpu"] for run in values) / len(values) for key, values in runs.items()}
    print(
        f"(1) {profile(sigma):9s} {rows:,} rows, every row distinct, W={workers}: (a) {rate:,.0f} calls/s | "
        f"ideal W/L = {ideal:,.0f} | ratio {rate / ideal:.2f} (target >= 0.80) | (d) by hand {hand:,.0f} "
        f"calls/s | a/d = {rate / hand:.2f} (target >= 0.95) | {1000 * writes / rows:.0f} writes per 1,000 "
        f"calls, {write_ms:.1f} ms each | CPU per run (a) {cpu['a']:.1f} s, (d) {cpu['d']:.1f} s | {load()}"
    )


def main(parts: list[str]) -> None:
    home = airflow_home(Path(__file__).parent / "dags")
    quiet_logs()
    folder = Path(tempfile.mkdtemp(prefix="juhe-bench-campaign-"))
    print(f"campaign: sandbox latency {LATENCY * 1000:.0f} ms, rows from CSV files")
    print(f"machine: {machine()}")
    print(f"each run: dag.test() on {home} (SQLite), the sandbox in its own process")
    if "1" in parts:
        for sigma in SIGMAS:
            personalised(folder, sigma)
    if "2" in parts:
        rows, workers, batch = 100_000, 8, 100
        shared = write_customers(folder / "shared.csv", rows, value_sets=10, seed=2)
        with sandbox_with_template():
            summary, measured = timed_send(rows, workers, batch, shared)
        seconds = measured["seconds"]
        ideal = workers * batch / LATENCY
        rate = rows / seconds
        print(
            f"(2) {rows:,} rows, 10 value sets, B={batch}, W={workers}: {summary['batches_count']:,} calls in "
            f"{seconds:.1f} s = {rate:,.0f} recipients/s | ideal W·B/L = {ideal:,.0f} | ratio "
            f"{rate / ideal:.2f} (target >= 0.85) | {load()}"
        )
    if "3" not in parts:
        return
    rows = 1_000_000
    started = time.perf_counter()
    million = write_customers(folder / "million.csv", rows, seed=3)
    size = million.stat().st_size / 1e6
    print(f"    (wrote a {size:.0f} MB CSV of {rows:,} customers in {time.perf_counter() - started:.0f} s)")
    with sandbox_with_template():
        measured = run_in_a_process("juhe_bench_campaign_dry_run", JUHE_BENCH_RECIPIENTS=str(million))
    summary = measured["summary"]
    assert summary["planned"] == rows, summary
    print(
        f"(3) dry run of {rows:,} CSV rows in a DAG run: the task {measured['seconds']:.1f} s; peak RSS "
        f"{measured['peak']:.0f} MB (target < 500 MB; {measured['before']:.0f} MB after Airflow's start-up "
        f"and a first DAG run); {summary['planned_batches']:,} calls planned, estimated fee "
        f"{summary['estimated_fee']:,}"
    )


if __name__ == "__main__":
    main(sys.argv[1:] or ["1", "2", "3"])
