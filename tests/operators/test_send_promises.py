"""
The send path's promises inside real DAG runs: one plan per task instance, unknown only where a call
may have started, no silent success. A second ``run_dag`` of the same logical date clears the task
instance and runs it again, keeping its task state store: a retry with room to act between tries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pendulum
import pytest

from tests.conftest import REPO
from tests.dag_runs import rerun_task, run_dag
from tests.operators.test_juhe_sms_operators import assert_every_number_once, sent_numbers

pytestmark = pytest.mark.usefixtures("airflow_db")

MOBILE = [f"138{i:08d}" for i in range(10)]
UNICOM = [f"131{i:08d}" for i in range(10)]
TELECOM = [f"189{i:08d}" for i in range(10)]


def carrier_templates(sandbox) -> dict[str, int]:
    return {
        carrier: sandbox.add_template("通知", "银行", operation=operation)
        for operation, carrier in enumerate(("all", "mobile", "unicom", "telecom"))
    }


def a_date(seconds: int) -> pendulum.DateTime:
    return pendulum.datetime(2026, 3, 1, tz="UTC").add(seconds=seconds)


def test_a_number_regrouped_between_tries_is_never_sent_twice(sandbox_conn):
    templates = carrier_templates(sandbox_conn)
    sandbox_conn.port_number(MOBILE[9], "unicom")  # the API disagrees with the prefix table from the start
    sandbox_conn.inject("error", error_code=228806, after=2, path="send.php")  # the 3rd send fails
    mobiles = MOBILE + UNICOM + TELECOM
    when = a_date(1)

    first = run_dag("juhe_test_send_tries", logical_date=when, mobiles=mobiles, carrier_tpl_ids=templates)
    assert first.state == "failed"
    assert first.xcom("send")["failed_count"] == 1  # the unicom batch holding the ported number

    sandbox_conn.port_number(MOBILE[0], "telecom")  # 携号转网 between the tries
    second = rerun_task("juhe_test_send_tries", when)

    assert second.state == "success", second.states
    summary = second.xcom("send")
    assert summary["sent"] == 30
    assert_every_number_once(summary)
    reached = sent_numbers(sandbox_conn)
    assert sorted(reached) == sorted(mobiles)  # everyone once: the failed batch sent, nothing twice
    by_template = {}
    for message in sandbox_conn.messages():
        by_template.setdefault(message["tpl_id"], set()).update(message["mobiles"])
    assert MOBILE[0] in by_template[templates["mobile"]]  # routed as the first try planned
    assert MOBILE[9] in by_template[templates["unicom"]]  # the first try's API answer, replayed
    grouping = [c for c in sandbox_conn.calls() if c["path"].endswith("mobileGroup.php")]
    assert len(grouping) == 1  # the retry replays the plan instead of asking again


def test_batch_size_edited_between_tries_is_ignored_by_the_replay(sandbox_conn):
    templates = {"all": sandbox_conn.add_template("通知", "银行")}
    sandbox_conn.inject("error", error_code=228806, after=1, path="send.php")  # the 2nd send fails
    mobiles = MOBILE + UNICOM + TELECOM
    when = a_date(2)

    first = run_dag("juhe_test_send_tries", logical_date=when, mobiles=mobiles, carrier_tpl_ids=templates)
    assert first.state == "failed"

    def smaller_batches(dag):
        dag.task_dict["send"].batch_size = 7
        dag.task_dict["send"].max_workers = 3

    second = rerun_task("juhe_test_send_tries", when, configure=smaller_batches)

    assert second.state == "success", second.states
    assert sorted(sent_numbers(sandbox_conn)) == sorted(mobiles)
    assert [len(m["mobiles"]) for m in sandbox_conn.messages()] == [10, 10, 10]
    assert_every_number_once(second.xcom("send"))


def test_changed_recipients_between_tries_fail_without_sending(sandbox_conn, task_output):
    templates = {"all": sandbox_conn.add_template("通知", "银行")}
    sandbox_conn.inject("error", error_code=228806, path="send.php")
    when = a_date(3)
    first = run_dag("juhe_test_send_tries", logical_date=when, mobiles=MOBILE, carrier_tpl_ids=templates)
    assert first.state == "failed"

    def other_recipients(dag):
        dag.task_dict["send"].mobiles = UNICOM

    second = rerun_task("juhe_test_send_tries", when, configure=other_recipients)

    assert second.state == "failed"
    assert sandbox_conn.messages() == []
    assert "recipients changed since an earlier try" in task_output()


def test_stringified_list_fails_at_once_naming_the_cause(sandbox_conn, task_output):
    tpl_id = sandbox_conn.add_template("通知", "银行")

    result = run_dag("juhe_test_send_text", mobiles=["13900000001", "15900000002"], tpl_id=tpl_id)

    assert result.state == "failed"
    assert result.tries["send"] == 1
    assert sandbox_conn.calls() == []
    log = task_output()
    assert "list rendered to its text form" in log
    assert "13900000001" not in log  # numbers are masked in the error


def test_unreadable_reply_after_a_send_is_unknown_with_its_sid(requests_mock, monkeypatch, task_output):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": "http://juhe.invalid", "password": "k"}),
    )
    requests_mock.post(
        "http://juhe.invalid/shortLetter/send.php",
        json={"error_code": 0, "reason": "ok", "result": {"sid": "20260301000000000000000001", "fee": "a"}},
    )
    requests_mock.post(
        "http://juhe.invalid/shortLetter/myTemplates.php",
        json={"error_code": 0, "reason": "ok", "result": {"templates": []}},
    )

    result = run_dag("juhe_test_send", mobiles=["13800138000", "13100001111"], tpl_id=7)

    assert result.state == "failed"
    assert result.tries["send"] == 1  # only an unknown is left: no retry
    summary = result.xcom("send")
    assert summary["unknown"] == ["13100001111", "13800138000"]
    assert summary["failed"] == []
    assert "sid 20260301000000000000000001" in task_output()


# The child parses only the DAG's own file (the path a parse of the whole folder finds it at): the
# whole folder cost its start-up ~3 s more.
CHILD = """
import os, sys, pendulum
from tests import dag_runs
from tests.dag_runs import run_dag
dag_runs._DAG_FILES["juhe_test_send_crash"] = os.path.join(dag_runs.DAGS_FOLDER, "juhe_test_dags.py")
run_dag("juhe_test_send_crash", logical_date=pendulum.parse(sys.argv[1]), mobiles=sys.argv[2].split(","), tpl_id=int(sys.argv[3]))
"""


def test_worker_killed_mid_send_the_retry_sends_every_batch_that_never_started(sandbox_conn):
    """SIGKILL of a real process while batch 3 of 5 is on the wire; the retry sends batch 5."""
    tpl_id = sandbox_conn.add_template("通知", "银行")
    sandbox_conn.state.latency = 0.3
    mobiles = [f"139{i:08d}" for i in range(50)]
    when = a_date(4)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, when.isoformat(), ",".join(mobiles), str(tpl_id)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while len([c for c in sandbox_conn.calls() if c["path"].endswith("send.php")]) < 3:
            assert child.poll() is None, "the run ended before the third send"
            assert time.monotonic() < deadline, "the third send never came"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    before_retry = sent_numbers(sandbox_conn)
    assert len(before_retry) == 30  # batches 1-3 reached the sandbox; 3's reply never came back
    sandbox_conn.state.latency = 0

    retry = rerun_task("juhe_test_send_crash", when)

    summary = retry.xcom("send")
    reached = sent_numbers(sandbox_conn)
    assert len(reached) == len(set(reached))  # nobody got the SMS twice
    assert set(mobiles[40:]) <= set(reached[30:])  # batch 5 never started: the retry sent it
    assert summary["unknown_count"] <= 2 * 10  # the call in flight and the one announced next
    assert set(mobiles[20:30]) <= set(summary["unknown"])  # the batch on the wire is unknown
    assert set(mobiles) - set(reached) <= set(summary["unknown"])  # nothing claimed sent that was not
    assert summary["sent"] == 50 - summary["unknown_count"]
    assert_every_number_once(summary)
    assert retry.state == "failed"  # unknowns are left and nothing more to send: no useless retry
    assert retry.tries["send"] == 2


def test_checked_unknowns_go_out_once_from_a_new_dag_run(sandbox_conn):
    """The documented recovery: a new run (a new task instance, its own ledger) sends them once."""
    tpl_id = sandbox_conn.add_template("通知", "银行")
    sandbox_conn.inject("drop", times=1, path="send.php")
    first = run_dag("juhe_test_send", mobiles=MOBILE[:4], tpl_id=tpl_id)
    unknown = first.xcom("send")["unknown"]
    assert first.state == "failed"
    assert len(unknown) == 2
    before = len(sandbox_conn.messages())

    recovery = run_dag("juhe_test_send", mobiles=unknown, tpl_id=tpl_id)

    assert recovery.state == "success"
    assert recovery.xcom("send")["sent"] == 2
    resent = [n for m in sandbox_conn.messages()[before:] for n in m["mobiles"]]
    assert sorted(resent) == sorted(unknown)
