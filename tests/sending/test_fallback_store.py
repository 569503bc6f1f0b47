"""The send ledger's store where Airflow has no task_state_store (3.0-3.2): sealed Variables."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest

from airflow_provider_juhe.exceptions import JuheConfigError
from airflow_provider_juhe.sending import fallback_store
from airflow_provider_juhe.sending.fallback_store import VariableLedgerStore, ledger_store
from airflow_provider_juhe.sending.ledger import SENT, SendLedger
from airflow_provider_juhe.sending.plan import SendPlan

NUMBER = "13800138000"


def _store(identity: str = "dag\0run\0send\0-1", appkey: str = "key-1", **kwargs) -> VariableLedgerStore:
    return VariableLedgerStore(identity, lambda: appkey, **kwargs)


def _raw_variables() -> dict[str, str]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Variable).filter(Variable.key.like("juhe_sms_ledger_%")).all()
        return {row.key: row.val for row in rows}


@pytest.mark.usefixtures("alert_state")
def test_a_later_try_reads_what_an_earlier_one_wrote():
    _store().set("juhe_batches_0", {"status": "s.a", "sent": "0,sid-1,1"})
    later = _store()  # a new process: nothing shared but the Variables
    assert later.get("juhe_batches_0") == {"status": "s.a", "sent": "0,sid-1,1"}
    assert later.get("juhe_batches_1", "none") == "none"
    assert _store(identity="dag\0run\0send\x000").get("juhe_batches_0") is None  # another map index


@pytest.mark.usefixtures("alert_state")
def test_numbers_are_not_readable_where_variables_are_listed():
    _store().set("juhe_plan_carriers_0", {"unicom": f"{NUMBER},13900139000"})
    raw = _raw_variables()
    assert raw, "the store wrote no Variable"
    assert not any("138" in value or "139" in value for value in raw.values())
    assert not any("dag" in key or "send" in key for key in raw)  # keys hold only a digest


@pytest.mark.usefixtures("alert_state")
def test_another_app_key_fails_without_guessing():
    _store().set("juhe_plan", {"batches": 3})
    with pytest.raises(JuheConfigError, match="App key"):
        _store(appkey="rotated").get("juhe_plan")


@pytest.mark.usefixtures("alert_state")
def test_the_send_ledger_replays_over_variables():
    plan = SendPlan({767: [NUMBER]}, {NUMBER: b""}, {"recipients": "d"}, 1, None, {NUMBER: "unicom"}, False)
    first = SendLedger(_store(), logging.getLogger(__name__))
    first.save_plan(plan)
    first.load(1, replayed=False)
    first.write([(0, SENT)], {0: ("sid-9", 1)})
    again = SendLedger(_store(), logging.getLogger(__name__))
    record = again.read_plan()
    assert record["inputs"] == {"recipients": "d"}
    assert again.read_overrides(record) == {NUMBER: "unicom"}
    again.load(1, replayed=True)
    assert again.state(0) == SENT
    assert again.sent(0) == ("sid-9", 1)


@pytest.mark.usefixtures("alert_state")
def test_ledgers_older_than_the_retention_are_deleted(monkeypatch):
    today = fallback_store._today()
    monkeypatch.setattr(fallback_store, "_today", lambda: today - timedelta(days=40))
    _store(identity="old").set("juhe_plan", {"n": 1})
    monkeypatch.setattr(fallback_store, "_today", lambda: today)
    _store(identity="new").set("juhe_plan", {"n": 2})  # opening a ledger sweeps the expired days
    assert _store(identity="old").get("juhe_plan") is None
    assert _store(identity="new").get("juhe_plan") == {"n": 2}
    assert not any("day_" + f"{today - timedelta(days=40):%Y%m%d}" in key for key in _raw_variables())


def test_the_task_state_store_wins_where_airflow_has_one():
    store = {"juhe_plan": 1}
    assert ledger_store({"task_state_store": store, "ti": object()}, hook=None) is store
    assert ledger_store({}, hook=None) is None  # outside a task run: SendLedger keeps it in memory


@pytest.mark.usefixtures("alert_state")
def test_what_a_ledger_write_costs():
    """Printed for the README: one write is one Variable write (plus the directory the first time)."""
    store = _store()
    store.set("juhe_batches_0", {"status": "."})
    began = time.perf_counter()
    for _ in range(20):
        store.set("juhe_batches_0", {"status": "s" * 500, "sent": ";".join(f"{i},sid,1" for i in range(500))})
    print(f"ledger write over Variables: {(time.perf_counter() - began) / 20 * 1000:.1f} ms")
