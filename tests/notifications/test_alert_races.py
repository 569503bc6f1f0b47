"""
Alert state under races and crashes, across real processes sharing the metadata DB's Variables:
bursts of notifications at one instant, and a process killed between its claim and its SMS.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from datetime import timedelta

import pytest

from airflow_provider_juhe.alerting import state
from airflow_provider_juhe.alerting.policy import number_id
from airflow_provider_juhe.notifications import juhe_sms as notifier_module
from airflow_provider_juhe.notifications.juhe_sms import JuheSmsNotifier
from tests.conftest import APPKEY

pytestmark = pytest.mark.usefixtures("alert_state")

BURST = 20
CAPPED = "13800138000"
PAGED = "13900139000"


def _notify_at(moment: float, kwargs: dict) -> None:
    """A child process: wait for the common instant, then notify once."""
    time.sleep(max(0.0, moment - time.time()))
    JuheSmsNotifier(**kwargs)({"dag": None})


def _burst(notifications: list[dict]) -> None:
    """Each notification in a process of its own (forked: no import cost), all at one instant."""
    forks = multiprocessing.get_context("fork")
    moment = time.time() + 1.0
    children = [forks.Process(target=_notify_at, args=(moment, kwargs)) for kwargs in notifications]
    for child in children:
        child.start()
    for child in children:
        child.join(180)
    assert [child.exitcode for child in children] == [0] * len(children)


def _record(kind: str, name: str) -> dict:
    from airflow.models.variable import Variable

    return json.loads(Variable.get(state.variable_key(kind, name)))


@pytest.mark.real_locks
def test_a_burst_across_processes_keeps_the_cap_and_every_count(sandbox_conn, capfd):
    """
    20 notifications with their own group keys to one number under {"minute": 1}, and at the same
    instant 10 of one episode to another number: one SMS each, and not one count lost silently. On
    Variables (30 processes on SQLite: calls of up to ~0.7 s) a waiter that reads the page as already
    sent may stop queueing within the notification's time bound: it says that it was not counted.
    """
    capped_tpl = sandbox_conn.add_template("#task#失败，另有#more#条未发", "运维")
    episode_tpl = sandbox_conn.add_template("#dag#失败，另有#more#条已合并", "运维")
    capped = [
        {
            "mobiles": CAPPED,
            "tpl_id": capped_tpl,
            "tpl_value": {"task": f"t{n}", "more": "{{ suppressed_count }}"},
            "group_key": f"storm-{n}",
            "max_per_number": {"minute": 1},
        }
        for n in range(BURST)
    ]
    episode = {
        "mobiles": PAGED,
        "tpl_id": episode_tpl,
        "tpl_value": {"dag": "etl", "more": "{{ suppressed_count }}"},
        "group_key": "etl",
        "repeat_interval": timedelta(hours=1),
    }

    _burst(capped + [episode] * (BURST // 2))

    received = [number for m in sandbox_conn.messages() for number in m["mobiles"]]
    assert received.count(CAPPED) == 1
    assert received.count(PAGED) == 1
    logged = capfd.readouterr().out
    caps_uncounted = logged.count("cap {'minute': 1} (not counted")
    episode_uncounted = logged.count("this notification is not counted")
    assert next(iter(_record("caps", str(capped_tpl)).values()))["skipped"] + caps_uncounted == BURST - 1
    counted = _record("alert", "etl")["suppressed"]
    assert counted + episode_uncounted == BURST // 2 - 1
    assert "Alert 'etl': grouping skipped" not in logged

    JuheSmsNotifier(**{**episode, "resolve": True})({"dag": None})  # the recovery shows the count
    assert sandbox_conn.messages()[-1]["text"].endswith(f"另有{counted}条已合并")


def _claim_then_hang(kwargs: dict) -> None:
    """A child that claims the episode's SMS and never sends it (it is killed there)."""
    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

    JuheSmsHook.send_sms = lambda *args, **kw: time.sleep(600)  # type: ignore[method-assign]
    JuheSmsNotifier(**kwargs).notify({"dag": None})


@pytest.mark.real_locks
def test_a_process_killed_after_its_claim_does_not_silence_the_episode(sandbox, monkeypatch):
    connection = json.loads(sandbox.connection_json())
    connection["extra"] = {"timeout": 1, "max_retries": 0}
    monkeypatch.setenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", json.dumps(connection))
    monkeypatch.setattr(notifier_module, "CLAIM_MARGIN_SECONDS", 4.0)  # the claim's bound: ~5.5 s
    tpl_id = sandbox.add_template("#dag#失败，另有#more#条已合并", "运维")
    alert = {
        "mobiles": PAGED,
        "tpl_id": tpl_id,
        "tpl_value": {"dag": "etl", "more": "{{ suppressed_count }}"},
        "group_key": "crash",
        "repeat_interval": timedelta(hours=1),
    }
    child = multiprocessing.get_context("fork").Process(target=_claim_then_hang, args=(alert,))
    child.start()
    deadline = time.monotonic() + 60
    while "claim" not in (_load("alert", "crash") or {}):
        assert time.monotonic() < deadline, "the child never claimed"
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    claimed = _record("alert", "crash")["claim"]

    JuheSmsNotifier(**alert)({"dag": None})  # while the claim stands: held back and counted
    time.sleep(max(0.0, claimed["until"] - time.time()) + 0.2)
    JuheSmsNotifier(**alert)({"dag": None})  # the claim expired: this one pages

    texts = [m["text"] for m in sandbox.messages()]
    assert len(texts) == 1
    assert texts[0].endswith("另有1条已合并")


