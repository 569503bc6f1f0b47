"""
The send task where users run it: a real Airflow deployment on 127.0.0.1 (api-server, scheduler,
dag-processor, triggerer; LocalExecutor, SQLite: what ``make e2e`` starts), each task in its own
process under its supervisor, its ledger writes going to the API server in another process. The
sandbox runs in its own process with 50 ms latency per call.

For each form, the operator (a) and the same send written by hand (d) as a task of the same
deployment fed the same way (dags/bench_common.py: W threads, each with its own pooled
requests.Session, the same calls), alternately, each JUHE_BENCH_REPEAT times (2), the best counting:
- bulk: 100,000 numbers, B = 100, W = 8, from an XComArg, a literal list, a comma-separated string;
- personalised: 10,000 CSV rows, each its own text (one call per customer), W = 32.
The personalised form runs under steady latency and under lognormal latency (sigma = 0.3) around the
same mean: a second sandbox, the ``juhe_sms_jitter`` connection (JUHE_BENCH_SIGMAS), with the ledger
writes per 1,000 calls read off the task's log.
Figure: the task's duration as Airflow records it (start to end, rendering and DAG parsing included).
Target: a/d >= 0.90 for every form. Arguments, if any, pick forms: xcomarg literal_list comma_string
campaign.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
from _setup import APPKEY, SIGMAS, best_alternately, distinct_mobiles, load, machine, profile, sandbox_process
from campaign import TEMPLATE, write_customers
from driver import wait_for
from run import LocalDeployment

LATENCY = 0.05
RECIPIENTS, BATCH, WORKERS = 100_000, 100, 8
ROWS, CAMPAIGN_WORKERS = 10_000, 32
BULK = ("xcomarg", "literal_list", "comma_string")


class _SandboxAt:
    """What a Deployment needs of a sandbox running in another process: its connection."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connection_json(self) -> str:
        return json.dumps({"conn_type": "juhe_sms", "host": self.url, "password": APPKEY})


class BenchDeployment(LocalDeployment):
    tier = "bench"

    def settings(self) -> dict[str, str]:
        # Parsed once: re-parsing the 100,000-number DAG files mid-measurement would cost CPU.
        return {**super().settings(), "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}


#: Ledger writes of each operator run, read off its task log.
WRITES: list[int] = []
LEDGER_LINE = re.compile(r"Ledger: (\d+) write\(s\) to the task state store, (\d+) ms each")


def ledger_writes(airflow: BenchDeployment, dag_id: str, run_id: str) -> tuple[int, int] | None:
    """The send task's ledger writes and their mean milliseconds, from its log line."""
    for log in (airflow.home / "logs" / f"dag_id={dag_id}").rglob("*.log"):
        if f"run_id={run_id}" in str(log) and "task_id=send" in str(log):
            found = LEDGER_LINE.search(log.read_text(errors="replace"))
            if found:
                return int(found[1]), int(found[2])
    return None


def task_seconds(airflow: BenchDeployment, dag_id: str, expected: int) -> float:
    """Trigger ``dag_id``, wait for it, check its send task sent ``expected`` numbers; its duration."""
    run_id = airflow.trigger(dag_id)
    state = airflow.wait_run(dag_id, run_id, timeout=600)
    assert state == "success", f"{dag_id} {run_id}: {state}; logs under {airflow.home}"
    sent = airflow.xcom(dag_id, run_id, "send")
    assert (sent if isinstance(sent, int) else sent["sent"]) == expected, sent
    (send,) = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "send"]
    if not dag_id.endswith("_by_hand"):
        writes = ledger_writes(airflow, dag_id, run_id)
        if writes is not None:
            WRITES.append(writes[0])
    return (
        datetime.fromisoformat(send["end_date"]) - datetime.fromisoformat(send["start_date"])
    ).total_seconds()


def compare(airflow: BenchDeployment, dag_id: str, count: int) -> tuple[float, float]:
    """Best rates (per second) of the operator's DAG and of its by-hand twin, run alternately."""
    return best_alternately(
        lambda: count / task_seconds(airflow, dag_id, count),
        lambda: count / task_seconds(airflow, f"{dag_id}_by_hand", count),
    )


