"""
The ledger's identity in real DAG runs: a DagRun deleted and created again with the same run id is a
new task instance, with a new ledger. On Airflow 3.0-3.2 (the CI matrix) this is the Variables
fallback store; on 3.3 the task state store, deleted with its run.
"""

from __future__ import annotations

import pendulum
import pytest

from tests.dag_runs import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db", "alert_state")

NUMBERS = ["13800000101", "13800000102", "13800000103"]


def _delete_run(dag_id: str, run_id: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id):
            session.delete(run)


def test_a_run_deleted_and_created_again_with_the_same_run_id_sends_again(sandbox_conn):
    """Issue 25 (b): below 3.3 the new run sent 0 and reported the old run's sids as sent."""
    tpl_id = sandbox_conn.add_template("通知", "银行")
    when = pendulum.datetime(2026, 4, 1, tz="UTC")
    first = run_dag("juhe_test_send", logical_date=when, mobiles=NUMBERS, tpl_id=tpl_id)
    assert first.state == "success"
    old_sids = {batch["sid"] for batch in first.xcom("send")["batches"]}
    _delete_run("juhe_test_send", first.run_id)

    again = run_dag("juhe_test_send", logical_date=when, mobiles=NUMBERS, tpl_id=tpl_id)

    assert again.run_id == first.run_id
    assert again.state == "success", again.states
    summary = again.xcom("send")
    assert summary["sent"] == 3
    assert not old_sids & {batch["sid"] for batch in summary["batches"]}
    reached = [number for message in sandbox_conn.messages() for number in message["mobiles"]]
    assert sorted(reached) == sorted(NUMBERS * 2)  # once per DagRun row


def test_a_ledger_the_variables_cannot_hold_fails_the_send_retryably_naming_the_store(
    sandbox_conn, monkeypatch, task_output
):
    """Issue 24 (4): a raw LockBusy escaped after 125 s, before any call, and failed every retry alike."""
    import airflow

    if int(airflow.__version__.split(".")[1]) >= 3:
        pytest.skip("Airflow 3.3+ keeps the ledger in the task state store")
    from airflow_provider_juhe import variables

    def unavailable(*args):
        raise variables.StateUnavailable("reading juhe_sms_ledger_…: OperationalError: database is locked")

    monkeypatch.setattr(variables, "read", unavailable)
    tpl_id = sandbox_conn.add_template("通知", "银行")

    result = run_dag("juhe_test_send", mobiles=NUMBERS, tpl_id=tpl_id)

    assert result.state == "failed"
    assert result.tries["send"] == 3  # retried: the trouble may pass
    output = task_output()
    assert "LedgerUnavailable" in output
    assert "send ledger in Airflow Variables" in output
    assert "database is locked" in output
    assert "LockBusy" not in output
    assert sandbox_conn.messages() == []
