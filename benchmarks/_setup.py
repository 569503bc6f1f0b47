"""Shared set-up for the benchmark scripts: a throwaway Airflow home and quiet logs."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="juhe-bench-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.dag_runs runs the DAGs
sys.path.insert(0, str(Path(__file__).resolve().parent / "dags"))  # bench_common, as the DAG files import it
#: Runs of each measurement; the best counts (JUHE_BENCH_REPEAT).
REPEAT = int(os.environ.get("JUHE_BENCH_REPEAT", "2"))

APPKEY = "bench-appkey"


def quiet_logs() -> None:
    """Per-batch INFO lines would cost more than the sends being measured."""
    logging.disable(logging.INFO)


def distinct_mobiles(count: int, seed: int = 1) -> list[str]:
    """``count`` distinct valid numbers over real mobile prefixes."""
    rng = random.Random(seed)
    prefixes = ["138", "139", "131", "186", "189", "133", "177", "199", "150", "166"]
    numbers: set[str] = set()
    while len(numbers) < count:
        numbers.add(rng.choice(prefixes) + f"{rng.randrange(10**8):08d}")
    return sorted(numbers)


class XComRecorder:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def task_context() -> dict[str, Any]:
    from airflow_provider_juhe.sending.ledger import InMemoryStateStore

    return {"ti": XComRecorder(), "task_state_store": InMemoryStateStore()}


def airflow_home(dags_folder: Path) -> str:
    """A migrated SQLite Airflow home whose DAGs folder is ``dags_folder``, for dag.test() runs."""
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
    home = os.environ["AIRFLOW_HOME"]
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return home


@contextlib.contextmanager
def sandbox_process(latency: float = 0.0) -> Iterator[str]:
    """``python -m airflow_provider_juhe.sandbox`` in a child process; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [
        "--port",
        str(port),
        "--appkey",
        APPKEY,
        "--approve-after",
        "0",
        "--latency",
        str(latency),
        "--quiet",
    ]
    log = tempfile.NamedTemporaryFile("w+", prefix="juhe-sandbox-", suffix=".log")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "airflow_provider_juhe.sandbox", *args], stdout=log)
    try:
        for _ in range(200):  # up to 20 s for "Juhe sandbox listening on ..."
            if "listening" in open(log.name).read():  # noqa: SIM115
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the figures are printed: do not lose them to a slow exit
            print("the sandbox did not stop within 10 s of SIGTERM: killed", file=sys.stderr)
            server.kill()
            server.wait()
        log.close()


def hand_written_rate(url: str, calls: list[dict[str, str]], workers: int) -> float:
    """
    The hand-written client of the benchmark DAGs (``dags/bench_common.py``), run outside Airflow:
    how fast the same calls go with no task around them. Recipients per second.
    """
    from bench_common import send_by_hand

    started = time.perf_counter()
    sent = send_by_hand(url, APPKEY, calls, workers)
    return sent / (time.perf_counter() - started)


def best_alternately(operator: Callable[[], float], by_hand: Callable[[], float]) -> tuple[float, float]:
    """
    Both rates measured ``REPEAT`` times, alternately (a slow moment of the machine hits both), and
    the best of each: noise on a shared machine only ever slows a run down.
    """
    rates: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEAT):
        rates[0].append(operator())
        rates[1].append(by_hand())
    return max(rates[0]), max(rates[1])