def _load(kind: str, name: str) -> dict | None:
    from airflow.models.variable import Variable

    value = Variable.get(state.variable_key(kind, name), default_var=None)
    return json.loads(value) if value else None


def test_a_recovery_held_back_by_the_cap_still_closes_its_episode(sandbox_conn, monkeypatch):
    now = [1_900_000_000.0]
    monkeypatch.setattr(notifier_module, "clock", lambda: now[0])
    tpl_id = sandbox_conn.add_template("#what#，另有#more#条", "运维")
    common = {"mobiles": PAGED, "tpl_id": tpl_id, "group_key": "etl", "max_per_number": {"minute": 1}}
    alert = JuheSmsNotifier(**common, tpl_value={"what": "失败", "more": "{{ suppressed_count }}"})
    recovery = JuheSmsNotifier(
        **common, tpl_value={"what": "恢复", "more": "{{ suppressed_count }}"}, resolve=True
    )

    alert({"dag": None})
    now[0] += 30
    recovery({"dag": None})  # within the minute: the cap holds its SMS back, the episode closes
    now[0] += 150
    alert({"dag": None})  # the next outage pages

    texts = [m["text"] for m in sandbox_conn.messages()]
    assert texts == ["【运维】失败，另有0条", "【运维】失败，另有1条"]
    assert _record("alert", "etl")["open"] is True


def test_a_page_that_may_have_gone_out_keeps_its_cap_slot(sandbox, monkeypatch):
    """Found by review: a send answered after its deadline gave its slot back, and a second SMS went out."""
    connection = json.loads(sandbox.connection_json())
    connection["extra"] = {"timeout": 0.5, "max_retries": 0}
    monkeypatch.setenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", json.dumps(connection))
    tpl_id = sandbox.add_template("#task#失败", "运维")
    sandbox.inject("latency", seconds=1.5, path="send.php")  # carried out, answered too late

    for key in ("etl", "billing"):
        JuheSmsNotifier(
            mobiles=PAGED, tpl_id=tpl_id, tpl_value={"task": key}, group_key=key, max_per_number={"minute": 1}
        )({"dag": None})

    assert len(sandbox.messages()) == 1


@pytest.mark.parametrize(
    ("kind", "record"),
    [
        ("alert", {"lock": "x"}),
        ("alert", {"lock": {"until": "x"}}),
        ("alert", {"suppressed": "a"}),
        ("alert", {"claim": {"until": "soon"}}),
        ("alert", {"open": True, "last_sent": "x", "claim": 5}),
        ("caps", {"lock": "x"}),
        ("caps", {"abc": 5}),
        ("caps", {"abc": {"sent": 5}}),
        ("caps", {"abc": {"sent": ["x"], "skipped": -3}}),
        # Found by a second review: each of these silenced paging too.
        ("alert", {"open": True, "opened": 10**400}),
        ("alert", lambda now: {"open": True, "last_sent": now + 86400}),
        ("alert", lambda now: {"open": True, "claim": {"token": "t", "until": now + 10**9}}),
        ("caps", {"abc": {"sent": [10**400]}}),
        ("caps", lambda now: {number_id(PAGED, APPKEY): {"sent": [now + 365 * 86400] * 5}}),
        ("alert_lock", {"until": 1e18}),
        ("alert_lock", {"until": 10**400}),
        ("caps_lock", lambda now: {"token": "t", "until": now + 3600}),
        ("alert_sent", "not json"),
    ],
)
def test_a_damaged_record_never_silences_paging(sandbox_conn, kind, record):
    """Found by review: each of these made every later notification fail, sending nothing."""
    from airflow.models.variable import Variable

    tpl_id = sandbox_conn.add_template("#task#失败", "运维")
    if kind == "alert_sent":  # an episode whose SMS is claimed, its confirmation unreadable
        claimed = {"open": True, "claim": {"token": "t", "until": time.time() + 1}}
        Variable.set(state.variable_key("alert", "g"), json.dumps(claimed))
        Variable.set(state.variable_key("alert", "g") + "_sent", record)
        time.sleep(1.1)
    else:
        name, _, suffix = kind.partition("_")
        key = state.variable_key(name, "g" if name == "alert" else str(tpl_id))
        value = record(time.time()) if callable(record) else record
        Variable.set(key + ("_" + suffix if suffix else ""), json.dumps(value))

    JuheSmsNotifier(
        mobiles=PAGED,
        tpl_id=tpl_id,
        tpl_value={"task": "t"},
        group_key="g",
        repeat_interval=timedelta(hours=1),
        max_per_number={"minute": 5},
    )({"dag": None})

    assert len(sandbox_conn.messages()) == 1
