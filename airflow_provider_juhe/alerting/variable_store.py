"""
Alert state in Airflow Variables, changed under a timed lock whose times follow the latency this
process measures on its own Variable calls.

Variables have no compare-and-set, so each record has a lock Variable beside it, taken by Fischer's
timed mutual exclusion: read the lock free, write a fresh token into it, wait the *settle* time, and
hold it only if the token is still there. A process enters only if its token landed within the
*gate* of its read (a racer whose write came later gives up that attempt), and the settle outlasts
the gate, so any racer that read the lock free before has landed its token by the time it looks
again. Only the holder writes the record. A lease frees the lock of a holder that died; the holder
writes only with a margin left on it.

Gate, settle and lease are multiples of the typical recent call (:class:`Latency`), with floors: on
a fast metadata DB an update takes a fraction of a second, and on a slow one the lock still admits a
holder instead of demanding a 1 s write that the DB cannot meet. Every update has a deadline; one
that cannot finish by it (a slow DB, a lock held by a holder that makes no progress) raises
:class:`~airflow_provider_juhe.alerting.store.LockBusy` early, so the caller can page anyway.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from airflow_provider_juhe import variables
from airflow_provider_juhe.alerting.policy import is_time
from airflow_provider_juhe.alerting.store import LOCK_SUFFIX, Change, LockBusy, Record

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A ttl that never expires (the ledger's day index).
NO_EXPIRY = float("inf")
#: Where records written by earlier versions kept their lock; dropped when read.
LOCK_FIELD = "lock"
#: Where a record keeps its expiry (seconds since the epoch); dropped when read.
EXPIRES_FIELD = "expires"

#: The shortest gate (seconds): below it, scheduling noise alone would keep every racer out.
MIN_GATE_SECONDS = 0.1
#: Gate = this many times the typical recent call: a lock read and a token write take two.
GATE_CALLS = 3.0
#: Settle = gate times this: a racer on a slower path than this process's still lands in time.
SETTLE_FACTOR = 1.25
#: The shortest lease (seconds).
MIN_LEASE_SECONDS = 2.0
#: How far workers' clocks may disagree: a lease further ahead than its length plus this is damaged.
CLOCK_SKEW_SECONDS = 2.0
#: The longest wait between two looks at a lock others hold, beyond the holder's expected end (seconds).
MAX_POLL_SECONDS = 0.25
#: The longest one Variable call of the alert state may take (seconds): a channel that does not answer
#: (an API server or metadata DB that hangs) must not hold the page past a task callback's time. Well
#: above a slow call under a storm (over 3 s seen with 20 tasks failing at once on SQLite), which must
#: not cost a grouped page.
ALERT_CALL_SECONDS = 8.0

clock = time.time  # wall clock: leases are compared across processes and machines


class Latency:
    """
    The typical time of this process's recent Variable calls (the median of the last few, within the
    last minute): what the lock's times are made of. The median, not the slowest: one stalled call
    must not make every later update look impossible (a racer whose own call is slow only fails its
    own gate, and tries again). A process's first call is left out: it opens the connection and
    warms caches, and in a storm of freshly started callbacks it can take seconds that no later
    call takes.
    """

    def __init__(self, window: int = 8, horizon: float = 60.0) -> None:
        self._recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        self._horizon = horizon
        self._lock = threading.Lock()
        self._warm = False

    def record(self, seconds: float) -> None:
        with self._lock:
            if self._warm:
                self._recent.append((time.monotonic(), seconds))
            self._warm = True

    @property
    def typical(self) -> float:
        """Seconds; 0 before any call but the first."""
        since = time.monotonic() - self._horizon
        with self._lock:
            recent = [took for at, took in self._recent if at >= since]
        return statistics.median(recent) if recent else 0.0

    @property
    def gate(self) -> float:
        """A token write must land within this of the lock read that saw the lock free."""
        return max(MIN_GATE_SECONDS, GATE_CALLS * self.typical)

    @property
    def settle(self) -> float:
        """How long a written token waits before it is checked."""
        return self.gate * SETTLE_FACTOR

    @property
    def margin(self) -> float:
        """A holder's last write starts this long before its lease ends."""
        return self.settle + 2 * self.typical + 0.5

    @property
    def lease(self) -> float:
        """How long a lock is held at most: entry, two reads, two writes, the margin."""
        return max(MIN_LEASE_SECONDS, self.settle + 6 * self.typical + self.margin)

    def entry(self) -> float:
        """How long an uncontended update takes: six calls and a settle."""
        return 6 * self.typical + self.settle


