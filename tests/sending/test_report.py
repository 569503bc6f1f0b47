"""The per-recipient report: one row per requested number, from the ledger of every try."""

from __future__ import annotations

import csv
import logging

from airflow_provider_juhe.sending.dispatch import Outcome
from airflow_provider_juhe.sending.ledger import ANNOUNCED, SENT, InMemoryStateStore, SendLedger
from airflow_provider_juhe.sending.plan import SendPlan
from airflow_provider_juhe.sending.report import REPORT_COLUMNS, SendSummary, report_rows, write_report

NUMBERS = [f"1380000000{i}" for i in range(7)]


def planned() -> tuple[SendPlan, SendLedger]:
    plan = SendPlan.make(
        to_send=dict.fromkeys(NUMBERS, b""),
        not_sent=["12", "13900000000"],
        tpl_id=5,
        carrier_tpl_ids=None,
        source="local",
        variables=None,
        batch_size=3,
        previous=None,
        previous_overrides=dict,
        group=None,
    )
    ledger = SendLedger(InMemoryStateStore(), logging.getLogger(__name__))
    ledger.load(len(plan.batches), replayed=False)
    return plan, ledger


def test_every_requested_number_once_with_its_status_sid_and_share_of_the_fee(tmp_path):
    plan, ledger = planned()  # batches of 3, 3 and 1 numbers
    ledger.write([(0, SENT), (1, ANNOUNCED)], {0: ("sid-0", 4)})  # 3 numbers, 4 SMS: a long text for one
    outcomes = {2: Outcome("failed", error_code=228806, reason="黑名单")}

    rows = list(report_rows(plan, ledger, outcomes, {"12": "not a valid mobile number"}, ["13900000000"]))

    assert [row[:2] for row in rows] == [
        *((number, "sent") for number in NUMBERS[:3]),
        *((number, "unknown") for number in NUMBERS[3:6]),
        (NUMBERS[6], "failed"),
        ("12", "invalid"),
        ("13900000000", "suppressed"),
    ]
    assert [row[4] for row in rows[:3]] == [2, 1, 1]  # the call's fee, spread over its numbers
    assert rows[0][3] == "sid-0"
    assert rows[6][5:] == (228806, "黑名单")
    path = write_report(f"file://{tmp_path}/a/b/report.csv", rows)
    with open(tmp_path / "a" / "b" / "report.csv", encoding="utf-8", newline="") as stream:
        written = list(csv.reader(stream))
    assert path.endswith("/a/b/report.csv")
    assert written[0] == list(REPORT_COLUMNS)
    assert len(written) == 1 + 9


def test_the_summary_lists_are_capped_and_the_counts_exact():
    plan, _ = planned()
    summary = SendSummary(requested=1_507, invalid=[str(i) for i in range(1_500)])
    for batch in plan.batches:
        summary.record(batch, Outcome("unknown", reason="dropped"))

    result = summary.as_dict()

    assert result["invalid_count"] == 1_500
    assert len(result["invalid"]) == 1_000
    assert result["unknown_count"] == 7
    assert result["requested"] == result["invalid_count"] + result["unknown_count"]


def test_no_cell_of_the_report_runs_as_a_spreadsheet_formula(tmp_path):
    plan, ledger = planned()
    ledger.write([(0, SENT), (1, ANNOUNCED)], {0: ("=1+1", 3)})  # a sid from the server, as it came
    outcomes = {2: Outcome("failed", error_code=-1, reason="@SUM(A1)")}
    invalid = {"=cmd|'/c calc'!A0": "not a valid mobile number", "+1": "-", "\tx": "\rreason", "@x": "x"}

    path = write_report(f"file://{tmp_path}/report.csv", report_rows(plan, ledger, outcomes, invalid, []))

    with open(tmp_path / "report.csv", encoding="utf-8", newline="") as stream:
        written = list(csv.reader(stream))[1:]
    assert path.endswith("report.csv")
    cells = [cell for row in written for cell in row]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert [row[0] for row in written] == [*NUMBERS, "'=cmd|'/c calc'!A0", "'+1", "'\tx", "'@x"]
    assert {row[3] for row in written[:3]} == {"'=1+1"}
    assert written[6][5:] == ["'-1", "'@SUM(A1)"]
    assert [row[6] for row in written[-4:]] == ["not a valid mobile number", "'-", "'\rreason", "x"]