def main(forms: list[str]) -> None:
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="juhe-bench-deployed-"))
    home = folder / "home"
    (home / "dags").mkdir(parents=True)
    for source in (Path(__file__).parent / "dags").glob("*.py"):
        shutil.copy(source, home / "dags" / source.name)
    numbers = folder / "numbers.txt"
    numbers.write_text("\n".join(distinct_mobiles(RECIPIENTS)))
    customers = write_customers(folder / "customers.csv", ROWS)
    print(
        f"deployed: a real Airflow (LocalExecutor, SQLite) in {home}; sandbox latency {LATENCY * 1000:.0f} ms"
    )
    print(f"machine: {machine()}")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(sandbox_process(latency=LATENCY))
        jitter_sigma = max(SIGMAS)
        jitter_url = stack.enter_context(sandbox_process(latency=LATENCY, sigma=jitter_sigma))
        os.environ["AIRFLOW_CONN_JUHE_SMS_DEFAULT"] = _SandboxAt(url).connection_json()
        from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

        hook = JuheSmsHook()
        os.environ["AIRFLOW_CONN_JUHE_SMS_JITTER"] = _SandboxAt(jitter_url).connection_json()
        jitter_hook = JuheSmsHook(juhe_conn_id="juhe_sms_jitter")
        airflow = BenchDeployment(home, _SandboxAt(url))  # type: ignore[arg-type]
        airflow.env["AIRFLOW_CONN_JUHE_SMS_JITTER"] = _SandboxAt(jitter_url).connection_json()
        templates = [("银行", "您的账单已出，请按时还款。"), ("银行", TEMPLATE)]
        tpl_ids = [hook.submit_template(*template)["tpl_id"] for template in templates]
        # The same template ids on both sandboxes: each numbers its templates from the same start.
        assert [jitter_hook.submit_template(*template)["tpl_id"] for template in templates] == tpl_ids
        airflow.env.update(
            JUHE_BENCH_NUMBERS=str(numbers),
            JUHE_BENCH_RECIPIENTS=str(customers),
            JUHE_BENCH_WORKERS=str(WORKERS),
            JUHE_BENCH_BATCH=str(BATCH),
            JUHE_BENCH_CAMPAIGN_WORKERS=str(CAMPAIGN_WORKERS),
            JUHE_BENCH_TPL_ID=str(tpl_ids[0]),
            JUHE_BENCH_CAMPAIGN_TPL_ID=str(tpl_ids[1]),
        )
        try:
            airflow.start()
            names = (*BULK, "campaign", "campaign_jitter")
            wanted = {f"juhe_bench_{name}{twin}" for name in names for twin in ("", "_by_hand")}
            wait_for(
                "the benchmark DAGs to be parsed",
                lambda: wanted <= {d["dag_id"] for d in airflow.get("/api/v2/dags", limit=100)["dags"]},
                180,
                interval=1,
            )
            print(f"Airflow up and the DAGs parsed after {time.monotonic() - started:.0f} s")
            for name in [name for name in BULK if name in forms]:
                rate, hand = compare(airflow, f"juhe_bench_{name}", RECIPIENTS)
                print(
                    f"bulk, mobiles as {name:13s} (a) {rate:7,.0f} | (d) by hand {hand:7,.0f} recipients/s | "
                    f"a/d = {rate / hand:.2f} (target >= 0.90)"
                )
            if "campaign" not in forms:
                return
            for sigma in SIGMAS:
                WRITES.clear()
                rate, hand = compare(airflow, "juhe_bench_campaign" + ("_jitter" if sigma else ""), ROWS)
                writes = f"{1000 * sum(WRITES) / len(WRITES) / ROWS:.0f}" if WRITES else "?"
                print(
                    f"personalised, {profile(sigma)}, {ROWS:,} rows, W={CAMPAIGN_WORKERS}: (a) {rate:5,.0f} | "
                    f"(d) by hand {hand:5,.0f} calls/s | a/d = {rate / hand:.2f} (target >= 0.90) | "
                    f"{writes} writes per 1,000 calls | {load()}"
                )
        finally:
            alive = airflow.stop()
            airflow.close()
            if alive:
                print(f"still alive after the stop: {alive}", file=sys.stderr)
    print(f"deployed: {time.monotonic() - started:.0f} s in all; logs under {home}")


if __name__ == "__main__":
    main(sys.argv[1:] or [*BULK, "campaign"])
