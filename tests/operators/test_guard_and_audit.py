"""
Guard rails and the audit, in real DAG runs: a budget (max_fee) and a recipient cap stop a send
before any call, a retry is checked on what is left, repeated entries are counted and named.
"""

from __future__ import annotations

import pendulum
import pytest

from tests.dag_runs import rerun_task, run_dag
from tests.operators.test_campaigns import read_report
from tests.operators.test_juhe_sms_operators import assert_every_number_once

pytestmark = pytest.mark.usefixtures("airflow_db")

LONG = "尊敬的#name#：" + "您本期账单已出，请于到期日前还款，逾期将影响您的信用记录。" * 3  # 2 SMS each
ROWS = [{"mobile": f"1390000{n:04d}", "name": f"客户{n}"} for n in range(6)]


def send_calls(sandbox) -> int:
    return sum(call["path"].endswith("send.php") for call in sandbox.calls())


def test_max_fee_stops_the_send_before_any_call(sandbox_conn):
    tpl_id = sandbox_conn.add_template(LONG, "银行")

    result = run_dag("juhe_test_campaign_guarded", recipients=ROWS, tpl_id=tpl_id, max_fee=11)

    assert result.state == "failed"
    assert result.tries["send"] == 1
    assert send_calls(sandbox_conn) == 0


def test_max_recipients_stops_the_send_before_any_call(sandbox_conn):
    tpl_id = sandbox_conn.add_template(LONG, "银行")

    result = run_dag("juhe_test_campaign_guarded", recipients=ROWS, tpl_id=tpl_id, max_recipients="5")

    assert result.state == "failed"
    assert send_calls(sandbox_conn) == 0


def test_a_send_within_budget_reports_its_estimate(sandbox_conn):
    tpl_id = sandbox_conn.add_template(LONG, "银行")

    result = run_dag(
        "juhe_test_campaign_guarded", recipients=ROWS, tpl_id=tpl_id, max_fee=12, max_recipients=6
    )

    summary = result.xcom("send")
    assert result.state == "success"
    assert summary["estimated_fee"] == 12
    assert summary["fee"] == 12  # the sandbox charges what the estimate said


def test_a_retry_is_checked_on_what_is_left_to_send(sandbox_conn):
    tpl_id = sandbox_conn.add_template(LONG, "银行")
    date = pendulum.datetime(2026, 4, 1, tz="UTC")
    sandbox_conn.inject("error", path="send.php", error_code=228806, after=1)  # the 2nd call: refused

    first = run_dag("juhe_test_campaign_guarded", logical_date=date, recipients=ROWS, tpl_id=tpl_id)
    assert first.state == "failed"
    assert first.xcom("send")["failed_count"] == 1  # each row its own text: a call per row

    def budget(fee: int):
        return lambda dag: setattr(dag.task_dict["send"], "max_fee", fee)

    # 1 number of 2 SMS is left: a budget of 1 stops the retry, 2 lets it send it.
    refused = rerun_task("juhe_test_campaign_guarded", date, configure=budget(1))
    assert refused.state == "failed"
    assert send_calls(sandbox_conn) == 6
    sent = rerun_task("juhe_test_campaign_guarded", date, configure=budget(2))
    assert sent.state == "success"
    assert send_calls(sandbox_conn) == 7
    assert sorted(n for m in sandbox_conn.messages() for n in m["mobiles"]) == [r["mobile"] for r in ROWS]


def test_repeated_entries_of_a_file_are_counted_and_name_the_line_kept(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template("您好#name#", "银行")
    source = tmp_path / "customers.csv"
    source.write_text(
        "mobile,name\n13900000001,甲\n13900000002,乙\n+86 139 0000 0001,甲二\n13900000002,乙二\n1390000,丙\n"
    )
    report = tmp_path / "report.csv"

    result = run_dag(
        "juhe_test_campaign",
        recipients=f"file://{source}",
        tpl_id=tpl_id,
        report_path=f"file://{report}",
    )

    summary = result.xcom("send")
    assert result.state == "success"
    assert summary["requested"] == 3
    assert summary["duplicate_count"] == 2
    assert summary["invalid_reasons"] == {"not a valid mobile number": 1}
    assert_every_number_once(summary)
    repeated: list = []
    read_report(report, repeated)
    assert [(r["mobile"], r["reason"]) for r in repeated] == [
        ("13900000001", "duplicate of line 2, the entry kept"),
        ("13900000002", "duplicate of line 3, the entry kept"),
    ]


def test_repeated_numbers_in_mobiles_are_counted(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知")

    result = run_dag(
        "juhe_test_send", mobiles=["13800138000", "138 0013 8000", "13900139000", "abc"], tpl_id=tpl_id
    )

    summary = result.xcom("send")
    assert summary["requested"] == 3
    assert summary["duplicate_count"] == 1
    assert summary["invalid_reasons"] == {"not a valid mobile number": 1}
