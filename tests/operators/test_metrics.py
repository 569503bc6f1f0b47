"""
Send metrics reach a real StatsD listener (a UDP socket on 127.0.0.1) during a real DAG run, with
Airflow configured as a deployment would be (``[metrics] statsd_on``, host, port).
"""

from __future__ import annotations

import re
import socket
from collections import Counter

import pytest

from tests.dag_runs import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")


def _initialise_stats() -> None:
    """Build Airflow's stats client from the configuration now, as a task's process does when it starts."""
    try:  # Airflow 3.2+: the task SDK's stats module, initialised by the task runner
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability import stats
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:  # before the task SDK's stats: airflow.stats picks its client's factory at import
        from airflow.configuration import conf as core_conf
        from airflow.metrics.base_stats_logger import NoStatsLogger
        from airflow.stats import Stats

        if core_conf.getboolean("metrics", "statsd_on"):
            from airflow.metrics import statsd_logger

            type(Stats).factory = statsd_logger.get_statsd_logger
        else:
            type(Stats).factory = NoStatsLogger
        Stats.instance = None  # the client built on first use is kept on the class itself
        return
    if not hasattr(stats, "initialize"):  # 3.2: the client lives on the Stats class itself
        stats.Stats.initialize(factory=stats_utils.get_stats_factory(stats.Stats))
        return
    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )


class StatsdListener:
    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.5)
        self.port = self.socket.getsockname()[1]

    def lines(self) -> list[str]:
        received = []
        while True:
            try:
                packet = self.socket.recv(65536)
            except TimeoutError:
                return received
            received += packet.decode().splitlines()


@pytest.fixture
def statsd(monkeypatch):
    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    _initialise_stats()
    yield listener
    monkeypatch.undo()
    _initialise_stats()  # back to the configuration without StatsD
    listener.socket.close()


def counters(lines: list[str]) -> Counter:
    totals: Counter = Counter()
    for line in lines:
        match = re.fullmatch(r"airflow\.(juhe\.[a-z_.]+):(\d+)\|c", line)
        if match:
            totals[match[1]] += int(match[2])
    return totals


def test_a_send_counts_its_numbers_and_times_its_calls(sandbox_conn, statsd):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    sandbox_conn.inject("error", path="send.php", error_code=228806, times=1)  # one call refused
    rows = [{"mobile": f"1380000{i:04d}", "name": str(i)} for i in range(5)]
    rows += [{"mobile": "1380000", "name": "short"}, {"mobile": "13800000009", "name": "opted out"}]

    result = run_dag("juhe_test_campaign", recipients=rows, tpl_id=tpl_id, suppress=["13800000009"])

    lines = statsd.lines()
    totals = counters(lines)
    assert (result.state, result.tries["send"]) == ("success", 2)  # the refused call went on the retry
    assert totals["juhe.sms.invalid"] == 1
    assert totals["juhe.sms.suppressed"] == 1
    assert totals["juhe.sms.failed"] == 1
    assert totals["juhe.sms.sent"] == 5  # 4 on the first try, the refused one on the retry
    assert "juhe.sms.unknown" not in totals
    latencies = [line for line in lines if re.fullmatch(r"airflow\.juhe\.call\.latency:[0-9.]+\|ms", line)]
    calls = [c for c in sandbox_conn.calls() if c["path"].endswith(("send.php", "myTemplates.php"))]
    assert len(latencies) == len(calls)
