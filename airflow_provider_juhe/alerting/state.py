"""
Where alert state lives: one operation, an atomic read-modify-write of a record with an expiry, over
two stores.

- :class:`~airflow_provider_juhe.alerting.variable_store.VariableStore` (the default): Airflow
  Variables under a timed lock tuned from the latency this process measures. No new component; it
  gives up within a bound when the metadata DB is slow or down.
- :class:`~airflow_provider_juhe.alerting.redis_store.RedisStore`: a Redis connection (the extra
  ``airflow-provider-juhe[redis]``); atomic by Redis itself (``WATCH``/``MULTI``/``EXEC``), records
  expire by TTL. Imported only when a Redis connection is configured.

Keys are digests (a group key's, a template id's); numbers inside records are keyed digests
(:func:`~airflow_provider_juhe.alerting.policy.number_id`). A store that cannot be used raises one of
:data:`TROUBLE`; the notifier then pages anyway and logs why grouping or caps were skipped.
"""

from __future__ import annotations

from airflow_provider_juhe import config
from airflow_provider_juhe.alerting.store import (
    LOCK_SUFFIX,
    REDIS_EXTRA,
    TROUBLE,
    AlertStore,
    Change,
    LockBusy,
    Record,
    state_key,
    variable_key,
)
from airflow_provider_juhe.variables import StateUnavailable

__all__ = [
    "LOCK_SUFFIX",
    "REDIS_EXTRA",
    "TROUBLE",
    "AlertStore",
    "Change",
    "LockBusy",
    "Record",
    "StateUnavailable",
    "open_store",
    "state_key",
    "variable_key",
]


def open_store(conn_id: str | None = None) -> AlertStore:
    """
    The store for a Redis connection id; ``None`` reads ``[juhe] alert_state_conn_id``, and an empty
    id means Airflow Variables.

    :raises StateUnavailable: a Redis connection is configured but the Redis packages are missing
        (the message names the extra to install).
    """
    if conn_id is None:
        conn_id = config.get_str("alert_state_conn_id")
    if not conn_id:
        from airflow_provider_juhe.alerting.variable_store import ALERT_CALL_SECONDS, VariableStore

        return VariableStore(call_seconds=ALERT_CALL_SECONDS)
    try:
        from airflow_provider_juhe.alerting.redis_store import RedisStore
    except ImportError as error:
        raise StateUnavailable(
            f"the alert state's Redis connection {conn_id!r} needs the Redis packages: "
            f"pip install '{REDIS_EXTRA}' ({error})"
        ) from None
    return RedisStore(conn_id)
