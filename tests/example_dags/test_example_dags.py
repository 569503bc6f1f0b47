"""Every example DAG imports cleanly and runs green with dag.test() against the sandbox."""

from __future__ import annotations

import re

import pytest

from tests.dag_runs import dagbag_import_errors, rendered_fields, run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")
NUMBER = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def test_example_dags_import_without_errors():
    assert dagbag_import_errors() == {}


@pytest.mark.parametrize("without_logical_date", [False, True], ids=["logical-date", "no-logical-date"])
def test_template_flow(sandbox_conn, without_logical_date):
    sandbox_conn.state.approve_after = 0.5

    result = run_dag("example_juhe_template_flow", without_logical_date=without_logical_date)

    assert result.state == "success", result.states
    submitted = result.xcom("submit_template")
    summary = result.xcom("send_per_carrier")
    assert summary["requested"] == 5
    assert summary["sent"] == 5
    sent_by_template = {m["tpl_id"]: m["mobiles"] for m in sandbox_conn.messages()}
    assert sent_by_template == {
        submitted["carrier_tpl_ids"]["mobile"]: ["13800138000"],
        submitted["carrier_tpl_ids"]["unicom"]: ["13100001111"],
        submitted["carrier_tpl_ids"]["telecom"]: ["17000003333", "18900002222"],  # sorted by the plan
        submitted["carrier_tpl_ids"]["all"]: ["19200004444"],
    }
    assert [t["state_name"] for t in result.xcom("wait_for_approval")] == ["approved"] * 4
    (grouping,) = rendered_fields(result.run_id, "group_by_carrier")
    assert not NUMBER.findall(str(grouping))


ALERT_TEXT = "#dag#：#task#失败，请处理（本条告警代表#count#次失败）"
RECOVERY_TEXT = "#dag#已恢复，期间合并告警#more#条"


@pytest.fixture
def on_call(sandbox_conn, monkeypatch, alert_state):
    """The alert example's Variables, pointing at the sandbox's templates."""
    monkeypatch.setenv("AIRFLOW_VAR_JUHE_ON_CALL_MOBILES", "13800138000, 1380013800")  # one typo
    monkeypatch.setenv("AIRFLOW_VAR_JUHE_ALERT_TPL_ID", str(sandbox_conn.add_template(ALERT_TEXT, "运维")))
    monkeypatch.setenv(
        "AIRFLOW_VAR_JUHE_RECOVERY_TPL_ID", str(sandbox_conn.add_template(RECOVERY_TEXT, "运维"))
    )
    return sandbox_conn


def test_failure_alert_twenty_failures_page_once_then_one_recovery(on_call):
    failed = run_dag("example_juhe_failure_alert")
    recovered = run_dag("example_juhe_failure_alert", warehouse_down=False)
    still_fine = run_dag("example_juhe_failure_alert", warehouse_down=False)

    assert failed.state == "failed"
    assert list(failed.states.values()) == ["failed"] * 20
    assert (recovered.state, still_fine.state) == ("success", "success")
    texts = [m["text"] for m in on_call.messages()]
    assert len(texts) == 2, texts  # 20 task callbacks + 1 DAG callback → 1 alert; 2 good runs → 1 recovery
    assert re.fullmatch(
        r"【运维】example_juhe_failure_alert：load_partition_\d\d失败，请处理（本条告警代表1次失败）",
        texts[0],
    )
    assert texts[1] == "【运维】example_juhe_failure_alert已恢复，期间合并告警20条"
    assert all(m["mobiles"] == ["13800138000"] for m in on_call.messages())  # the typo did not stop it


@pytest.mark.parametrize("without_logical_date", [False, True], ids=["logical-date", "no-logical-date"])
def test_customer_notifications(sandbox_conn, monkeypatch, without_logical_date):
    tpl_id = sandbox_conn.add_template("您的账单将于#date#到期，请按时还款。", "银行")
    monkeypatch.setenv("AIRFLOW_VAR_JUHE_REMINDER_TPL_ID", str(tpl_id))

    result = run_dag("example_juhe_customer_notifications", without_logical_date=without_logical_date)

    assert result.state == "success", result.states
    assert {name for name in result.states if name.startswith("send_reminders[")} == {
        "send_reminders[0]",
        "send_reminders[1]",
        "send_reminders[2]",
    }
    assert result.xcom("report") == {"requested": 11, "sent": 9, "invalid": 2, "fee": 9}
    sent = [number for m in sandbox_conn.messages() for number in m["mobiles"]]
    assert len(sent) == len(set(sent)) == 9
    stored = rendered_fields(result.run_id, "send_reminders")  # mapped: rendered on the unmapped task
    assert len(stored) == 3
    assert not NUMBER.findall(str(stored))
    assert all(fields["mobiles"].startswith("<") for fields in stored)


REPAYMENT_TEXT = "尊敬的#name#，您尾号#card#的信用卡账单#amount#元将于#due_date#到期，请按时还款。"


@pytest.fixture
def repayment(sandbox_conn, monkeypatch, tmp_path):
    """The campaign examples' Variables: the sandbox's template and a report folder."""
    monkeypatch.setenv(
        "AIRFLOW_VAR_JUHE_REPAYMENT_TPL_ID", str(sandbox_conn.add_template(REPAYMENT_TEXT, "银行"))
    )
    monkeypatch.setenv("AIRFLOW_VAR_JUHE_REPORT_FOLDER", f"file://{tmp_path}")
    return sandbox_conn


def test_repayment_reminders(repayment, tmp_path):
    # A window open all day, so that the suite never waits for 09:00 in Shanghai.
    result = run_dag("example_juhe_repayment_reminders", window_start="00:00", window_end="23:59:59")

    assert result.state == "success", result.states
    summary = result.xcom("send_reminders")
    assert (summary["requested"], summary["sent"], summary["invalid_count"], summary["suppressed"]) == (
        8,
        5,
        2,
        1,
    )
    texts = {n: m["text"] for m in repayment.messages() for n in m["mobiles"]}
    assert (
        texts["13800138000"]
        == "【银行】尊敬的王芳，您尾号6217的信用卡账单1,280.00元将于12月5日到期，请按时还款。"
    )
    assert "19900006666" not in texts  # opted out
    report = [*tmp_path.rglob("reminders.csv")]
    assert len(report) == 1
    assert summary["report"].endswith(str(report[0].relative_to(tmp_path)))
    statuses = {line.split(",")[0]: line.split(",")[1] for line in report[0].read_text().splitlines()[1:]}
    assert statuses["18600005555"] == "invalid"
    assert statuses["19900006666"] == "suppressed"
    assert len(statuses) == 8


def test_sharded_campaign(repayment):
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        "juhe_sms", slots=16, description="Juhe SMS calls in flight", include_deferred=False
    )

    result = run_dag("example_juhe_sharded_campaign", without_logical_date=True)

    assert result.state == "success", result.states
    assert {name for name in result.states if name.startswith("send_shard[")} == {
        f"send_shard[{shard}]" for shard in range(3)
    }
    totals = result.xcom("totals")
    counts = [totals[key] for key in ("requested", "sent", "invalid_count", "suppressed")]
    assert counts == [8, 5, 2, 1]
    reached = [n for m in repayment.messages() for n in m["mobiles"]]
    assert len(reached) == len(set(reached)) == 5  # the duplicate rows landed in one shard
