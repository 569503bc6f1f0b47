"""The operators inside real DAG runs (dag.test()) against the sandbox."""

from __future__ import annotations

import json

import pytest

from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator
from tests.dag_runs import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

MIXED = ["13800138000", "+86 131 0000 1111", "13800138000", "1380013800", "18900002222", "17000003333", "x"]


def sent_numbers(sandbox) -> list[str]:
    return [number for message in sandbox.messages() for number in message["mobiles"]]


def assert_every_number_once(summary):
    accounted = (
        summary["sent"]
        + summary["invalid_count"]
        + summary["suppressed"]
        + summary["failed_count"]
        + summary["unknown_count"]
    )
    assert summary["requested"] == accounted
    assert sum(f["count"] for f in summary["failed"]) == summary["failed_count"]


def test_send_normalises_dedupes_batches_and_reports_invalid(sandbox_conn):
    tpl_id = sandbox_conn.add_template("您好#name#，账单#amount#元", "银行")

    result = run_dag(
        "juhe_test_send", mobiles=MIXED, tpl_id=tpl_id, tpl_value={"name": "王&李", "#amount#": "1,024"}
    )

    assert result.state == "success"
    summary = result.xcom("send")
    assert summary["requested"] == 6
    assert summary["sent"] == 4
    assert summary["invalid"] == ["1380013800", "x"]
    assert summary["failed"] == []
    assert summary["unknown"] == []
    assert summary["fee"] == 4
    assert [b["count"] for b in summary["batches"]] == [2, 2]
    assert {b["sid"] for b in summary["batches"]} == {m["sid"] for m in sandbox_conn.messages()}
    assert_every_number_once(summary)
    assert sorted(sent_numbers(sandbox_conn)) == ["13100001111", "13800138000", "17000003333", "18900002222"]
    assert {m["text"] for m in sandbox_conn.messages()} == {"【银行】您好王&李，账单1,024元"}


