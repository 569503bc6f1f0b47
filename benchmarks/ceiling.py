"""
The ceiling of one send task: personalised campaigns (one call per customer, 10,000 distinct rows) at
W = 32, 64 and 128 calls in flight, inside DAG runs (dag.test(), each run in a fresh process), against
the sandbox in its own process with 50 ms latency per call:

(a) JuheSendSmsOperator (max_workers is at most 64); (d) the threaded client written by hand (W
threads, each with its own pooled requests.Session); asyncio clients written by hand, W coroutines
over one pooled client: (e) httpx.AsyncClient, (f) aiohttp.ClientSession.
Same sandbox, same run, alternately, each JUHE_BENCH_REPEAT times (2), the best counting. Against the
ideal W/L: where the figures stop growing with W, the machine (2 cores here: the task, the sandbox and
the task's process share them) is the limit, and a larger send should be split over mapped tasks on
more workers. Arguments, if any: the W values.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _setup import REPEAT, airflow_home, load, machine, quiet_logs
from campaign import LATENCY, run_in_a_process, sandbox_with_template, write_customers

ROWS = 10_000
CLIENTS = {
    "(a) operator": "juhe_bench_campaign",
    "(d) threads": "juhe_bench_campaign_by_hand",
    "(e) httpx": "juhe_bench_campaign_async_by_hand",
    "(f) aiohttp": "juhe_bench_campaign_aiohttp_by_hand",
}
#: The operator's largest max_workers.
OPERATOR_MAX_WORKERS = 64


def rate(dag_id: str, workers: int, customers: Path) -> tuple[float, float]:
    """Calls per second of one DAG run's send task, and the CPU seconds the run took."""
    measured = run_in_a_process(
        dag_id, JUHE_BENCH_CAMPAIGN_WORKERS=str(workers), JUHE_BENCH_RECIPIENTS=str(customers)
    )
    sent = measured["summary"]
    assert (sent if isinstance(sent, int) else sent["sent"]) == ROWS, sent
    return ROWS / measured["seconds"], measured["cpu"]


def main(widths: list[int]) -> None:
    home = airflow_home(Path(__file__).parent / "dags")
    quiet_logs()
    customers = write_customers(Path(tempfile.mkdtemp(prefix="juhe-bench-ceiling-")) / "rows.csv", ROWS)
    print(f"ceiling: {ROWS:,} personalised calls, sandbox latency {LATENCY * 1000:.0f} ms (steady)")
    print(f"machine: {machine()}")
    print(f"each run: dag.test() on {home} (SQLite), in a fresh process; the sandbox in its own process")
    with sandbox_with_template():
        for workers in widths:
            best: dict[str, tuple[float, float]] = {}
            for _ in range(REPEAT):
                for name, dag_id in CLIENTS.items():
                    if dag_id == CLIENTS["(a) operator"] and workers > OPERATOR_MAX_WORKERS:
                        continue
                    measured = rate(dag_id, workers, customers)
                    best[name] = max(best.get(name, (0.0, 0.0)), measured)
            ideal = workers / LATENCY
            figures = " | ".join(
                f"{name} {calls:5,.0f} calls/s ({cpu:.1f} s CPU)" for name, (calls, cpu) in best.items()
            )
            print(f"W={workers:3d}: ideal W/L {ideal:5,.0f} | {figures} | {load()}")


if __name__ == "__main__":
    main([int(width) for width in sys.argv[1:]] or [32, 64, 128])
