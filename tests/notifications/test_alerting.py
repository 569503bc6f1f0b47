"""Alert episodes, repeat intervals, recovery and per-number caps, inside real DAG runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from airflow_provider_juhe.notifications import juhe_sms as notifier_module
from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier
from tests.conftest import REPO
from tests.dag_runs import run_dag
from tests.example_dags.test_example_dags import on_call  # noqa: F401 - the example's Variables

pytestmark = pytest.mark.usefixtures("alert_state")


class Clock:
    """Stands in for the notifier's clock, so that an hour passes in a test."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1_800_000_000.0
        monkeypatch.setattr(notifier_module, "clock", lambda: self.now)


def test_a_dag_failing_in_consecutive_runs_pages_once_per_repeat_interval(on_call, monkeypatch):  # noqa: F811
    clock = Clock(monkeypatch)

    for _ in range(2):  # two hourly... failing runs, a minute apart, inside the hour
        assert run_dag("example_juhe_failure_alert").state == "failed"
        clock.now += 60
    assert len(on_call.messages()) == 1
    clock.now += 3600
    assert run_dag("example_juhe_failure_alert").state == "failed"

    texts = [m["text"] for m in on_call.messages()]
    assert len(texts) == 2
    assert (
        "本条告警代表42次失败" in texts[1]
    )  # itself and 20 + 21 held back (19 tasks + the DAG, then 20 + the DAG)


def test_the_per_number_cap_holds_and_counts_into_the_next_page(sandbox_conn, monkeypatch):
    clock = Clock(monkeypatch)
    tpl_id = sandbox_conn.add_template("#task#失败，另有#more#条未发", "运维")
    conf = {"mobiles": "13800138000", "tpl_id": tpl_id}

    sent_per_run = []
    for step in (0, 61, 61, 3600):  # minute cap 1, hour cap 2
        clock.now += step
        before = len(sandbox_conn.messages())
        assert run_dag("juhe_test_alert_caps", **conf).state == "failed"
        sent_per_run.append(len(sandbox_conn.messages()) - before)

    assert sent_per_run == [1, 1, 0, 1]  # 5 failures each run
    shown = [m["text"].split("另有")[1] for m in sandbox_conn.messages()]
    assert shown == ["0条未发", "4条未发", "9条未发"]


# One fresh interpreter imports Airflow, parses the DAG and builds the in-process execution API once,
# then forks a process per DAG run, one after the other, as a prefork worker does: neither child sees
# the other's memory (nor does this test's process), only the metadata DB. Two fresh interpreters
# paid that start-up twice (~40 s of the test's ~55).
CHILD = """
import asyncio, os, sys
import httpx
from airflow.sdk.execution_time.supervisor import in_process_api_server
from airflow_provider_juhe.alerting.variable_store import Latency
from tests.dag_runs import _dagbag, run_dag
Latency.gate, Latency.settle = property(lambda self: 60.0), property(lambda self: 0.02)  # one run at a time: no racer
_dagbag()  # parse the DAGs folder here, once: each child parses only its DAG's file


async def build_routes():  # the API builds its versioned routes on its first request: here, not per child
    transport = httpx.ASGITransport(app=in_process_api_server().app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://warm.invalid") as client:
        await client.get("/health")


asyncio.run(build_routes())
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            result = run_dag("juhe_test_alert_episode", mobiles=sys.argv[1], tpl_id=int(sys.argv[2]))
            print("run state:", result.state)
            code = 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
"""


def test_episodes_hold_across_processes(sandbox_conn, monkeypatch):
    """Two DAG runs, each in a process of its own (as two workers would be): one SMS."""
    tpl_id = sandbox_conn.add_template("#task#失败，另有#more#条已合并", "运维")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "13800138000", str(tpl_id)],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    states = [line for line in child.stdout.splitlines() if line.startswith("run state:")]
    assert states == ["run state: failed"] * 2, child.stderr[-2000:]
    assert len(sandbox_conn.messages()) == 1

    Clock(monkeypatch).now += 10**6  # long after: this process sees what the two children counted
    assert run_dag("juhe_test_alert_episode", mobiles="13800138000", tpl_id=tpl_id).state == "failed"

    assert sandbox_conn.messages()[-1]["text"].endswith("另有5条已合并")  # 2 + 3 held back by the children


def test_a_page_that_failed_does_not_hold_back_the_next(sandbox_conn):
    tpl_id = sandbox_conn.add_template("#dag#失败", "运维")
    alert = JuheSmsNotifier(
        mobiles="13800138000",
        tpl_id=tpl_id,
        tpl_value={"#dag#": "etl"},
        group_key="etl",
        repeat_interval=timedelta(hours=1),
        max_per_number={"minute": 1},
    )
    sandbox_conn.inject("error", error_code=228806)  # the next call fails: nothing sent

    alert({"dag": None})
    alert({"dag": None})

    assert len(sandbox_conn.messages()) == 1


class ChannelOnAnotherThread:
    """
    Stands in for the triggerer's supervisor channel: it answers Variable reads and writes from a
    thread, and records any blocking call made on the event loop's thread (the real one would raise
    DeadlockImminentError there, or quietly fall back to a default).
    """

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.loop_thread: int | None = None
        self.on_loop: list[str] = []
        self.served: list[str] = []

    def send(self, msg):
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, VariableResult

        name = type(msg).__name__
        if threading.get_ident() == self.loop_thread:
            self.on_loop.append(name)
        self.served.append(name)
        if name == "GetVariable":
            if msg.key in self.variables:
                return VariableResult(key=msg.key, value=self.variables[msg.key])
            return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": msg.key})
        if name == "PutVariable":
            self.variables[msg.key] = msg.value
        return None

    async def asend(self, msg):
        return self.send(msg)


def test_async_notify_runs_where_airflow_runs_it_without_blocking_the_loop(sandbox_conn, monkeypatch):
    """As a deadline alert: Airflow's CallbackTrigger imports the notifier by path and awaits it."""
    from airflow.sdk.execution_time import task_runner

    # Deadline alerts (and their CallbackTrigger) arrived in Airflow 3.1.
    CallbackTrigger = pytest.importorskip("airflow.triggers.callback").CallbackTrigger

    channel = ChannelOnAnotherThread()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", channel, raising=False)
    tpl_id = sandbox_conn.add_template("#dag#超时未完成", "运维")
    kwargs = {
        "mobiles": "13800138000",
        "tpl_id": tpl_id,
        "tpl_value": {"#dag#": "{{ dag_run.dag_id }}"},
        "group_key": "{{ dag_run.dag_id }}",
        "repeat_interval": None,
    }

    async def run_twice() -> list[dict]:
        channel.loop_thread = threading.get_ident()
        events = []
        for _ in range(2):
            trigger = CallbackTrigger(
                callback_path="airflow_provider_juhe.notifications.juhe_sms.JuheSmsNotifier",
                callback_kwargs={**kwargs, "context": {"dag_run": {"dag_id": "nightly_etl"}}},
            )
            events += [event.payload async for event in trigger.run()]
        return events

    events = asyncio.run(run_twice())

    assert [e["state"] for e in events] == ["running", "success"] * 2, events
    assert [m["text"] for m in sandbox_conn.messages()] == ["【运维】nightly_etl超时未完成"] * 2
    assert channel.on_loop == []
    assert "PutVariable" in channel.served  # the episode was recorded through the channel
