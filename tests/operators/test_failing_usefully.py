"""
How a send fails, in real DAG runs: refusals no retry changes use no retries, the exception names
codes and reasons, connections that cannot work fail before any batch is marked, and what surely
was not sent is sent by the next try.
"""

from __future__ import annotations

import json
from collections import Counter

import pendulum
import pytest

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator
from airflow_provider_juhe.sending.ledger import InMemoryStateStore
from tests.conftest import APPKEY
from tests.dag_runs import rerun_task, run_dag
from tests.operators.test_juhe_sms_operators import assert_every_number_once

pytestmark = pytest.mark.usefixtures("airflow_db")

NUMBERS = [f"1380013{n:04d}" for n in range(10)]


def received(sandbox) -> Counter:
    return Counter(number for message in sandbox.messages() for number in message["mobiles"])


def send_calls(sandbox) -> int:
    return sum(call["path"].endswith("send.php") for call in sandbox.calls())


def test_a_missing_template_fails_without_retries_naming_code_reason_and_cause(sandbox_conn):
    result = run_dag("juhe_test_send", mobiles=NUMBERS[:5], tpl_id=999)

    assert result.state == "failed"
    assert result.tries["send"] == 1  # the DAG allows 2 retries: none is used on 228801
    summary = result.xcom("send")
    assert summary["failed_count"] == 5
    assert {f["error_code"] for f in summary["failed"]} == {228801}
    assert send_calls(sandbox_conn) == 3  # batch_size 2: one refused call per batch, none again


def test_the_exception_names_codes_counts_reasons_and_explanations(sandbox_conn):
    operator = JuheSendSmsOperator(task_id="send", mobiles=NUMBERS[:5], tpl_id=999, batch_size=5)
    pushed = {}
    ti = type("TI", (), {"xcom_push": lambda self, key, value: pushed.update({key: value})})()
    context = {"ti": ti, "task_state_store": InMemoryStateStore()}

    with pytest.raises(Exception, match="Not retried") as raised:
        operator.execute(context)

    message = str(raised.value)
    assert "5 number(s) failed: 228801 模板不存在 ×5" in message
    assert "(the template does not exist on this account" in message
    assert pushed["return_value"]["failed_count"] == 5


def test_an_unfilled_variable_with_mobiles_fails_before_any_send(sandbox_conn):
    tpl_id = sandbox_conn.add_template("您的验证码是#code#，#minutes#分钟内有效")

    result = run_dag("juhe_test_send", mobiles=NUMBERS[:3], tpl_id=tpl_id, tpl_value={"code": "1234"})

    assert result.state == "failed"
    assert result.tries["send"] == 1
    assert send_calls(sandbox_conn) == 0


def test_an_undefined_connection_fails_at_once(sandbox_conn):
    result = run_dag("juhe_test_send_undefined_conn", mobiles=NUMBERS[:2], tpl_id=1)

    assert result.state == "failed"
    assert result.tries["send"] == 1
    assert sandbox_conn.calls() == []


def test_an_undocumented_code_on_a_send_is_unknown_and_never_sent_again(sandbox_conn):
    tpl_id = sandbox_conn.add_template("账单已出")
    sandbox_conn.inject("unknown_code", path="send.php")  # carried out, answered 229999

    result = run_dag("juhe_test_send", mobiles=NUMBERS[:6], tpl_id=tpl_id)

    summary = result.xcom("send")
    assert result.state == "failed"
    assert result.tries["send"] == 1  # nothing a retry could send: unknowns are never sent again
    assert summary["unknown_count"] == 2
    assert summary["sent"] == 4
    assert max(received(sandbox_conn).values()) == 1
    assert_every_number_once(summary)


def _point_at(monkeypatch, host: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": host, "password": APPKEY, "extra": {"max_retries": 0}}),
    )


@pytest.mark.parametrize(
    "broken", ["htp://{host}", "https://{host}"], ids=["scheme typo", "TLS to plain HTTP"]
)
def test_a_connection_that_cannot_work_strands_nothing(sandbox_conn, monkeypatch, broken):
    """Before: every batch became unknown for good. Now nothing is marked, and the fixed try sends all."""
    tpl_id = sandbox_conn.add_template("账单已出")
    # A DAG run of its own for each case: the first case's run, already green, must not be found again.
    date = pendulum.datetime(2026, 3, 1 if broken.startswith("htp") else 2, tz="UTC")
    _point_at(monkeypatch, broken.format(host=sandbox_conn.url.split("://")[1]))

    first = run_dag("juhe_test_send", logical_date=date, mobiles=NUMBERS, tpl_id=tpl_id)

    assert first.state == "failed"
    assert first.tries["send"] == (1 if broken.startswith("htp") else 3)  # a typo is not retried
    summary = first.xcom("send")
    assert summary is None or (summary["unknown_count"], summary["failed_count"]) == (0, len(NUMBERS))
    assert received(sandbox_conn) == Counter()

    monkeypatch.setenv("AIRFLOW_CONN_JUHE_SMS_DEFAULT", sandbox_conn.connection_json())
    fixed = rerun_task("juhe_test_send", date)

    assert fixed.state == "success"
    assert received(sandbox_conn) == Counter(NUMBERS)


def test_the_summary_names_final_refusals_apart_from_transient_ones():
    from airflow_provider_juhe.sending.dispatch import Outcome
    from airflow_provider_juhe.sending.plan import Batch
    from airflow_provider_juhe.sending.report import SendSummary

    summary = SendSummary(requested=4, invalid=[])
    summary.record(
        Batch(0, 1, ("13800000001", "13800000002")),
        Outcome("failed", error_code=228801, reason="模板不存在", final=True),
    )
    summary.record(Batch(1, 1, ("13800000003",)), Outcome("failed", error_code=228807, reason="系统繁忙"))

    assert summary.failures_final() is False  # a retry still has something it may change
    assert summary.describe().startswith(
        "3 number(s) failed: 228801 模板不存在 ×2 (the template does not exist"
    )
    assert "228807 系统繁忙 ×1 (Juhe is busy, try again later)" in summary.describe()


def test_a_malformed_carrier_answer_is_retried_not_an_input_error(sandbox_conn, monkeypatch):
    """Before: "'int' object is not iterable", failed without retries as bad input."""
    from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

    # The hook's own retries keep their count, not their backoff: 3 tries x 3.5 s of waiting was most of the test.
    hook_init = JuheSmsHook.__init__
    monkeypatch.setattr(
        JuheSmsHook, "__init__", lambda self, *a, **kw: hook_init(self, *a, retry_wait=0.01, **kw)
    )
    tpl_id = sandbox_conn.add_template("账单已出")
    sandbox_conn.inject("malformed", path="mobileGroup.php", shape="members_not_list", times=None)

    result = run_dag("juhe_test_send_carriers", mobiles=NUMBERS[:3], carrier_tpl_ids={"all": tpl_id})

    assert result.state == "failed"
    assert result.tries["send"] == 3  # retried, as a server's passing fault may be
    assert send_calls(sandbox_conn) == 0
