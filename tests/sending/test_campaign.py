"""The send engine on its own: no DAG, an in-memory state store, the sandbox over 127.0.0.1."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_juhe.exceptions import JuheInputError
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sending.campaign import Campaign, Finished, SendRequest, WaitUntil
from airflow_provider_juhe.sending.ledger import InMemoryStateStore

log = logging.getLogger(__name__)
NUMBERS = [f"1390000{n:04d}" for n in range(7)]


def run(request: SendRequest, store: InMemoryStateStore) -> Finished | WaitUntil:
    return Campaign(request, JuheSmsHook(retry_wait=0, retry_wait_max=0), store, log).run()


def test_a_send_finishes_and_a_second_run_sends_nothing_again(sandbox_conn, caplog):
    tpl_id = sandbox_conn.add_template("您好")
    store = InMemoryStateStore()
    request = SendRequest(mobiles=[*NUMBERS, NUMBERS[0]], tpl_id=tpl_id, batch_size=3, max_workers=2)

    with caplog.at_level(logging.INFO, logger=log.name):
        first = run(request, store)
    again = run(request, store)  # a retry of the same task instance: the ledger replays the plan

    assert isinstance(first, Finished)
    assert first.failure() is None
    assert first.result["sent"] == 7
    assert first.result["duplicate_count"] == 1
    assert again.result["sent"] == 7
    assert len(sandbox_conn.messages()) == 3  # nothing sent twice
    # each of the 3 calls announced, then settled: at least two writes, at most one per change
    (cost,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Ledger:")]
    assert 2 <= int(cost.split()[1]) <= 6, cost
    assert "to the task state store" in cost


def test_the_ledger_cost_line_names_where_the_ledger_lives(sandbox_conn, caplog):
    """Below 3.3 the ledger is in Variables: the log line said "the task state store" there too."""
    tpl_id = sandbox_conn.add_template("您好")

    class VariablesLike(InMemoryStateStore):
        where = "Airflow Variables (juhe_sms_ledger_*)"

    with caplog.at_level(logging.INFO, logger=log.name):
        run(SendRequest(mobiles=NUMBERS[:2], tpl_id=tpl_id), VariablesLike())

    (cost,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Ledger:")]
    assert "write(s) to Airflow Variables (juhe_sms_ledger_*)" in cost


def test_a_closed_window_answers_when_to_come_back(sandbox_conn):
    tpl_id = sandbox_conn.add_template("您好")
    shanghai = datetime.now(ZoneInfo("Asia/Shanghai"))
    opens, closes = shanghai + timedelta(hours=1), shanghai + timedelta(hours=2)
    window = (opens.strftime("%H:%M:%S"), closes.strftime("%H:%M:%S"))

    wait = run(SendRequest(mobiles=NUMBERS, tpl_id=tpl_id, send_window=window), InMemoryStateStore())

    assert isinstance(wait, WaitUntil)
    assert wait.numbers_left == 7
    assert abs((wait.moment - opens).total_seconds()) < 2
    assert sandbox_conn.messages() == []


def test_the_budget_names_both_figures(sandbox_conn):
    tpl_id = sandbox_conn.add_template("您好")

    with pytest.raises(JuheInputError, match=r"estimated fee .* 7 .*exceeds max_fee 6"):
        run(SendRequest(mobiles=NUMBERS, tpl_id=tpl_id, max_fee=6), InMemoryStateStore())
    assert sandbox_conn.calls()[-1]["path"].endswith("myTemplates.php")  # no send call


def test_only_unknowns_left_is_a_final_failure(sandbox_conn):
    tpl_id = sandbox_conn.add_template("您好")
    sandbox_conn.inject("drop", path="send.php")

    finished = run(SendRequest(mobiles=NUMBERS[:2], tpl_id=tpl_id), InMemoryStateStore())

    failure = finished.failure()
    assert failure.final
    assert "2 number(s) have an unknown outcome" in failure.message
    assert finished.failure(fail_on_unknown=False) is None
