"""The campaign splitter and the campaign totals (sending/split.py), without Airflow's scheduler."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path

import pytest

from airflow_provider_juhe.exceptions import JuheError, JuheGuardError, JuheInputError
from airflow_provider_juhe.sending.recipients import audience_from_rows
from airflow_provider_juhe.sending.split import (
    SplitRequest,
    campaign_totals,
    shard_of,
    split_audience,
)

log = logging.getLogger(__name__)
TPL = 7
TEMPLATE = {"tpl_id": TPL, "signature": "银行", "content": "尊敬的#name#，您本期应还#amount#元", "state": 3}


class Templates:
    """A hook that answers list_templates only (the splitter makes no other call)."""

    def __init__(self, *templates, error: Exception | None = None) -> None:
        self.templates = list(templates or [TEMPLATE])
        self.error = error
        self.calls = 0

    def list_templates(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.templates


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"mobile": f"138{start + i:08d}", "name": f"客户{i}", "amount": f"{i}.00"} for i in range(n)]


def _split(tmp_path: Path, hook=None, **kwargs):
    kwargs.setdefault("shards", 2)
    kwargs.setdefault("output_uri", f"file://{tmp_path}/out")
    kwargs.setdefault("tpl_id", TPL)
    return split_audience(SplitRequest(**kwargs), hook or Templates(), log)


def _read_shard(uri: str) -> list[dict]:
    with gzip.open(uri.removeprefix("file://"), "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def test_a_customer_in_two_input_rows_is_in_one_shard_once(tmp_path):
    """Issue 25: a customer present in both shards of a hand-written split got 2 SMS."""
    rows = _rows(6)
    rows.append({"mobile": "+86 138 0000 0002", "name": "again", "amount": "9.00"})  # a repeated customer
    rows.append({"mobile": "0086１３８００００００００", "name": "again", "amount": "9.00"})  # full-width
    result = _split(tmp_path, recipients=rows)
    found = [row for uri in result.shards for row in _read_shard(uri)]
    numbers = [row["mobile"] for row in found]
    assert sorted(numbers) == sorted(row["mobile"] for row in rows[:6])
    assert next(row for row in found if row["mobile"] == "13800000002")["#name#"] == "客户2"  # first row wins
    assert result.summary["duplicate_count"] == 2
    assert result.summary["requested"] == 6


def test_every_row_of_a_number_lands_in_its_digest_shard(tmp_path):
    rows = _rows(40)
    result = _split(tmp_path, recipients=rows, shards=4)
    for index, uri in enumerate(result.shards):
        assert all(shard_of(row["mobile"], 4) == index for row in _read_shard(uri))
        assert "138" not in uri.rsplit("/", 1)[-1]
    assert sum(result.summary["shard_sizes"]) == 40
    assert min(result.summary["shard_sizes"]) > 0


def test_max_recipients_applies_to_the_campaign_before_any_shard_is_written(tmp_path):
    """Issue 25: 2 shards with max_recipients=4 sent 6 SMS to 5 numbers."""
    with pytest.raises(JuheInputError, match=r"max_recipients: the campaign's 5 number\(s\)") as raised:
        _split(tmp_path, recipients=_rows(5), max_recipients=4)
    assert raised.value.final
    assert not (tmp_path / "out").exists()


def test_max_fee_applies_to_the_campaign_counting_sms_parts(tmp_path):
    long = {**TEMPLATE, "content": "#name#" + "长" * 80}  # two SMS parts each
    rows = [{"mobile": f"139{i:08d}", "name": "客户"} for i in range(3)]
    with pytest.raises(JuheInputError, match="estimated fee, 6"):
        _split(tmp_path, Templates(long), recipients=rows, max_fee=5)
    assert not (tmp_path / "out").exists()
    result = _split(tmp_path, Templates(long), recipients=rows, max_fee=6)
    assert result.summary["estimated_fee"] == 6


def test_max_fee_with_the_template_text_unreadable_refuses_retryably(tmp_path):
    unreadable = Templates(error=JuheError("HTTP 502 from myTemplates"))
    with pytest.raises(JuheGuardError, match="max_fee") as raised:
        _split(tmp_path, unreadable, recipients=_rows(3), max_fee=100)
    assert not raised.value.final
    assert not (tmp_path / "out").exists()
    result = _split(tmp_path, unreadable, recipients=_rows(3))  # no fee guard: split, fee unknown
    assert result.summary["estimated_fee"] is None


def test_opt_outs_invalid_rows_and_missing_variables_are_in_no_shard_but_in_the_report(tmp_path):
    rows = _rows(4)
    rows.append({"mobile": "12345", "name": "x", "amount": "1"})
    rows.append({"mobile": "13900000009", "name": "no amount"})
    result = _split(tmp_path, recipients=rows, suppress=["13800000001"])
    numbers = sorted(row["mobile"] for uri in result.shards for row in _read_shard(uri))
    assert numbers == ["13800000000", "13800000002", "13800000003"]
    summary = result.summary
    assert (summary["requested"], summary["suppressed"], summary["invalid_count"]) == (6, 1, 2)
    with open(summary["report"].removeprefix("file://"), encoding="utf-8", newline="") as stream:
        statuses = {row["mobile"]: row["status"] for row in csv.DictReader(stream)}
    assert statuses == {"12345": "invalid", "13900000009": "invalid", "13800000001": "suppressed"}


def test_the_send_reads_a_shard_back_with_every_variable_intact(tmp_path):
    tricky = [
        {"mobile": "13800000001", "name": "A&B=C #1", "amount": "007"},
        {"mobile": "13800000002", "name": "张三 李四", "amount": "1,000.50"},
        {"mobile": "13800000003", "name": '引号"\\', "amount": "%41"},
    ]
    original = audience_from_rows(
        tricky, mobile_field="mobile", tpl_value=None, required=None, suppress=set()
    )
    result = _split(tmp_path, recipients=tricky, shards=1, tpl_value={"extra": "全体"})
    again = audience_from_rows(
        result.shards[0], mobile_field="mobile", tpl_value=None, required=None, suppress=set()
    )
    with_extra = audience_from_rows(
        tricky, mobile_field="mobile", tpl_value={"extra": "全体"}, required=None, suppress=set()
    )
    assert again.to_send == with_extra.to_send
    assert set(again.to_send) == set(original.to_send)


def test_a_retry_writes_the_same_bytes_and_leaves_shards_being_sent_untouched(tmp_path):
    rows = _rows(30)
    first = _split(tmp_path, recipients=rows, shards=3)
    stamps = [Path(uri.removeprefix("file://")).stat().st_mtime_ns for uri in first.shards]
    contents = [Path(uri.removeprefix("file://")).read_bytes() for uri in first.shards]
    again = _split(tmp_path, recipients=list(reversed(rows))[::-1], shards=3)
    assert again.shards == first.shards
    assert [Path(uri.removeprefix("file://")).read_bytes() for uri in again.shards] == contents
    assert [Path(uri.removeprefix("file://")).stat().st_mtime_ns for uri in again.shards] == stamps


def test_columns_and_encoding_reach_the_reader(tmp_path):
    source = tmp_path / "客户.csv"
    source.write_bytes("手机号,姓名,金额\r\n13800000001,王五,12.00\r\n".encode("gbk"))
    result = _split(
        tmp_path,
        recipients=str(source),
        columns={"手机号": "mobile", "姓名": "name", "金额": "amount"},
        encoding="gbk",
        shards=1,
    )
    assert _read_shard(result.shards[0]) == [{"mobile": "13800000001", "#amount#": "12.00", "#name#": "王五"}]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"shards": 0}, "shards"),
        ({"shards": "many"}, "shards"),
        ({"output_uri": ""}, "output_uri"),
        ({"max_fee": 10, "tpl_id": None}, "max_fee"),
        ({"max_recipients": -1}, "max_recipients"),
    ],
)
def test_bad_parameters_fail_naming_the_field_before_anything_is_read(tmp_path, kwargs, field):
    with pytest.raises(JuheInputError, match=field):
        _split(tmp_path, **{"recipients": _rows(2), **kwargs})


def test_an_audience_of_only_invalid_rows_fails_and_one_only_suppressed_is_a_no_op(tmp_path):
    with pytest.raises(JuheInputError, match="recipients"):
        _split(tmp_path, recipients=[{"mobile": "123", "name": "x", "amount": "1"}])
    bad_and_suppressed = [*_rows(1), {"mobile": "13900000001", "name": "no amount"}]
    with pytest.raises(JuheInputError, match="missing #amount#"):  # never a green split of nothing
        _split(tmp_path, recipients=bad_and_suppressed, suppress=["13800000000"])
    result = _split(tmp_path, recipients=_rows(2), suppress=["13800000000", "13800000001"])
    assert [_read_shard(uri) for uri in result.shards] == [[], []]
    assert result.summary["suppressed"] == 2


# -- totals -----------------------------------------------------------------------------------------


def _summary(sent: int, failed: int = 0, report: str | None = None) -> dict:
    return {
        "requested": sent + failed,
        "sent": sent,
        "fee": sent,
        "suppressed": 0,
        "invalid_count": 0,
        "failed_count": failed,
        "unknown_count": 0,
        "duplicate_count": 0,
        "batches_count": 1,
        "estimated_fee": sent + failed,
        "invalid_reasons": {},
        "report": report,
    }


def _report(path: Path, *rows: str) -> str:
    path.write_text("mobile,status,tpl_id,sid,fee,error_code,reason\r\n" + "".join(f"{r}\r\n" for r in rows))
    return f"file://{path}"


def test_totals_add_every_count_and_merge_the_reports(tmp_path):
    split = {
        "requested": 6,
        "to_send": 4,
        "suppressed": 1,
        "invalid_count": 1,
        "duplicate_count": 3,
        "invalid_reasons": {"x": 1},
    }
    split["report"] = _report(
        tmp_path / "split.csv", "123,invalid,,,,,x", "13800000009,suppressed,,,,,opt-out"
    )
    shards = [
        _summary(
            2, report=_report(tmp_path / "a.csv", "13800000001,sent,7,s1,1,,", "13800000002,sent,7,s1,1,,")
        ),
        _summary(
            1,
            failed=1,
            report=_report(tmp_path / "b.csv", "13800000003,sent,7,s2,1,,", "'=1,failed,7,,,228806,x"),
        ),
    ]
    totals = campaign_totals(shards, split, report_path=f"file://{tmp_path}/merged/all.csv")
    assert (totals["requested"], totals["sent"], totals["failed_count"]) == (6, 3, 1)
    assert (totals["suppressed"], totals["invalid_count"], totals["duplicate_count"]) == (1, 1, 3)
    assert totals["estimated_fee"] == 4
    assert totals["shards_failed"] == 1
    merged = (tmp_path / "merged" / "all.csv").read_text()
    assert merged.count("mobile,status") == 1
    assert len(merged.strip().splitlines()) == 7
    assert "'=1,failed" in merged  # escapes kept, not doubled


def test_totals_fail_naming_a_shard_without_summary():
    with pytest.raises(JuheError, match="shard"):
        campaign_totals([_summary(1), None])


def test_totals_check_the_invariant_over_counts():
    broken = {**_summary(2), "requested": 5}
    with pytest.raises(JuheError, match="do not add up"):
        campaign_totals([broken])
