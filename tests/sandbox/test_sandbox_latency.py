"""The sandbox's latency: steady by default, lognormal around a mean with ``latency_sigma``."""

from __future__ import annotations

import math
import socket
import statistics
import subprocess
import sys
import time

import pytest
import requests

from airflow_provider_juhe.sandbox import JuheSandbox
from airflow_provider_juhe.sandbox.state import SandboxState
from tests.conftest import APPKEY

TEMPLATES = "/shortLetter/myTemplates.php"


def delays(state: SandboxState, count: int) -> list[float]:
    return [state.handle(TEMPLATES, "POST", {"key": APPKEY}, "").delay for _ in range(count)]


def test_latency_is_steady_by_default():
    assert set(delays(SandboxState(APPKEY, latency=0.05), 50)) == {0.05}


def test_lognormal_latency_keeps_its_mean_and_has_the_spread_asked_for():
    drawn = delays(SandboxState(APPKEY, latency=0.05, latency_sigma=0.3, seed=5), 4000)

    assert statistics.fmean(drawn) == pytest.approx(0.05, rel=0.03)
    assert statistics.stdev(math.log(d) for d in drawn) == pytest.approx(0.3, rel=0.06)
    assert min(drawn) > 0


def test_a_seed_repeats_the_draws():
    first = delays(SandboxState(APPKEY, latency=0.05, latency_sigma=0.3, seed=9), 20)
    again = delays(SandboxState(APPKEY, latency=0.05, latency_sigma=0.3, seed=9), 20)

    assert first == again
    assert len(set(first)) == 20


def test_an_injected_latency_fault_can_spread_too():
    sandbox = JuheSandbox(appkey=APPKEY, seed=3)
    sandbox.inject("latency", times=None, seconds=0.2, sigma=0.5)

    drawn = delays(sandbox.state, 2000)

    assert statistics.fmean(drawn) == pytest.approx(0.2, rel=0.05)
    assert statistics.stdev(math.log(d) for d in drawn) == pytest.approx(0.5, rel=0.08)


def test_negative_latency_or_spread_is_refused():
    with pytest.raises(ValueError, match="latency_sigma"):
        JuheSandbox(appkey=APPKEY, latency=0.05, latency_sigma=-0.1)


def test_the_command_line_option_spreads_the_answers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--port", str(port), "--appkey", APPKEY, "--latency", "0.02", "--latency-sigma", "0.8"]
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_juhe.sandbox", *args, "--seed", "1", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in process.stdout.readline()
        took = []
        with requests.Session() as session:
            for _ in range(30):
                started = time.perf_counter()
                session.post(f"http://127.0.0.1:{port}{TEMPLATES}", data={"key": APPKEY}, timeout=5)
                took.append(time.perf_counter() - started)
        # Steady 20 ms calls would all take 20 ms and a little more; these spread over about 4-90 ms.
        assert min(took) < 0.015
        assert max(took) > 0.04
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
