"""
Guards that fail closed and the first hour's files, in real DAG runs (dag.test()) against the sandbox:
opt-outs as spreadsheets write them, empty opt-out exports, Excel's Chinese CSV (columns, encoding).
"""

from __future__ import annotations

import pytest

from tests.dag_runs import run_dag
from tests.operators.test_juhe_sms_operators import assert_every_number_once, sent_numbers

pytestmark = pytest.mark.usefixtures("airflow_db")

ROWS = [{"mobile": f"1380000{i:04d}", "name": str(i)} for i in range(4)]


def setting(**attributes):
    """A ``configure`` for run_dag: set attributes on the send task, as an edited DAG file would."""

    def configure(dag):
        for name, value in attributes.items():
            setattr(dag.task_dict["send"], name, value)

    return configure


def test_opt_outs_written_as_floats_are_never_sent(sandbox_conn, tmp_path):
    """Before: an export from pandas/Excel (13800000001.0) suppressed nobody and the task was green."""
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    opt_outs = tmp_path / "opt_outs.csv"
    opt_outs.write_text("mobile,date\n13800000001.0,2026-11-01\n1.3800000002E10,2026-11-02\n")

    result = run_dag("juhe_test_campaign", recipients=ROWS, tpl_id=tpl_id, suppress=str(opt_outs))

    assert result.state == "success", result.states
    assert sorted(sent_numbers(sandbox_conn)) == ["13800000000", "13800000003"]
    summary = result.xcom("send")
    assert summary["suppressed"] == 2
    assert_every_number_once(summary)


def test_an_opt_out_that_lost_digits_fails_before_any_send_without_retries(
    sandbox_conn, tmp_path, task_output
):
    """Before: 8.6138E+12 (Excel's display of a long number) was ignored and everyone got the SMS."""
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    opt_outs = tmp_path / "opt_outs.csv"
    opt_outs.write_text("mobile\n13800000001\n8.6138E+12\n")

    result = run_dag("juhe_test_campaign", recipients=ROWS, tpl_id=tpl_id, suppress=str(opt_outs))

    assert result.state == "failed"
    assert result.tries["send"] == 1  # retries=2 in the DAG: none used
    assert sandbox_conn.messages() == []
    assert f"suppress: {opt_outs}, line 3: '8.6****E+12' is not a valid mobile number" in task_output()


def test_an_empty_opt_out_export_fails_unless_allowed(sandbox_conn, tmp_path, task_output):
    """Before: an empty opt-out file passed without a word."""
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    opt_outs = tmp_path / "opt_outs.txt"
    opt_outs.write_text("")

    failed = run_dag("juhe_test_campaign", recipients=ROWS, tpl_id=tpl_id, suppress=str(opt_outs))

    assert failed.state == "failed"
    assert failed.tries["send"] == 1
    assert sandbox_conn.messages() == []
    assert "holds no opt-out entry at all" in task_output()
    allowed = run_dag(
        "juhe_test_campaign",
        recipients=ROWS,
        tpl_id=tpl_id,
        suppress=str(opt_outs),
        configure=setting(allow_empty_suppress=True),
    )
    assert allowed.state == "success"
    assert len(sent_numbers(sandbox_conn)) == 4


def test_an_excel_csv_from_chinese_windows_with_columns_and_encoding(sandbox_conn, tmp_path):
    """Before: no way to map 手机号,姓名,金额 to the template's variables, nor to read GBK."""
    tpl_id = sandbox_conn.add_template("您好#name#，应还#amount#元", "银行")
    customers = tmp_path / "客户.csv"
    customers.write_bytes(
        "手机号,姓名,金额\r\n13800000001,王芳,12.50\r\n13100000002,李伟,8\r\n".encode("gbk")
    )
    opt_outs = tmp_path / "退订.csv"
    opt_outs.write_bytes("mobile,备注\r\n13100000002,投诉\r\n".encode("gbk"))

    result = run_dag(
        "juhe_test_campaign",
        recipients=str(customers),
        tpl_id=tpl_id,
        suppress=str(opt_outs),
        configure=setting(columns={"手机号": "mobile", "姓名": "name", "金额": "amount"}, encoding="gbk"),
    )

    assert result.state == "success", result.states
    (message,) = sandbox_conn.messages()
    assert message["mobiles"] == ["13800000001"]
    assert message["text"].endswith("您好王芳，应还12.50元")
    assert result.xcom("send")["suppressed"] == 1


LONG = "尊敬的#name#：" + "您本期账单已出，请于到期日前还款，逾期将影响您的信用记录。" * 3  # 2 SMS each


def send_calls(sandbox) -> int:
    return sum(call["path"].endswith("send.php") for call in sandbox.calls())


def test_max_fee_with_the_template_text_unreadable_refuses_retryably(sandbox_conn, task_output):
    """
    Before: myTemplates answering 502 on every retry, the estimate assumed 1 SMS per number: 6
    two-part messages passed max_fee=7 and cost 12, and the summary said estimated_fee 6.
    """
    tpl_id = sandbox_conn.add_template(LONG, "银行")
    sandbox_conn.inject("html_502", times=None, path="myTemplates.php")

    result = run_dag("juhe_test_campaign", recipients=ROWS6, tpl_id=tpl_id, configure=setting(max_fee=7))

    assert result.state == "failed"
    assert result.tries["send"] == 3  # retryable: retries=2 in the DAG, all used
    assert send_calls(sandbox_conn) == 0
    output = task_output()
    assert "max_fee: the templates' text could not be read, so the fee cannot be estimated" in output
    assert "HTTP 502" in output
    assert "nothing was sent" in output


def test_the_estimate_is_none_whenever_the_text_was_not_read(sandbox_conn):
    tpl_id = sandbox_conn.add_template(LONG, "银行")
    sandbox_conn.inject("html_502", times=None, path="myTemplates.php")

    dry = run_dag("juhe_test_campaign_dry_run", recipients=ROWS6, tpl_id=tpl_id)
    sent = run_dag("juhe_test_campaign", recipients=ROWS6, tpl_id=tpl_id)  # no max_fee: it sends

    assert dry.state == "success"
    assert dry.xcom("send")["estimated_fee"] is None
    assert sent.state == "success"
    assert sent.xcom("send")["estimated_fee"] is None
    assert sent.xcom("send")["fee"] == 12


ROWS6 = [{"mobile": f"1390000{n:04d}", "name": f"客户{n}"} for n in range(6)]
