"""
Forget an alert episode (and, optionally, a template's per-number caps) in whichever store holds it:
for tests and for trying alerts out, so that the next notification pages as the first of an episode.

From Python::

    from airflow_provider_juhe.alerting.reset import reset_alert

    reset_alert("example_juhe_failure_alert", tpl_id=767)

From a shell where Airflow is configured (Variables are reached through the metadata DB)::

    python -m airflow_provider_juhe.alerting.reset example_juhe_failure_alert --tpl-id 767
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airflow_provider_juhe.alerting.state import TROUBLE, open_store, state_key


def reset_alert(
    group_key: str, *, tpl_id: int | str | None = None, state_conn_id: str | None = None
) -> list[str]:
    """
    Delete the state of the episode ``group_key`` (its record, its lock and its SMS confirmation),
    and with ``tpl_id`` that template's per-number caps.

    :param group_key: the notifier's ``group_key`` as rendered, e.g. the DAG id.
    :param tpl_id: also forget which numbers this template paged (``max_per_number``).
    :param state_conn_id: the notifier's ``state_conn_id``; None: ``[juhe] alert_state_conn_id``,
        and when that is empty, Airflow Variables.
    :return: the keys deleted.
    :raises StateUnavailable: the store could not be reached.
    """
    store = open_store(state_conn_id)
    episode = state_key("alert", str(group_key))
    keys = [episode, f"{episode}_sent"]
    if tpl_id is not None:
        keys.append(state_key("caps", str(tpl_id)))
    for key in keys:
        store.delete(key)
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_juhe.alerting.reset",
        description="Forget an alert episode of JuheSmsNotifier: its next notification pages.",
    )
    parser.add_argument("group_key", help="the notifier's group_key as rendered (e.g. the DAG id)")
    parser.add_argument("--tpl-id", help="also forget the per-number caps of this template")
    parser.add_argument("--state-conn-id", help="the Redis connection of the alert state (default: config)")
    args = parser.parse_args(argv)
    try:
        keys = reset_alert(args.group_key, tpl_id=args.tpl_id, state_conn_id=args.state_conn_id)
    except TROUBLE as error:
        print(
            f"Could not reach the alert state: {error}\nRun this where Airflow's configuration "
            "(AIRFLOW_HOME, or the AIRFLOW__ environment variables) points at the deployment whose alert "
            "state to reset: by default it lives in that deployment's Airflow Variables.",
            file=sys.stderr,
        )
        return 1
    print(f"Alert state reset: {len(keys)} key(s) deleted for group_key {args.group_key!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
