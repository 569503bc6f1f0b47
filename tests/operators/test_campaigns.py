"""
Personalised campaigns inside real DAG runs (dag.test()) against the sandbox: rows with their own
values, opt-outs, send windows, the per-recipient report, capped XCom lists, shards, bad input.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pendulum
import pytest

from tests.dag_runs import rendered_fields, rerun_task, run_dag
from tests.operators.test_juhe_sms_operators import assert_every_number_once, sent_numbers

pytestmark = pytest.mark.usefixtures("airflow_db")

TEMPLATE = "尊敬的#name#，您尾号#card#的账单#amount#元将于#date#到期"
ROWS = [
    {"mobile": "13800000001", "name": "王芳", "card": "1234", "amount": "100.00"},
    {"mobile": "13100000002", "name": "李伟", "card": "5678", "amount": "2,000.50"},
    {"mobile": "18900000003", "name": "客户", "card": "0000", "amount": "1.00"},
    {
        "mobile": "18900000004",
        "name": "客户",
        "card": "0000",
        "amount": "1.00",
    },  # same values as the row above
    {
        "mobile": "+86 189 0000 0003",
        "name": "重复",
        "card": "9999",
        "amount": "9.00",
    },  # duplicate: first wins
    {"mobile": "1380000000", "name": "短号", "card": "1111", "amount": "1.00"},  # invalid number
    {"mobile": "13800000005", "name": "缺卡号", "amount": "5.00"},  # no #card#
]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def texts(sandbox) -> dict[str, str]:
    return {number: m["text"] for m in sandbox.messages() for number in m["mobiles"]}


def read_report(path, duplicates: list | None = None) -> dict[str, dict[str, str]]:
    """The report's rows by number; rows of repeated entries go to ``duplicates`` when given."""
    with open(path, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    requested = [row for row in rows if row["status"] != "duplicate"]
    if duplicates is not None:
        duplicates.extend(row for row in rows if row["status"] == "duplicate")
    numbers = [row["mobile"] for row in requested]
    assert len(numbers) == len(set(numbers)), "every requested number exactly once"
    return {row["mobile"]: row for row in requested}


def local_time(seconds_from_now: float) -> str:
    return (datetime.now(SHANGHAI) + timedelta(seconds=seconds_from_now)).strftime("%H:%M:%S")


def test_each_customer_gets_their_own_text_and_equal_rows_share_a_call(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template(TEMPLATE, "银行")
    report = tmp_path / "sms" / "reminders.csv"  # the folder does not exist yet

    result = run_dag(
        "juhe_test_campaign",
        recipients=ROWS,
        tpl_id=tpl_id,
        tpl_value={"date": "12月1日"},
        report_path=f"file://{report}",
    )

    assert result.state == "success", result.states
    summary = result.xcom("send")
    assert summary["requested"] == 6
    assert summary["sent"] == 4
    assert summary["invalid_count"] == 2
    assert sorted(summary["invalid"]) == ["1380000000", "13800000005"]
    assert summary["report"] == f"file://{report}"
    assert summary["duplicate_count"] == 1
    assert summary["invalid_reasons"] == {"not a valid mobile number": 1, "missing #card#": 1}
    assert summary["estimated_fee"] == 4
    assert_every_number_once(summary)
    assert texts(sandbox_conn) == {
        "13800000001": "【银行】尊敬的王芳，您尾号1234的账单100.00元将于12月1日到期",
        "13100000002": "【银行】尊敬的李伟，您尾号5678的账单2,000.50元将于12月1日到期",
        "18900000003": "【银行】尊敬的客户，您尾号0000的账单1.00元将于12月1日到期",
        "18900000004": "【银行】尊敬的客户，您尾号0000的账单1.00元将于12月1日到期",
    }
    shared = [m for m in sandbox_conn.messages() if "18900000003" in m["mobiles"]]
    assert shared[0]["mobiles"] == ["18900000003", "18900000004"]  # one call for the equal rows
    assert len(sandbox_conn.messages()) == 3
    repeated = []
    rows = read_report(report, repeated)
    assert [(r["mobile"], r["reason"]) for r in repeated] == [
        ("18900000003", "duplicate of recipients[2], the entry kept")
    ]
    assert rows["13800000005"]["status"] == "invalid"
    assert rows["13800000005"]["reason"] == "missing #card#"
    assert rows["1380000000"]["status"] == "invalid"
    sids = {number: m["sid"] for m in sandbox_conn.messages() for number in m["mobiles"]}
    assert {n: r["sid"] for n, r in rows.items() if r["status"] == "sent"} == sids


def test_rows_from_an_xcom_and_the_rendered_view_keeps_numbers_masked(sandbox_conn):
    tpl_id = sandbox_conn.add_template("您好#name#", "银行")
    rows = [{"mobile": f"1390000{i:04d}", "#name#": f"客户{i}"} for i in range(30)]

    result = run_dag("juhe_test_campaign_xcom", tpl_id=tpl_id, rows=rows)

    assert result.state == "success", result.states
    assert result.xcom("send")["sent"] == 30
    assert texts(sandbox_conn)["13900000007"] == "【银行】您好客户7"
    (stored,) = rendered_fields(result.run_id, "send")
    shown = json.dumps(stored, ensure_ascii=False)
    assert "13900000007" not in shown
    assert "客户7" not in shown
    assert stored["recipients"] == "<30 entries: 139****0000, 139****0001, 139****0002 and 27 more>"


def test_opt_outs_from_a_list_and_from_files_are_never_sent(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    rows = [{"mobile": f"1380000{i:04d}", "name": str(i)} for i in range(6)]
    opt_out_text = tmp_path / "opt_out.txt"
    opt_out_text.write_text("+86 138 0000 0001\n13800000002\n")
    opt_out_csv = tmp_path / "complaints.csv"
    opt_out_csv.write_text("mobile,date\n13800000003,2026-11-01\n")

    runs = [(["13800000000"], {"13800000000"}), (str(opt_out_text), {"13800000001", "13800000002"})]
    runs.append((str(opt_out_csv), {"13800000003"}))
    for suppress, opted_out in runs:
        before = len(sent_numbers(sandbox_conn))
        result = run_dag("juhe_test_campaign", recipients=rows, tpl_id=tpl_id, suppress=suppress)

        assert result.state == "success", result.states
        summary = result.xcom("send")
        assert summary["suppressed"] == len(opted_out)
        assert_every_number_once(summary)
        reached = sent_numbers(sandbox_conn)[before:]
        assert sorted(reached) == sorted({row["mobile"] for row in rows} - opted_out)
        (stored,) = rendered_fields(result.run_id, "send")
        assert stored["suppress"] == (suppress if isinstance(suppress, str) else "<1 entries: 138****0000>")


def test_rows_from_csv_and_gzipped_json_lines_files(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template("您好#name#，#amount#元", "银行")
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "\ufeffmobile,name,amount\n13800000001,王芳,1\n13800000001,再次,2\n13100000002,李伟,3\n"
    )
    lines = tmp_path / "customers.jsonl.gz"
    with gzip.open(lines, "wt", encoding="utf-8") as stream:
        stream.write('{"mobile": "18900000003", "name": "张敏", "amount": 4.5}\n\n')
        stream.write('{"mobile": 18900000004, "name": "刘洋", "amount": 6}\n')

    for source in (customers, lines):
        result = run_dag("juhe_test_campaign", recipients=f"file://{source}", tpl_id=tpl_id)
        assert result.state == "success", result.states
        assert result.xcom("send")["sent"] == 2

    assert texts(sandbox_conn) == {
        "13800000001": "【银行】您好王芳，1元",
        "13100000002": "【银行】您好李伟，3元",
        "18900000003": "【银行】您好张敏，4.5元",
        "18900000004": "【银行】您好刘洋，6元",
    }


@pytest.fixture
def resumptions(monkeypatch, sandbox_conn):
    """How many messages the sandbox had received each time a send resumed from a deferral."""
    from airflow_provider_juhe.operators.juhe_sms import JuheSendSmsOperator

    seen: list[int] = []
    original = JuheSendSmsOperator.resume_send

    def recording_resume(self, context, event=None):
        seen.append(len(sandbox_conn.messages()))
        return original(self, context, event)

    monkeypatch.setattr(JuheSendSmsOperator, "resume_send", recording_resume)
    return seen


def test_a_window_opening_seconds_after_the_start_defers_then_sends(sandbox_conn, resumptions):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    opens = pendulum.now("UTC").add(seconds=8).replace(microsecond=0)
    window = [opens.in_timezone("Asia/Shanghai").format("HH:mm:ss"), local_time(3600)]

    result = run_dag(
        "juhe_test_campaign",
        recipients=[{"mobile": "13800000001", "name": "甲"}, {"mobile": "13800000002", "name": "乙"}],
        tpl_id=tpl_id,
        send_window=window,
    )

    assert result.state == "success", result.states
    assert result.tries["send"] == 1  # a deferral, not a retry
    assert resumptions == [0]  # deferred before any call, resumed once
    assert all(m["at"] >= opens.timestamp() for m in sandbox_conn.messages())
    assert sorted(sent_numbers(sandbox_conn)) == ["13800000001", "13800000002"]


def test_a_window_closing_mid_send_defers_and_resumes_without_sending_twice(
    sandbox_conn, tmp_path, resumptions
):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    sandbox_conn.inject("latency", seconds=0.25, times=1_000, path="send.php")
    rows = [{"mobile": f"1380000{i:04d}", "name": str(i)} for i in range(48)]  # ~12 s at one call at a time
    # Open except for two seconds that start 9 s from now: the send is cut there and resumes after.
    window = [local_time(11), local_time(9)]
    report = tmp_path / "report.csv"

    result = run_dag(
        "juhe_test_campaign_slow",
        recipients=rows,
        tpl_id=tpl_id,
        send_window=window,
        report_path=str(report),
    )

    assert result.state == "success", result.states
    assert result.tries["send"] == 1
    assert len(resumptions) == 1
    assert 0 < resumptions[0] < 48  # cut mid-send, not closed at the start
    times = sorted(m["at"] for m in sandbox_conn.messages())
    assert max(later - earlier for earlier, later in itertools.pairwise(times)) >= 1.5  # the closed window
    assert sorted(sent_numbers(sandbox_conn)) == sorted(row["mobile"] for row in rows)
    assert {row["status"] for row in read_report(report).values()} == {"sent"}
    assert result.xcom("send")["sent"] == 48


def test_the_report_covers_every_try_and_every_number_once(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    rows = [{"mobile": f"1380000{i:04d}", "name": str(i % 2)} for i in range(5)] + [
        {"mobile": "12", "name": "x"}
    ]
    sandbox_conn.inject("error", error_code=228806, times=1, path="send.php")  # the first call fails
    report = tmp_path / "report.csv"
    when = pendulum.datetime(2026, 4, 1, tz="UTC")

    first = run_dag(
        "juhe_test_campaign_slow",
        logical_date=when,
        recipients=rows,
        tpl_id=tpl_id,
        suppress=["13800000004"],
        report_path=str(report),
    )
    assert first.state == "failed"
    after_first = read_report(report)
    assert [r["status"] for r in after_first.values()].count("failed") == 1
    failed = next(r for r in after_first.values() if r["status"] == "failed")
    assert failed["error_code"] == "228806"

    second = rerun_task("juhe_test_campaign_slow", when)

    assert second.state == "success"
    rows_now = read_report(report)
    assert sorted(rows_now) == sorted(["12", *(f"1380000{i:04d}" for i in range(5))])
    assert rows_now["13800000004"]["status"] == "suppressed"
    assert rows_now["12"]["status"] == "invalid"
    sids = {number: m["sid"] for m in sandbox_conn.messages() for number in m["mobiles"]}
    assert {n: r["sid"] for n, r in rows_now.items() if r["status"] == "sent"} == sids
    assert len(sids) == 4  # the failed one sent by the retry; nothing twice
    assert len(sent_numbers(sandbox_conn)) == 4
    assert all(r["fee"] == "1" for r in rows_now.values() if r["status"] == "sent")


def test_a_large_failure_keeps_the_xcom_lists_capped(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    rows = [{"mobile": f"1380{i:07d}", "name": "客户"} for i in range(2_500)]
    sandbox_conn.inject("error", error_code=10001, times=1, path="send.php")  # a wrong key: auth error

    result = run_dag("juhe_test_campaign", recipients=rows, tpl_id=tpl_id)

    assert result.state == "failed"
    assert result.tries["send"] == 1
    summary = result.xcom("send")
    assert summary["failed_count"] + summary["sent"] == 2_500  # calls already in flight went out
    assert summary["failed_count"] > 2_400
    assert sum(len(f["mobiles"]) for f in summary["failed"]) == 1_000
    assert_every_number_once(summary)


def test_a_campaign_mapped_over_shards_under_a_pool(sandbox_conn, tmp_path):
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        "juhe_sms_test", slots=4, description="Juhe calls in flight", include_deferred=False
    )
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    shards = []
    for shard in range(3):
        path = tmp_path / f"customers-{shard}.csv"
        path.write_text("mobile,name\n" + "".join(f"13{shard}0000{i:04d},{i}\n" for i in range(5)))
        shards.append(str(path))

    result = run_dag("juhe_test_campaign_shards", tpl_id=tpl_id, shards=shards, report_folder=str(tmp_path))

    assert result.state == "success", result.states
    for shard in range(3):
        summary = result.xcom("send", map_index=shard)
        assert summary["sent"] == 5
        assert summary["report"].endswith(f"shard-{shard}.csv")
        assert len(read_report(tmp_path / f"shard-{shard}.csv")) == 5
    reached = sent_numbers(sandbox_conn)
    assert len(reached) == len(set(reached)) == 15


def test_a_dry_run_counts_the_parts_of_each_rendered_text(sandbox_conn):
    tpl_id = sandbox_conn.add_template("尊敬的#name#，您的账单已出。", "银行")
    long_name = "长" * 60  # 【银行】 + 11 + 60 characters: 75 > 70, two parts of 67

    result = run_dag(
        "juhe_test_campaign_dry_run",
        tpl_id=tpl_id,
        recipients=[{"mobile": "13800000001", "name": "王芳"}, {"mobile": "13800000002", "name": long_name}],
    )

    assert result.state == "success"
    summary = result.xcom("send")
    assert summary["estimated_fee"] == 3
    assert summary["planned_batches"] == 2
    assert sandbox_conn.messages() == []


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"recipients": "file:///nonexistent/customers.csv"}, "recipients: cannot read file:///nonexistent"),
        ({"recipients": "NO_MOBILE_CSV"}, "has no 'mobile' column"),
        ({"recipients": "BAD_JSONL"}, "line 2: not valid JSON"),
        ({"recipients": "CORRUPT_GZIP"}, "customers.csv.gz: corrupted gzip data"),
        ({"recipients": "NOT_UTF8"}, "customers.jsonl, line 2: not UTF-8 text"),
        ({"send_window": ["8:00", "21:00"]}, "send_window: expected HH:MM or HH:MM:SS"),
        ({"send_window": ["08:00"]}, "send_window: expected two times"),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
    ],
)
def test_bad_input_fails_before_any_send_without_retries(sandbox_conn, tmp_path, task_output, params, named):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    no_mobile = tmp_path / "customers.csv"
    no_mobile.write_text("phone,name\n13800000001,王芳\n")
    bad_lines = tmp_path / "customers.jsonl"
    bad_lines.write_text('{"mobile": "13800000001", "name": "a"}\n{"mobile": "13800000002", "name": \n')
    corrupt = tmp_path / "customers.csv.gz"
    packed = bytearray(gzip.compress(b"mobile,name\n" + b"13800000001,a\n" * 50))
    packed[12:20] = b"\xff" * 8  # a bad deflate block: zlib.error, which was retried, no file named
    corrupt.write_bytes(packed)
    not_utf8 = tmp_path / "not_utf8" / "customers.jsonl"
    not_utf8.parent.mkdir()
    # GBK (王) on line 2: what a spreadsheet saved in a Chinese locale gives
    not_utf8.write_bytes(
        b'{"mobile": "13800000001", "name": "a"}\n{"mobile": "13800000002", "name": "\xcd\xf5"}\n'
    )
    files = {
        "NO_MOBILE_CSV": str(no_mobile),
        "BAD_JSONL": str(bad_lines),
        "CORRUPT_GZIP": str(corrupt),
        "NOT_UTF8": str(not_utf8),
    }
    conf = {"recipients": [{"mobile": "13800000001", "name": "王芳"}], "tpl_id": tpl_id, **params}
    if isinstance(conf["recipients"], str):
        conf["recipients"] = files.get(conf["recipients"], conf["recipients"])

    result = run_dag("juhe_test_campaign", **conf)

    assert result.state == "failed"
    assert result.tries["send"] == 1  # retries=2 in the DAG: none used
    assert sandbox_conn.calls() == [] or all("send.php" not in c["path"] for c in sandbox_conn.calls())
    output = task_output()
    assert named in output
    assert "13800000001" not in output


