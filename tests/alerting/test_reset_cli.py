from __future__ import annotations

from airflow_provider_juhe.alerting import reset
from airflow_provider_juhe.variables import StateUnavailable


class _Unreachable:
    name = "Airflow Variables"

    def delete(self, key: str) -> None:
        raise StateUnavailable(f"deleting {key}: OperationalError: no such table: variable")


def test_an_unreachable_state_exits_1_saying_where_the_state_lives(monkeypatch, capsys):
    monkeypatch.setattr(reset, "open_store", lambda conn_id: _Unreachable())

    assert reset.main(["nightly_load", "--tpl-id", "1000"]) == 1

    err = capsys.readouterr().err
    assert "Could not reach the alert state: deleting juhe_sms_alert_" in err
    assert "AIRFLOW_HOME" in err
    assert "Traceback" not in err


def test_a_reset_deletes_the_episode_and_the_templates_caps(monkeypatch, capsys):
    deleted: list[str] = []

    class _Store:
        name = "Airflow Variables"

        def delete(self, key: str) -> None:
            deleted.append(key)

    monkeypatch.setattr(reset, "open_store", lambda conn_id: _Store())

    assert reset.main(["nightly_load", "--tpl-id", "1000"]) == 0

    assert len(deleted) == 3
    assert "3 key(s) deleted for group_key 'nightly_load'" in capsys.readouterr().out
