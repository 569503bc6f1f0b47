"""
The concurrent sender: up to ``max_workers`` calls in flight, each one written ahead to the ledger.

Worker threads only make calls; this module's writer (the calling thread) owns the ledger. A worker
starts a batch only once the ledger says, durably, that the batch may start (``announced``). The
writer keeps at most ``2 × max_workers`` batches announced and not yet settled: the calls in flight
plus one announced next call per worker, so workers never wait for a store write. Each write
settles the calls that finished and announces as many new ones. After a crash, a later try reports
unknown only those: every other batch is known never to have started.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airflow_provider_juhe.exceptions import (
    CallOutcome,
    JuheApiError,
    JuheAuthError,
    JuheConfigError,
    JuheDeliveryUnknownError,
    JuheError,
    JuheNotStarted,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sending.ledger import ANNOUNCED, NOT_SENT, SENT, UNKNOWN, SendLedger
from airflow_provider_juhe.sending.plan import Batch
from airflow_provider_juhe.sms_content import packed_tpl_value

SENT_OUTCOME, FAILED_OUTCOME, UNKNOWN_OUTCOME = "sent", "failed", "unknown"
#: How often the writer looks at ``should_stop`` while nothing else wakes it.
STOP_POLL_SECONDS = 0.5
#: Longest a finished call waits to be settled while workers still have announced calls to start.
SETTLE_DELAY_SECONDS = 0.1


@dataclass(frozen=True)
class Outcome:
    """How one call ended. ``failed`` means surely not sent; ``unknown`` means it may have been."""

    status: str
    sid: str | None = None
    fee: int = 0
    error_code: int | None = None
    reason: str = ""
    stop: bool = False  # no further call should start (an auth error)
    final: bool = False  # a retry of the task cannot change it
    #: ``False``: stopped right before its request started (the send window closed); surely not sent
    #: (settled as a failure is), yet no failure: the batch is sent when the window opens again.
    started: bool = True


def send_batch(hook: JuheSmsHook, batch: Batch, before_attempt: Callable[[], None] | None = None) -> Outcome:
    """
    One call, its ending read off the hook's outcome table. Never raises for an ordinary failure.

    :param before_attempt: passed to the hook's ``send_sms``: checked right before each attempt's
        request starts; raising :class:`JuheNotStarted` there gives an outcome not ``started``.
    """
    try:
        result = hook.send_sms(
            batch.mobiles, batch.tpl_id, packed_tpl_value(batch.tpl_value), before_attempt=before_attempt
        )
    except JuheNotStarted as error:
        return Outcome(FAILED_OUTCOME, reason=str(error), started=False)
    except JuheError as error:
        return outcome_of(error)
    except Exception as error:  # a defect of ours once the request may have left: never sent again
        return Outcome(UNKNOWN_OUTCOME, reason=f"{type(error).__name__}: {error}")
    return Outcome(SENT_OUTCOME, sid=result["sid"], fee=result["fee"])


def outcome_of(error: JuheError) -> Outcome:
    """A failed call's :class:`Outcome`, from the outcome the hook's table gave its exception."""
    code = getattr(error, "error_code", None)
    if error.outcome is CallOutcome.MAY_HAVE_TAKEN_EFFECT:
        detail = error.detail if isinstance(error, JuheDeliveryUnknownError) else str(error)
        return Outcome(UNKNOWN_OUTCOME, sid=getattr(error, "sid", None), error_code=code, reason=detail)
    reason = error.reason if isinstance(error, JuheApiError) else str(error)
    # A key that is not allowed, or a connection that cannot work, refuses every further call too.
    stop = isinstance(error, (JuheAuthError, JuheConfigError))
    return Outcome(FAILED_OUTCOME, error_code=code, reason=reason, stop=stop, final=error.final)


class Dispatcher:
    """
    Runs batches through ``send`` on ``max_workers`` threads, at most once across tries.

    :param send: makes one call and classifies it (:func:`send_batch`).
    :param ledger: the write-ahead ledger, loaded.
    :param max_workers: calls in flight at once.
    :param on_outcome: told of each call once its settlement is written (on the calling thread).
    :param should_stop: polled before each call starts (e.g. a send window closing): when it
        answers ``True`` no further call starts.
    """

    def __init__(
        self,
        send: Callable[[Batch], Outcome],
        ledger: SendLedger,
        max_workers: int,
        on_outcome: Callable[[Batch, Outcome], None],
        log: logging.Logger,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self._send = send
        self._ledger = ledger
        self._max_workers = max_workers
        self._on_outcome = on_outcome
        self._log = log
        self._should_stop = should_stop or (lambda: False)
        lock = threading.Lock()
        # Two conditions on one lock: a finished call wakes the writer alone, an announcement wakes as
        # many workers as it has batches (waking all 32 workers per call cost more than the calls).
        self._cond = threading.Condition(lock)  # the writer waits here
        self._work_ready = threading.Condition(lock)  # idle workers wait here
        self._ready: deque[Batch] = deque()
        self._finished: list[tuple[Batch, Outcome]] = []
        self._in_flight = 0
        self._stopped = False
        self._closing = False
        self._finished_since = 0.0
        self.stop_outcome: Outcome | None = None
        #: Ledger writes made and the seconds they took: the state store's share of the send's time.
        self.writes = 0
        self.write_seconds = 0.0

    def run(self, batches: Sequence[Batch]) -> list[Batch]:
        """Send ``batches``; return those not started (after a stop), in plan order."""
        pending = deque(batches)
        if not pending:
            return []
        workers = [
            threading.Thread(target=self._work, name=f"juhe-send-{n}", daemon=True)
            for n in range(min(self._max_workers, len(pending)))
        ]
        # Everything allocated before the send outlives it: frozen, the cyclic GC's full collections
        # during the send scan only what the send allocates, not Airflow's whole heap.
        gc.freeze()
        for worker in workers:
            worker.start()
        unsettled = 0  # announced in the ledger, not yet settled there
        released: list[Batch] = []
        try:
            while True:
                with self._cond:
                    while True:
                        stopping = self._stopping()
                        if not stopping and pending and not self._write_due():
                            self._cond.wait(SETTLE_DELAY_SECONDS / 4)
                            continue
                        settle, self._finished = self._finished, []
                        release = list(self._ready) if stopping else []
                        if stopping:
                            self._ready.clear()
                        room = 2 * self._max_workers - (unsettled - len(settle) - len(release))
                        announce = (
                            [] if stopping else [pending.popleft() for _ in range(min(room, len(pending)))]
                        )
                        if settle or release or announce:
                            break
                        if self._in_flight == 0 and not self._ready and (stopping or not pending):
                            self._closing = True
                            self._work_ready.notify_all()
                            return released + list(pending)
                        self._cond.wait(STOP_POLL_SECONDS)
                self._write(settle, release, announce)
                released.extend(release)
                unsettled += len(announce) - len(settle) - len(release)
                with self._cond:
                    self._ready.extend(announce)
                    self._work_ready.notify(len(announce))
        finally:
            self._shut_down(workers)
            gc.unfreeze()

    def _write_due(self) -> bool:
        """
        Write once all but one in eight workers have taken their announced next call (or a finished
        call has waited long enough): few, full writes. Measured inside DAG runs, where each write
        costs CPU that the workers then wait for, fewer writes beat writing further ahead.
        """
        if len(self._ready) <= max(1, self._max_workers // 8):
            return True
        return bool(self._finished) and time.monotonic() - self._finished_since >= SETTLE_DELAY_SECONDS

    def _stopping(self) -> bool:
        if not self._stopped and self._should_stop():
            self._stopped = True
        return self._stopped

    def _write(
        self, settle: list[tuple[Batch, Outcome]], release: list[Batch], announce: list[Batch]
    ) -> None:
        """One ledger write: settle finished calls, release never-started ones, announce the next."""
        states = {UNKNOWN_OUTCOME: UNKNOWN, SENT_OUTCOME: SENT, FAILED_OUTCOME: NOT_SENT}
        updates = [(batch.index, states[outcome.status]) for batch, outcome in settle]
        updates += [(batch.index, NOT_SENT) for batch in release]
        updates += [(batch.index, ANNOUNCED) for batch in announce]
        sent = {
            batch.index: (outcome.sid, outcome.fee)
            for batch, outcome in settle
            if outcome.status == SENT_OUTCOME
        }
        started = time.monotonic()
        self._ledger.write(updates, sent)
        self.writes += 1
        self.write_seconds += time.monotonic() - started
        for batch, outcome in settle:
            self._on_outcome(batch, outcome)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._closing and not self._stopped:
                    self._work_ready.wait()
                if self._stopped or not self._ready or self._should_stop():
                    self._cond.notify()  # the writer sees the stop
                    self._work_ready.notify_all()
                    return
                batch = self._ready.popleft()
                self._in_flight += 1
            outcome = self._send(batch)
            with self._cond:
                self._in_flight -= 1
                if not self._finished:
                    self._finished_since = time.monotonic()
                self._finished.append((batch, outcome))
                if outcome.stop and not self._stopped:
                    self._stopped = True
                    self.stop_outcome = outcome
                    self._work_ready.notify_all()
                self._cond.notify()

    def _shut_down(self, workers: list[threading.Thread]) -> None:
        """Let calls in flight end, then settle whatever finished (also when the writer failed)."""
        with self._cond:
            self._stopped = self._closing = True
            self._work_ready.notify_all()
        for worker in workers:
            worker.join()
        with self._cond:
            settle, self._finished = self._finished, []
            release = list(self._ready)
            self._ready.clear()
        if settle or release:
            try:
                self._write(settle, release, [])
            except Exception:
                self._log.exception("Could not settle the last %d call(s) in the ledger", len(settle))
                raise
