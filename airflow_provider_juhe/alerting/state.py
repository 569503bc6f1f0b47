"""
Alert state in Airflow Variables, reached through whichever channel the calling process has, and
changed under a lock so that racing notifications never lose an update.

Task-level callbacks (in the worker), DAG-level callbacks (in the DAG processor) and the triggerer
talk to the API server through the task SDK's supervisor channel. Where that channel does not exist
(DAG-level callbacks under ``dag.test()``), the task SDK's ``Variable.get`` quietly returns its
default, so the process's own metadata-DB access is used instead.

Variables have no compare-and-set, so each record has a lock Variable beside it, taken by Fischer's
timed mutual exclusion: read the lock free, write a fresh token into it, wait
:data:`SETTLE_SECONDS`, and hold it only if the token is still there. A process enters only if its
token landed within ``WRITE_WITHIN_SECONDS`` (at most ``SETTLE_SECONDS``) of its read, so any racer
that read the lock free before has landed its own token by the time it looks again. Only the
holder writes the record, so a late token write costs time, never an update. A lease frees the lock
of a holder that died after :data:`LEASE_SECONDS`; the holder writes only with a margin left on it.
Waiters back off, and skip a write after a slow read: a storm's polling must not slow the calls
enough that every token lands too late and nobody enters.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from airflow_provider_juhe.alerting.policy import is_time
from airflow_provider_juhe.variables import VARIABLE_PREFIX, StateUnavailable
from airflow_provider_juhe.variables import read as _read
from airflow_provider_juhe.variables import write as _write

log = logging.getLogger(__name__)

#: How long a claimed lock waits for a racing claim to land before it is checked (seconds).
SETTLE_SECONDS = 1.0
#: A lock is claimed only if its read-then-write took less than this; at most SETTLE_SECONDS.
WRITE_WITHIN_SECONDS = 1.0
#: How long a lock is held at most; a holder that died frees it after this (seconds).
LEASE_SECONDS = 10.0
#: How far workers' clocks may disagree: a lease further ahead than this is taken for a damaged one.
CLOCK_SKEW_SECONDS = 2.0
#: How long a notification waits for a lock that others hold before it gives up (seconds).
WAIT_SECONDS = 120.0
#: The shortest and the longest wait between two looks at a lock others hold (seconds).
_POLL_SECONDS = (0.25, 4.0)
#: How long a holder usually keeps a lock after its settle: two reads and two writes (seconds).
_HOLD_SECONDS = 0.5
#: The holder's last write starts this long before its lease ends: a write that lands up to this
#: plus SETTLE_SECONDS late still lands before any next holder reads (seconds).
_LEASE_MARGIN = 4.0

clock = time.time  # wall clock: leases are compared across processes and machines

T = TypeVar("T")
Record = dict[str, Any]
#: A record's lock is the Variable of the record's key and this suffix: ``{"token", "until"}``.
LOCK_SUFFIX = "_lock"
#: Where records written by earlier versions kept their lock; dropped when read.
LOCK_FIELD = "lock"


class LockBusy(Exception):
    """Other notifications held the lock for longer than :data:`WAIT_SECONDS`."""


def variable_key(kind: str, name: str) -> str:
    """A short, URL-safe Variable key for ``name`` (a group key or a template id, of any length)."""
    return f"{VARIABLE_PREFIX}{kind}_{hashlib.sha256(name.encode()).hexdigest()[:20]}"


def update(key: str, change: Callable[[Record | None], tuple[Record | None, T]], description: str) -> T:
    """
    Read the record under ``key``, apply ``change`` (returning the new record, or None to keep it,
    and a result), and write it back, all under the record's lock: no racing update is lost.

    Where the Variables cannot be used at all, ``change`` sees no record and nothing is written: the
    page goes out as if none were kept.

    :raises LockBusy: others held the lock for :data:`WAIT_SECONDS`.
    """
    lock = f"{key}{LOCK_SUFFIX}"
    give_up = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            still_held = _lock(lock, description, give_up)
        except StateUnavailable:
            log.warning("Alert state %s cannot be used; paging as if none were kept", key, exc_info=True)
            return change(None)[1]
        try:
            try:
                record = _read(key)
            except StateUnavailable:
                log.warning("Alert state %s cannot be read; paging as if none were kept", key, exc_info=True)
                return change(None)[1]
            changed, result = change({k: v for k, v in (record or {}).items() if k != LOCK_FIELD} or None)
            if still_held():
                if changed is not None:
                    try:
                        _write_held(key, changed, description, still_held)
                    except StateUnavailable:  # the decision stands: a page matters more than its bookkeeping
                        log.warning("Could not store alert state %s", key, exc_info=True)
                return result
        finally:
            with contextlib.suppress(StateUnavailable):
                _write_held(lock, {}, f"{description} (lock)", still_held)
        # Slow calls outlasted the lease: another may hold the lock now. Decide again, under it.
        log.warning("Alert state %s: the lock's lease ran out before the update was written; again", key)


def read(key: str) -> Record | None:
    """A record read without the lock (see :func:`write`). :raises StateUnavailable:"""
    return _read(key)


def write(key: str, record: Record, description: str) -> None:
    """
    Write a record that only one process ever writes at a time, without a lock (a sender's
    confirmation of the claim it holds). :raises StateUnavailable:
    """
    _write(key, record, description)


def _lock(lock: str, description: str, give_up: float) -> Callable[[], bool]:
    """
    Take the lock kept in the Variable ``lock`` (Fischer's algorithm) before ``give_up`` (monotonic);
    return a check that its lease still has its margin left.
    """
    pause = _Backoff()
    while True:
        began = time.monotonic()
        if began > give_up:
            raise LockBusy(f"{lock} stayed locked for {WAIT_SECONDS:.0f} s")
        until = _lease(_read(lock)).get("until", 0)
        if until > clock():
            # Look again when its holder should be done (spread out, so that few racers meet there).
            pause(until - LEASE_SECONDS + SETTLE_SECONDS + _HOLD_SECONDS - clock())
            continue
        if time.monotonic() - began > WRITE_WITHIN_SECONDS / 2:
            pause()  # a slow read: its write would likely come too late
            continue
        token = uuid.uuid4().hex
        leased = time.monotonic()  # the lease runs from before its write: the holder's view is the safe one
        _write(lock, {"token": token, "until": clock() + LEASE_SECONDS}, f"{description} (lock)")
        if time.monotonic() - began > WRITE_WITHIN_SECONDS:
            continue  # too slow to be sure no racer entered meanwhile: the lease lapses instead
        time.sleep(SETTLE_SECONDS)
        if _lease(_read(lock)).get("token") == token:
            break

    def still_held() -> bool:
        return time.monotonic() - leased < LEASE_SECONDS - _LEASE_MARGIN

    return still_held


class _Backoff:
    """
    Waits between looks at a busy lock, growing to :data:`_POLL_SECONDS`'s longest: under a storm,
    polling faster only slows every process's calls, and slow calls keep everyone out of the lock.
    """

    def __init__(self) -> None:
        self.longest = _POLL_SECONDS[0]

    def __call__(self, at_least: float = 0.0) -> None:
        time.sleep(min(max(at_least, 0.0), LEASE_SECONDS) + random.uniform(self.longest / 2, self.longest))
        self.longest = min(self.longest * 2, _POLL_SECONDS[1])


def _write_held(key: str, record: Record, description: str, still_held: Callable[[], bool]) -> None:
    """Write under the lock; past the lease another may hold it, so write nothing."""
    if still_held():
        _write(key, record, description)
        if not still_held():  # the write took the margin: it may have landed after the lease ended
            log.error(
                "Alert state %s: a write took longer than its lease allowed; a racing notification may "
                "have decided on the state before it (a page beyond a cap is possible)",
                key,
            )


def _lease(lock: Record | None) -> dict[str, Any]:
    """
    A lock's lease, or none when it is missing or damaged: a damaged lock must not lock forever, nor
    one whose end lies further ahead than a lease can (set by hand, or by a clock far ahead).
    """
    until = lock.get("until") if isinstance(lock, dict) else None
    if not is_time(until) or until > clock() + LEASE_SECONDS + CLOCK_SKEW_SECONDS:
        return {}
    return {**lock, "until": float(until)}
