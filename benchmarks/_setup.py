"""Shared set-up for the benchmark scripts: a throwaway Airflow home and quiet logs."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
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
#: Latency spreads measured (JUHE_BENCH_SIGMAS): steady, and lognormal sigma = 0.3 around the mean.
SIGMAS = tuple(float(s) for s in os.environ.get("JUHE_BENCH_SIGMAS", "0,0.3").split(","))


def profile(sigma: float) -> str:
    return "steady" if not sigma else f"sigma={sigma:g}"


def cpu_seconds() -> float:
    """CPU this process (all its threads) has used, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LedgerWrites:
    """Counts the dispatcher's calls and ledger writes in this process (wraps ``Dispatcher.run``; one a process)."""

    def __init__(self) -> None:
        self.calls = self.writes = 0
        self.write_seconds = 0.0
        from airflow_provider_juhe.sending import dispatch

        original = dispatch.Dispatcher.run
        counter = self

        def run(dispatcher: Any, batches: Any) -> Any:
            try:
                return original(dispatcher, batches)
            finally:
                counter.calls += len(batches)
                counter.writes += dispatcher.writes
                counter.write_seconds += dispatcher.write_seconds

        dispatch.Dispatcher.run = run  # type: ignore[method-assign]

    _installed: LedgerWrites | None = None

    @classmethod
    def installed(cls) -> LedgerWrites:
        """The process's counter, installed on first use; counting from zero."""
        if cls._installed is None:
            cls._installed = cls()
        cls._installed.reset()
        return cls._installed

    def reset(self) -> None:
        self.calls = self.writes = 0
        self.write_seconds = 0.0

    def per_1000_calls(self) -> float:
        return 1000 * self.writes / max(1, self.calls)

    def mean_ms(self) -> float:
        return 1000 * self.write_seconds / max(1, self.writes)


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
def sandbox_process(latency: float = 0.0, sigma: float = 0.0) -> Iterator[str]:
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
        "--latency-sigma",
        str(sigma),
        "--seed",
        "1",
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


def machine() -> str:
    """The machine a figure was measured on: cores, CPU model, Python and Airflow versions."""
    import platform
    from importlib.metadata import version

    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), {platform.machine()}, Python {platform.python_version()}, "
        f"Airflow {version('apache-airflow')}"
    )


def load() -> str:
    """The load average (1 and 5 minutes): other work on a shared machine slows a figure."""
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"
