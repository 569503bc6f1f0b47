"""A sharded campaign in real DAG runs: the splitter, a send mapped over its shards, the totals."""

from __future__ import annotations

import csv

import pytest

from tests.dag_runs import rendered_fields, run_dag
from tests.operators.test_juhe_sms_operators import sent_numbers

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def pool():
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        "juhe_sms_test", slots=4, description="Juhe calls in flight", include_deferred=False
    )


def _rows() -> list[dict]:
    """Nine customers over eleven rows: two customers twice, in other spellings of their number."""
    rows = [{"mobile": f"1380000{i:04d}", "name": f"客户{i}"} for i in range(9)]
    rows.insert(3, {"mobile": "+86 138 0000 0007", "name": "again"})
    rows.append({"mobile": "8613800000002", "name": "again"})
    return rows


@pytest.mark.usefixtures("pool")
def test_a_sharded_campaign_sends_each_customer_once_and_totals_the_shards(sandbox_conn, tmp_path):
    tpl_id = sandbox_conn.add_template("您好#name#", "银行")
    result = run_dag(
        "juhe_test_sharded_campaign",
        rows=_rows(),
        tpl_id=tpl_id,
        shards=3,
        folder=f"file://{tmp_path}",
        suppress=["13800000005"],
    )

    assert result.state == "success", result.states
    assert {name for name in result.states if name.startswith("send[")} == {"send[0]", "send[1]", "send[2]"}
    reached = sent_numbers(sandbox_conn)
    assert sorted(reached) == sorted(f"1380000{i:04d}" for i in range(9) if i != 5)  # once each
    texts = {m["mobiles"][0]: m["text"] for m in sandbox_conn.messages() if len(m["mobiles"]) == 1}
    assert texts["13800000007"] == "【银行】您好again"  # the first row of a number wins
    assert texts["13800000002"] == "【银行】您好客户2"
    totals = result.xcom("totals")
    assert (totals["requested"], totals["sent"], totals["suppressed"]) == (9, 8, 1)
    assert totals["duplicate_count"] == 2
    assert totals["shards"] == 3
    with open(tmp_path / "campaign-report.csv", encoding="utf-8", newline="") as stream:
        report = list(csv.DictReader(stream))
    assert sorted(row["status"] for row in report) == ["duplicate"] * 2 + ["sent"] * 8 + ["suppressed"]
    fields = rendered_fields(result.run_id, "split")[0]
    assert "13800000001" not in str(fields)  # the rows are shown masked


@pytest.mark.usefixtures("pool")
def test_a_campaign_wide_cap_fails_before_any_shard_is_written_or_sent(sandbox_conn, tmp_path):
    """Issue 25: 2 shards with max_recipients=4 each sent 6 SMS to 5 numbers."""
    tpl_id = sandbox_conn.add_template("您好#name#", "银行")
    rows = [{"mobile": f"1390000{i:04d}", "name": "x"} for i in range(5)]
    result = run_dag(
        "juhe_test_sharded_campaign",
        rows=rows,
        tpl_id=tpl_id,
        shards=2,
        folder=f"file://{tmp_path}",
        max_recipients=4,
    )

    assert result.states["split"] == "failed"
    assert result.tries["split"] == 1 or result.states["split"] == "failed"
    assert not any(state == "success" for name, state in result.states.items() if name.startswith("send"))
    assert sandbox_conn.messages() == []
    assert not (tmp_path / "shards").exists()
