"""
Alert state in Airflow Variables, reached through whichever channel the calling process has, and
changed under a lock so that racing notifications never lose an update.

Task-level callbacks (in the worker), DAG-level callbacks (in the DAG processor) and the triggerer
talk to the API server through the task SDK's supervisor channel. Where that channel does not exist
(DAG-level callbacks under ``dag.test()``), the task SDK's ``Variable.get`` quietly returns its
default, so the process's own metadata-DB access is used instead.

Variables have no compare-and-set, so each record carries its own lock, taken by Fischer's timed
mutual exclusion: read the record unlocked, write it back with a fresh token, wait
:data:`SETTLE_SECONDS`, and hold the lock only if the token is still there; the update's own write
releases it. It is safe as long as every process writes within ``WRITE_WITHIN_SECONDS`` of reading
(less than ``SETTLE_SECONDS``): a process that took longer does not enter, and lets its lease lapse.
The lease also frees, after :data:`LEASE_SECONDS`, the lock of a holder that died.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: Every Variable this provider writes starts with it.
VARIABLE_PREFIX = "juhe_sms_"
#: How long a claimed lock waits for a racing claim to land before it is checked (seconds).
SETTLE_SECONDS = 1.0
#: A lock is claimed only if its read-then-write took less than this; must stay below SETTLE_SECONDS.
WRITE_WITHIN_SECONDS = 0.5
#: How long a lock is held at most; a holder that died frees it after this (seconds).
LEASE_SECONDS = 6.0
#: How long a notification waits for a lock that others hold before it gives up (seconds).
WAIT_SECONDS = 120.0
#: Margin kept between the end of a holder's work and the end of its lease (seconds).
_LEASE_MARGIN = 2.0

clock = time.time  # wall clock: leases are compared across processes and machines

T = TypeVar("T")
Record = dict[str, Any]
#: The field of a record that holds its lock: ``{"token", "until"}``.
LOCK_FIELD = "lock"


class StateUnavailable(Exception):
    """The Variables could not be read or written."""


class LockBusy(Exception):
    """Other notifications held the lock for longer than :data:`WAIT_SECONDS`."""


def variable_key(kind: str, name: str) -> str:
    """A short, URL-safe Variable key for ``name`` (a group key or a template id, of any length)."""
    return f"{VARIABLE_PREFIX}{kind}_{hashlib.sha256(name.encode()).hexdigest()[:20]}"


def _has_supervisor_channel() -> bool:
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return task_runner is not None and hasattr(task_runner, "SUPERVISOR_COMMS")


def update(key: str, change: Callable[[Record | None], tuple[Record | None, T]], description: str) -> T:
    """
    Read the record under ``key``, apply ``change`` (returning the new record, or None to keep it,
    and a result), and write it back, all under the record's lock: no racing update is lost.

    Where the Variables cannot be used at all, ``change`` sees no record and nothing is written: the
    page goes out as if none were kept.

    :raises LockBusy: others held the lock for :data:`WAIT_SECONDS`.
    """
    try:
        record, still_held = _lock(key, description)
    except StateUnavailable:
        log.warning("Alert state %s cannot be used; paging as if none were kept", key, exc_info=True)
        return change(None)[1]
    try:
        changed, result = change(record or None)
    except BaseException:
        with contextlib.suppress(StateUnavailable):
            _release(key, record, description, still_held)
        raise
    if not still_held():  # paused past the lease: another may hold the lock now
        raise LockBusy(f"the lock of {key} lapsed before its update was written")
    try:
        _release(key, record if changed is None else changed, description, still_held)
    except StateUnavailable:  # the decision stands: a page matters more than its bookkeeping
        log.warning("Could not store alert state %s", key, exc_info=True)
    return result


def read(key: str) -> Record | None:
    """A record read without the lock (see :func:`write`). :raises StateUnavailable:"""
    return _read(key)


def write(key: str, record: Record, description: str) -> None:
    """
    Write a record that only one process ever writes at a time, without a lock (a sender's
    confirmation of the claim it holds). :raises StateUnavailable:
    """
    _write(key, record, description)


def _lock(key: str, description: str) -> tuple[Record, Callable[[], bool]]:
    """
    Take the lock kept in the record itself (Fischer's algorithm): the record as it is now, and a
    check that the lease still has its margin left.
    """
    give_up = time.monotonic() + WAIT_SECONDS
    while True:
        began = time.monotonic()
        if began > give_up:
            raise LockBusy(f"{key} stayed locked for {WAIT_SECONDS:.0f} s")
        record = _read(key) or {}
        if _lease(record).get("until", 0) > clock():
            time.sleep(random.uniform(0.05, 0.2))
            continue
        token = uuid.uuid4().hex
        _write(key, {**record, LOCK_FIELD: {"token": token, "until": clock() + LEASE_SECONDS}}, description)
        if time.monotonic() - began > WRITE_WITHIN_SECONDS:
            continue  # too slow to be sure no racer entered meanwhile: the lease lapses instead
        time.sleep(SETTLE_SECONDS)
        acquired = time.monotonic()
        record = _read(key) or {}
        if _lease(record).get("token") == token:
            break

    def still_held() -> bool:
        return time.monotonic() - acquired < LEASE_SECONDS - _LEASE_MARGIN

    return {k: v for k, v in record.items() if k != LOCK_FIELD}, still_held


def _release(key: str, record: Record, description: str, still_held: Callable[[], bool]) -> None:
    """Write the record without its lock; past the lease another may hold it, so write nothing."""
    if still_held():
        _write(key, record, description)
        if not still_held():  # the write took the margin: it may have landed after the lease ended
            log.error(
                "Alert state %s: a write took longer than its lease allowed; a racing notification may "
                "have decided on the state before it (a page beyond a cap is possible)",
                key,
            )


def _lease(record: Record) -> dict[str, Any]:
    """The record's lock, or none when it is missing or damaged (a damaged lock must not lock forever)."""
    lease = record.get(LOCK_FIELD)
    if isinstance(lease, dict) and isinstance(lease.get("until"), (int, float)):
        return lease
    return {}


def _read(key: str) -> dict[str, Any] | None:
    try:
        if _has_supervisor_channel():
            from airflow.sdk import Variable

            record = Variable.get(key, default=None, deserialize_json=True)
        else:
            from airflow.models.variable import Variable as MetadataVariable

            record = MetadataVariable.get(key, default_var=None, deserialize_json=True)
    except Exception as error:
        raise StateUnavailable(f"reading {key}: {type(error).__name__}: {error}") from error
    return record if isinstance(record, dict) else None


def _write(key: str, record: dict[str, Any], description: str) -> None:
    try:
        if _has_supervisor_channel():
            from airflow.sdk import Variable

            Variable.set(key, record, description=description, serialize_json=True)
        else:
            from airflow.models.variable import Variable as MetadataVariable

            MetadataVariable.set(key, record, description=description, serialize_json=True)
    except Exception as error:
        raise StateUnavailable(f"writing {key}: {type(error).__name__}: {error}") from error