def test_the_calls_listed_in_xcom_are_capped_and_counted(sandbox_conn, monkeypatch):
    from airflow_provider_juhe.sending import report

    assert report.LIST_CAP == 1_000
    # Capping does not depend on the cap's size: at 20, 22 calls cross it (1,100 calls took ~12 s).
    monkeypatch.setattr(report, "LIST_CAP", 20)
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    rows = [{"mobile": f"1380{i:07d}", "name": f"客户{i}"} for i in range(22)]  # a call per row

    result = run_dag("juhe_test_campaign", recipients=rows, tpl_id=tpl_id)

    assert result.state == "success"
    summary = result.xcom("send")
    assert summary["batches_count"] == 22
    assert len(summary["batches"]) == 20
    assert summary["sent"] == 22


def test_a_report_that_cannot_be_written_fails_the_try_and_the_retry_writes_it(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    rows = [{"mobile": f"1380000{i:04d}", "name": str(i)} for i in range(3)]
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the report's folder should be")
    when = pendulum.datetime(2026, 4, 2, tz="UTC")

    first = run_dag(
        "juhe_test_campaign_slow",
        logical_date=when,
        recipients=rows,
        tpl_id=tpl_id,
        report_path=str(blocker / "report.csv"),
    )
    assert first.state == "failed"
    assert first.xcom("send")["sent"] == 3  # pushed before the failure
    blocker.unlink()
    second = rerun_task("juhe_test_campaign_slow", when)

    assert second.state == "success"
    assert {row["status"] for row in read_report(blocker / "report.csv").values()} == {"sent"}
    assert len(sent_numbers(sandbox_conn)) == 3  # nothing sent again


def test_opt_outs_typed_with_chinese_separators_and_full_width_digits(sandbox_conn):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    rows = [{"mobile": f"1391234567{i}", "name": str(i)} for i in range(4)]
    rows.append({"mobile": "13800138000", "name": "全角"})

    result = run_dag(
        "juhe_test_campaign",
        recipients=rows,
        tpl_id=tpl_id,
        suppress="13912345670、13912345671，１３８００１３８０００",  # was taken as a path, unmasked
    )

    assert result.state == "success", result.states
    assert result.xcom("send")["suppressed"] == 3
    assert sorted(sent_numbers(sandbox_conn)) == ["13912345672", "13912345673"]
    (stored,) = rendered_fields(result.run_id, "send")
    assert stored["suppress"] == "<3 entries: 139****5670, 139****5671, 138****8000>"


def _customers_file(tmp_path) -> str:
    path = tmp_path / "customers.csv"
    path.write_text("mobile,name\n13800000001,王芳\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("dag_id", "params", "field_name"),
    [
        # Lists rendered to text without render_template_as_native_obj (the DAG renders as text)
        ("juhe_test_campaign_text", {"suppress": ["13912345670", "13912345671"]}, "suppress"),
        (
            "juhe_test_campaign_text",
            {"recipients": [{"mobile": "13912345670", "name": "王芳"}]},
            "recipients",
        ),
        # Only the middle number looked valid: it alone went out, the others were "invalid"
        ("juhe_test_send_text", {"mobiles": [13912345670, 13800138000, 13912345671]}, "mobiles"),
        ("juhe_test_campaign", {"suppress": "13912345670/13912345671"}, "suppress"),
    ],
)
def test_text_that_is_no_source_fails_before_any_request_with_numbers_masked(
    sandbox_conn, tmp_path, task_output, dag_id, params, field_name
):
    tpl_id = sandbox_conn.add_template("通知#name#", "银行")
    conf = {"tpl_id": tpl_id, **params}
    if "mobiles" not in conf and "recipients" not in conf:
        conf["recipients"] = _customers_file(tmp_path)

    result = run_dag(dag_id, **conf)

    assert result.state == "failed"
    assert result.tries["send"] == 1  # retries=2 in the DAG: none used
    assert sandbox_conn.calls() == []  # not even the template list
    output = task_output()
    assert f"{field_name}: neither numbers, rows nor a path" in output
    assert "139****5670" in output
    (stored,) = rendered_fields(result.run_id, "send")
    shown = json.dumps(stored, ensure_ascii=False)
    for secret in ("13912345670", "13800138000", "王芳"):
        assert secret not in output
        assert secret not in shown
    assert "139****5670" in stored[field_name]