def test_failed_batch_fails_the_try_then_a_retry_sends_only_what_is_missing(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知", "银行")
    sandbox_conn.inject("error", error_code=228806, times=1, path="send.php")

    result = run_dag("juhe_test_send", mobiles=["13800138000", "13100001111", "18900002222"], tpl_id=tpl_id)

    assert result.state == "success"
    assert result.tries["send"] == 2
    summary = result.xcom("send")
    assert summary["sent"] == 3
    assert_every_number_once(summary)
    assert sorted(sent_numbers(sandbox_conn)) == ["13100001111", "13800138000", "18900002222"]


def test_dropped_connection_is_unknown_and_fails_without_a_useless_retry(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知", "银行")
    sandbox_conn.inject("drop", times=1, path="send.php")
    mobiles = ["13800138000", "13100001111", "18900002222", "13300003333", "15000004444"]

    result = run_dag("juhe_test_send", mobiles=mobiles, tpl_id=tpl_id)

    assert result.state == "failed"
    assert result.tries["send"] == 1  # only an unknown is left: a retry could send nothing more
    summary = result.xcom("send")
    assert summary["unknown_count"] == len(summary["unknown"]) == 2  # the dropped batch of two
    assert summary["sent"] == 3
    assert_every_number_once(summary)
    assert sorted(sent_numbers(sandbox_conn)) == sorted(mobiles)  # each number reached the sandbox once
    assert len([c for c in sandbox_conn.calls() if c["path"].endswith("send.php")]) == 3


def test_fail_on_unknown_false_reports_unknowns_and_succeeds(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知", "银行")
    sandbox_conn.inject("drop", times=1, path="send.php")
    mobiles = ["13800138000", "13100001111", "18900002222"]

    result = run_dag("juhe_test_send_lenient", mobiles=mobiles, tpl_id=tpl_id)

    assert result.state == "success"
    summary = result.xcom("send")
    assert summary["unknown_count"] == 2
    assert summary["sent"] == 1
    assert_every_number_once(summary)


def test_auth_error_fails_at_once_without_retries(sandbox_conn, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
        json.dumps({"conn_type": "juhe_sms", "host": sandbox_conn.url, "password": "expired"}),
    )

    result = run_dag("juhe_test_send", mobiles=["13800138000", "13100001111", "18900002222"], tpl_id=1)

    assert result.state == "failed"
    assert result.tries["send"] == 1
    summary = result.xcom("send")
    assert {f["error_code"] for f in summary["failed"]} == {10001}
    assert_every_number_once(summary)


@pytest.mark.parametrize(("tpl_id", "tpl_value"), [("abc", None), (1, ["not", "a", "mapping"])])
def test_bad_input_fails_before_any_request(sandbox_conn, tpl_id, tpl_value):
    result = run_dag("juhe_test_send", mobiles=["13800138000"], tpl_id=tpl_id, tpl_value=tpl_value)

    assert result.state == "failed"
    assert result.tries["send"] == 1  # the DAG allows retries; bad input does not use them
    assert sandbox_conn.calls() == []


@pytest.mark.parametrize("source", ["api", "local"])
def test_carrier_routing(sandbox_conn, source):
    submitted = {"all": 0, "mobile": 0, "unicom": 0, "telecom": 0}
    for carrier, operation in (("all", 0), ("mobile", 1), ("unicom", 2), ("telecom", 3)):
        submitted[carrier] = sandbox_conn.add_template("通知", "银行", operation=operation)
    mobiles = ["13800138000", "13900001111", "13100001111", "18900002222", "19200004444", "19900006666"]

    result = run_dag("juhe_test_send_carriers", mobiles=mobiles, carrier_tpl_ids=submitted, source=source)

    assert result.state == "success"
    routed = {}
    for message in sandbox_conn.messages():
        routed.setdefault(message["tpl_id"], []).extend(message["mobiles"])
    assert routed == {
        submitted["mobile"]: ["13800138000", "13900001111"],
        submitted["unicom"]: ["13100001111"],
        submitted["telecom"]: ["18900002222", "19900006666"],
        submitted["all"]: ["19200004444"],
    }
    grouping_calls = [c for c in sandbox_conn.calls() if c["path"].endswith("mobileGroup.php")]
    assert len(grouping_calls) == (1 if source == "api" else 0)


def test_dry_run_plans_and_estimates_without_sending(sandbox_conn):
    long_text = "尊敬的#name#，" + "您的账单已出，请按时还款。" * 6
    carrier_tpl_ids = {"all": sandbox_conn.add_template(long_text, "银行")}

    result = run_dag(
        "juhe_test_send_dry_run",
        mobiles=["13800138000", "13100001111", "18900002222", "bad"],
        carrier_tpl_ids=carrier_tpl_ids,
        tpl_value={"name": "王"},
    )

    assert result.state == "success"
    summary = result.xcom("send")
    assert summary["dry_run"] is True
    assert (summary["planned"], summary["planned_batches"], summary["estimated_fee"]) == (3, 2, 6)
    assert summary["invalid"] == ["bad"]
    assert summary["sent"] == 0
    assert sandbox_conn.messages() == []


def test_list_and_group_operators(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知", "银行")
    mobiles = "13800138000\n13100001111, 18900002222 19200004444"

    result = run_dag("juhe_test_reads", mobiles=mobiles)

    assert result.state == "success"
    assert [t["tpl_id"] for t in result.xcom("list_templates")] == [tpl_id]
    expected = {
        "mobile": ["13800138000"],
        "unicom": ["13100001111"],
        "telecom": ["18900002222"],
        "unknown": ["19200004444"],
    }
    assert result.xcom("group_api") == expected
    assert result.xcom("group_local") == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tpl_id": 1, "batch_size": 0}, "batch_size: expected an integer from 1 to 1000, got 0"),
        ({"tpl_id": 1, "batch_size": 1001}, "batch_size: .* got 1001"),
        ({"tpl_id": 1, "max_workers": 0}, "max_workers: .* got 0"),
        ({}, "tpl_id, carrier_tpl_ids: give exactly one"),
        ({"tpl_id": 1, "carrier_tpl_ids": {"all": 1}}, "tpl_id, carrier_tpl_ids: give exactly one"),
    ],
)
def test_send_operator_rejects_bad_arguments_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JuheSendSmsOperator(task_id="send", mobiles="13800138000", **kwargs)
