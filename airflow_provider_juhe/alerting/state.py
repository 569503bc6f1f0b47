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

import hashlib
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from airflow_provider_juhe import config
from airflow_provider_juhe.variables import VARIABLE_PREFIX, StateUnavailable

T = TypeVar("T")
Record = dict[str, Any]
#: ``change(record) -> (new record or None to keep it, result)``; it may be called more than once.
Change = Callable[[Record | None], tuple[Record | None, T]]

#: The extra that installs the Redis store's packages.
REDIS_EXTRA = "airflow-provider-juhe[redis]"
#: A Variables record's lock is the Variable of the record's key and this suffix.
LOCK_SUFFIX = "_lock"
#: How long the ledger's day index waits for its lock (the only caller of :func:`update`).
WAIT_SECONDS = 120.0

__all__ = [
    "LOCK_SUFFIX",
    "REDIS_EXTRA",
    "TROUBLE",
    "AlertStore",
    "LockBusy",
    "StateUnavailable",
    "open_store",
    "state_key",
    "update",
    "variable_key",
]


class LockBusy(Exception):
    """
    The state could not be changed within its time bound (a busy, slow or stuck lock).

    :param held: another process held the lock when this one gave up (it may be writing the record).
    """

    def __init__(self, message: str, *, held: bool = False) -> None:
        super().__init__(message)
        self.held = held


#: What a store raises when it cannot be used: the caller pages anyway.
TROUBLE: tuple[type[Exception], ...] = (LockBusy, StateUnavailable)


class AlertStore(Protocol):
    """Records under keys, each changed atomically and kept until its expiry."""

    #: Names the store in log lines and errors, e.g. ``"Redis connection 'alerts'"``.
    name: str

    def update(self, key: str, change: Change[T], *, ttl: float, deadline: float, description: str) -> T:
        """
        Read the record under ``key`` (None when missing or expired), apply ``change``, and store its
        new record (kept for ``ttl`` seconds) so that no racing update is lost; return its result.

        :param deadline: ``time.monotonic()`` by which to give up.
        :raises LockBusy: the change could not be made before ``deadline``.
        :raises StateUnavailable: the store cannot be reached or read.
        """
        ...

    def read(self, key: str) -> Record | None:
        """The record under ``key`` without coordination. :raises StateUnavailable:"""
        ...

    def write(self, key: str, record: Record, *, ttl: float, description: str) -> None:
        """Store a record only one process ever writes at a time. :raises StateUnavailable:"""
        ...

    def delete(self, key: str) -> None:
        """Forget the record under ``key``. :raises StateUnavailable:"""
        ...


def state_key(kind: str, name: str) -> str:
    """A short key for ``name`` (a group key or a template id, of any length): no value in clear."""
    return f"{VARIABLE_PREFIX}{kind}_{hashlib.sha256(name.encode()).hexdigest()[:20]}"


variable_key = state_key  # the name earlier versions used


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


def update(key: str, change: Change[T], description: str) -> T:
    """
    ``change`` the Variable record under ``key`` under its lock, waiting up to :data:`WAIT_SECONDS`.
    Where the Variables cannot be used at all, ``change`` sees no record and nothing is written.

    :raises LockBusy: the lock stayed busy for :data:`WAIT_SECONDS`.
    """
    from airflow_provider_juhe.alerting.variable_store import NO_EXPIRY, VariableStore

    try:
        return VariableStore().update(
            key, change, ttl=NO_EXPIRY, deadline=time.monotonic() + WAIT_SECONDS, description=description
        )
    except StateUnavailable:
        return change(None)[1]