#: This process's Variable latency, shared by every store instance.
LATENCY = Latency()


class VariableStore:
    """Records in Airflow Variables (``juhe_sms_*``), each changed under its lock Variable."""

    name = "Airflow Variables"

    def __init__(self, latency: Latency | None = None, *, call_seconds: float | None = None) -> None:
        """
        :param call_seconds: the longest one Variable call may take; past it the call is left behind
            on its thread and this store raises ``StateUnavailable`` for it and every later call.
            None: calls are not bounded.
        """
        self.latency = latency or LATENCY
        self.call_seconds = call_seconds
        self._stuck = False

    # -- the Variable calls, timed -----------------------------------------------------------------

    def _timed(self, call: Callable[[], T]) -> T:
        began = time.monotonic()
        try:
            return call() if self.call_seconds is None else self._bounded(call, self.call_seconds)
        finally:
            self.latency.record(time.monotonic() - began)

    def _bounded(self, call: Callable[[], T], seconds: float) -> T:
        if self._stuck:
            raise variables.StateUnavailable(f"an earlier Variable call did not answer within {seconds:g} s")
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, call()))
            except BaseException as error:
                outcome.append((False, error))

        worker = threading.Thread(target=run, name="juhe-alert-state-call", daemon=True)
        worker.start()
        worker.join(seconds)
        if not outcome:
            self._stuck = True  # later calls would queue behind it on the same channel
            raise variables.StateUnavailable(f"a Variable call did not answer within {seconds:g} s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _get(self, key: str) -> Record | None:
        return self._timed(lambda: variables.read(key))

    def _set(self, key: str, record: Record, description: str) -> None:
        self._timed(lambda: variables.write(key, record, description))

    # -- the store ---------------------------------------------------------------------------------

    def read(self, key: str) -> Record | None:
        record = self._get(key)
        if record is None:
            return None
        expires = record.get(EXPIRES_FIELD)
        if is_time(expires) and expires < clock():
            return None
        return {k: v for k, v in record.items() if k not in (EXPIRES_FIELD, LOCK_FIELD)} or None

    def write(self, key: str, record: Record, *, ttl: float, description: str) -> None:
        self._set(key, self._expiring(record, ttl), description)

    def delete(self, key: str) -> None:
        for name in (key, f"{key}{LOCK_SUFFIX}"):
            self._timed(lambda name=name: variables.delete(name))  # type: ignore[misc]

    def update(self, key: str, change: Change[T], *, ttl: float, deadline: float, description: str) -> T:
        lock = f"{key}{LOCK_SUFFIX}"
        while True:
            still_held = self._lock(lock, description, deadline)
            try:
                changed, result = change(self.read(key))
                if still_held():
                    if changed is not None:
                        self._write_held(key, self._expiring(changed, ttl), description, still_held)
                    return result
            finally:
                with contextlib.suppress(variables.StateUnavailable):
                    self._write_held(lock, {}, f"{description} (lock)", still_held)
            # Slow calls outlasted the lease: another may hold the lock now. Decide again, under it.
            log.warning("Alert state %s: the lock's lease ran out before the update was written; again", key)

    @staticmethod
    def _expiring(record: Record, ttl: float) -> Record:
        return record if ttl == NO_EXPIRY else {**record, EXPIRES_FIELD: clock() + ttl}

    def _lock(self, lock: str, description: str, deadline: float) -> Callable[[], bool]:
        """
        Take the lock kept in the Variable ``lock`` before ``deadline`` (monotonic); return a check
        that its lease still has its margin left.

        :raises LockBusy: the deadline passed, or an update could not finish by it at this latency.
        """
        pause = _Backoff(self.latency, deadline)
        held = False
        while True:
            began = time.monotonic()
            self._check_time(lock, deadline, began, held)
            lease = _lease(self._get(lock), self.latency.lease)
            held = lease.get("until", 0) > clock()
            if held:
                self._check_time(lock, deadline, time.monotonic(), held)
                # Look again when its holder should be done (spread out, so that few racers meet there).
                pause(lease["until"] - self.latency.lease + self.latency.entry() - clock())
                continue
            gate, settle, length = self.latency.gate, self.latency.settle, self.latency.lease
            if time.monotonic() - began > gate / 2:
                pause()  # a slow read: its write would likely come too late
                continue
            self._check_time(lock, deadline, time.monotonic(), held)
            token = uuid.uuid4().hex
            # The lease runs from before its write: the holder's view is the safe one.
            leased = time.monotonic()
            self._set(lock, {"token": token, "until": clock() + length}, f"{description} (lock)")
            if time.monotonic() - began > gate:
                continue  # too slow to be sure no racer entered meanwhile: the lease lapses instead
            time.sleep(settle)
            if _lease(self._get(lock), length).get("token") == token:
                break
            held = True  # a racer's token landed after this one: it holds the lock
        margin = self.latency.margin

        def still_held() -> bool:
            return time.monotonic() - leased < length - margin

        return still_held

    def _check_time(self, lock: str, deadline: float, now: float, held: bool) -> None:
        left = deadline - now
        if left <= 0:
            raise LockBusy(f"{lock} stayed locked until the notification's time bound", held=held)
        if self.latency.entry() > left:
            raise LockBusy(
                f"Variable calls take ~{self.latency.typical:.2f} s: an update would need "
                f"~{self.latency.entry():.1f} s, {left:.1f} s are left",
                held=held,
            )

    def _write_held(self, key: str, record: Record, description: str, still_held: Callable[[], bool]) -> None:
        """Write under the lock; past the lease another may hold it, so write nothing."""
        if still_held():
            self._set(key, record, description)
            if not still_held():  # the write took the margin: it may have landed after the lease ended
                log.error(
                    "Alert state %s: a write took longer than its lease allowed; a racing notification "
                    "may have decided on the state before it (a page beyond a cap is possible)",
                    key,
                )


class _Backoff:
    """
    Waits between looks at a busy lock, growing to a few calls' worth: under a storm, polling faster
    only slows every process's calls, and slow calls keep everyone out of the lock. Never past the
    deadline (monotonic): a waiter then gives up on time.
    """

    def __init__(self, latency: Latency, deadline: float) -> None:
        self.latency = latency
        self.deadline = deadline
        self.longest = 0.02

    def __call__(self, at_least: float = 0.0) -> None:
        ceiling = max(MAX_POLL_SECONDS, self.latency.entry())
        wait = min(max(at_least, 0.0), self.latency.lease) + random.uniform(self.longest / 2, self.longest)
        time.sleep(max(0.0, min(wait, self.deadline - time.monotonic())))
        self.longest = min(self.longest * 2, ceiling)


def _lease(lock: Any, length: float) -> dict[str, Any]:
    """
    A lock's lease, or none when it is missing or damaged: a damaged lock must not lock forever, nor
    one whose end lies further ahead than a lease can (set by hand, or by a clock far ahead).
    """
    until = lock.get("until") if isinstance(lock, dict) else None
    if not is_time(until) or until > clock() + max(length, MIN_LEASE_SECONDS) + CLOCK_SKEW_SECONDS + 10:
        return {}
    return {**lock, "until": float(until)}
