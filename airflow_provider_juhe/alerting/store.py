"""
The alert state's coordination interface: one operation, an atomic read-modify-write of a record with
an expiry (:class:`AlertStore`), the errors a store raises when it cannot be used, and the keys.

Implemented by :mod:`~airflow_provider_juhe.alerting.variable_store` and
:mod:`~airflow_provider_juhe.alerting.redis_store`; :mod:`~airflow_provider_juhe.alerting.state` picks one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from airflow_provider_juhe.variables import VARIABLE_PREFIX, StateUnavailable

T = TypeVar("T")
Record = dict[str, Any]
#: ``change(record) -> (new record or None to keep it, result)``; it may be called more than once.
Change = Callable[[Record | None], tuple[Record | None, T]]

#: The extra that installs the Redis store's packages.
REDIS_EXTRA = "airflow-provider-juhe[redis]"
#: A Variables record's lock is the Variable of the record's key and this suffix.
LOCK_SUFFIX = "_lock"


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
