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
import math
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


#: Calls whose times feed the running mean and spread (an exponential average over about this many).
CALL_TIME_MEMORY = 20
#: Call times count as steady when their spread (standard deviation over mean) stays below this.
STEADY_SPREAD = 0.1
#: How far ahead of the workers the writer writes, in writes' worth of finishing calls. More keeps
#: workers busier under jitter only where the bound leaves room, and costs writes: at W = 32, L = 50 ms,
#: w = 25 ms, lognormal sigma = 0.3 (simulated), 1.5 gives 1.00 of W/L for 1.7x the writes, 0.5 gives 0.97
#: for 1.2x.
WRITE_AHEAD = 0.5


@dataclass
class LedgerWrite:
    """One ledger write: finished calls to settle, never-started batches to release, batches to announce."""

    settle: list[tuple[Batch, Outcome]]
    release: list[Batch]
    announce: list[Batch]

    def ledger_updates(self) -> tuple[list[tuple[int, str]], dict[int, tuple[str, int]]]:
        """The ledger's ``write`` arguments: each batch's new state, and the sent ones' sid and fee."""
        states = {UNKNOWN_OUTCOME: UNKNOWN, SENT_OUTCOME: SENT, FAILED_OUTCOME: NOT_SENT}
        updates = [(batch.index, states[outcome.status]) for batch, outcome in self.settle]
        updates += [(batch.index, NOT_SENT) for batch in self.release]
        updates += [(batch.index, ANNOUNCED) for batch in self.announce]
        sent = {
            batch.index: (outcome.sid or "", outcome.fee)  # a sent call always has its sid
            for batch, outcome in self.settle
            if outcome.status == SENT_OUTCOME
        }
        return updates, sent


class DispatchState:
    """
    What the dispatcher holds and decides, free of threads and clocks: the batches pending, announced
    (ready), in flight and finished; when the next ledger write is due and what it holds.

    The bound: the ledger never shows more than ``2 × max_workers`` batches announced and not settled.
    The trigger sizes writes from what it measures, the mean write time ``w`` and the mean call time
    ``L`` and its spread. Under steady call times the finishes of a round come together: a write is
    due once the announced batches left (``ready``) are gone, and one write settles the whole round.
    Under jitter the finishes spread out: a write is due once ``ready`` is down to the calls that
    finish during half a write (``0.5·W·w/L``, at least 1), so that workers finishing while it is
    written still find a batch. A finished call waits at most ``SETTLE_DELAY_SECONDS`` either way.

    :param batches: the batches to send, in plan order.
    :param max_workers: calls in flight at once.
    """

    def __init__(self, batches: Sequence[Batch], max_workers: int) -> None:
        self.max_workers = max_workers
        #: Most batches the ledger may show announced and not settled.
        self.bound = 2 * max_workers
        self.pending: deque[Batch] = deque(batches)
        self.ready: deque[Batch] = deque()
        self.finished: list[tuple[Batch, Outcome]] = []
        self.in_flight = 0
        self.unsettled = 0  # announced in the ledger (or being announced), not yet settled there
        self.stopped = False
        self.stop_outcome: Outcome | None = None
        self.finished_since = 0.0
        #: Ledger writes made and the seconds they took: the state store's share of the send's time.
        self.writes = 0
        self.write_seconds = 0.0
        #: Calls finished; their running mean time and variance (exponentially weighted).
        self.calls = 0
        self.call_mean = 0.0
        self.call_variance = 0.0

    # -- the workers' side ---------------------------------------------------------------------------

    def take(self) -> Batch | None:
        """The next announced batch for a worker to call, or ``None``."""
        if not self.ready:
            return None
        self.in_flight += 1
        return self.ready.popleft()

    def finish(self, batch: Batch, outcome: Outcome, seconds: float, now: float) -> None:
        """A call ended after ``seconds``, at ``now``."""
        self.in_flight -= 1
        if not self.finished:
            self.finished_since = now
        self.finished.append((batch, outcome))
        if outcome.stop and not self.stopped:
            self.stopped = True
            self.stop_outcome = outcome
        self.calls += 1
        if self.calls == 1:
            self.call_mean = seconds
            return
        weight = 1 / min(self.calls, CALL_TIME_MEMORY)
        deviation = seconds - self.call_mean
        self.call_mean += weight * deviation
        self.call_variance = (1 - weight) * (self.call_variance + weight * deviation * deviation)

    # -- the writer's side ---------------------------------------------------------------------------

    def write_ahead(self) -> int:
        """Announced batches left (``ready``) at which a write is due."""
        if not self.writes or self.calls < self.max_workers or self.call_mean <= 0:
            return max(1, self.max_workers // 8)  # nothing measured yet
        if self.call_variance**0.5 < STEADY_SPREAD * self.call_mean:
            return 0
        write_mean = self.write_seconds / self.writes
        return max(1, math.ceil(WRITE_AHEAD * self.max_workers * write_mean / self.call_mean))

    def write_due(self, now: float) -> bool:
        """Whether the writer should write now (``stopping`` aside)."""
        if not self.pending:
            return True
        if len(self.ready) <= self.write_ahead():
            return True
        return bool(self.finished) and now - self.finished_since >= SETTLE_DELAY_SECONDS

    def due_in(self, now: float) -> float:
        """Seconds until a finished call's wait makes a write due (``STOP_POLL_SECONDS`` if none is)."""
        if not self.finished:
            return STOP_POLL_SECONDS
        return max(0.0, self.finished_since + SETTLE_DELAY_SECONDS - now)

    def next_write(self, stopping: bool) -> LedgerWrite | None:
        """
        The write to make now, or ``None`` if there is nothing to write. ``unsettled`` becomes what the
        ledger shows once the write lands (one write changes the ledger at once): at most ``bound``.
        """
        settle, self.finished = self.finished, []
        release = list(self.ready) if stopping else []
        if stopping:
            self.ready.clear()
        room = self.bound - (self.unsettled - len(settle) - len(release))
        count = 0 if stopping else min(room, len(self.pending))
        announce = [self.pending.popleft() for _ in range(count)]
        if not (settle or release or announce):
            return None
        self.unsettled += len(announce) - len(settle) - len(release)
        return LedgerWrite(settle, release, announce)

    def written(self, write: LedgerWrite, seconds: float) -> None:
        """``write`` is in the ledger, after ``seconds``: its announced batches may start."""
        self.writes += 1
        self.write_seconds += seconds
        self.ready.extend(write.announce)

    def done(self, stopping: bool) -> bool:
        """Nothing in flight or announced, and nothing more to send."""
        return self.in_flight == 0 and not self.ready and (stopping or not self.pending)


class Dispatcher:
    """
    Runs batches through ``send`` on ``max_workers`` threads, at most once across tries: the threads
    and the ledger around :class:`DispatchState`, which decides.

    :param send: makes one call and classifies it (:func:`send_batch`).
    :param ledger: the write-ahead ledger, loaded.
    :param max_workers: calls in flight at once.
    :param on_outcome: told of each call once its settlement is written (on the calling thread).
    :param should_stop: polled before each call starts (e.g. a send window closing): when it
        answers ``True`` no further call starts.
    :param clock: seconds, for call and write times (``time.monotonic``).
    """

    def __init__(
        self,
        send: Callable[[Batch], Outcome],
        ledger: SendLedger,
        max_workers: int,
        on_outcome: Callable[[Batch, Outcome], None],
        log: logging.Logger,
        should_stop: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._ledger = ledger
        self._max_workers = max_workers
        self._on_outcome = on_outcome
        self._log = log
        self._should_stop = should_stop or (lambda: False)
        self._clock = clock
        lock = threading.Lock()
        # Two conditions on one lock: a finished call wakes the writer alone, an announcement wakes as
        # many workers as it has batches (waking all 32 workers per call cost more than the calls).
        self._cond = threading.Condition(lock)  # the writer waits here
        self._work_ready = threading.Condition(lock)  # idle workers wait here
        self._state = DispatchState((), max_workers)
        self._closing = False

    @property
    def stop_outcome(self) -> Outcome | None:
        """The refusal that stopped every further call (an auth error), if one did."""
        return self._state.stop_outcome

    @property
    def writes(self) -> int:
        """Ledger writes made."""
        return self._state.writes

    @property
    def write_seconds(self) -> float:
        """Seconds the ledger writes took: the state store's share of the send's time."""
        return self._state.write_seconds

    def run(self, batches: Sequence[Batch]) -> list[Batch]:
        """Send ``batches``; return those not started (after a stop), in plan order."""
        if not batches:
            return []
        state = self._state = DispatchState(batches, self._max_workers)
        workers = [
            threading.Thread(target=self._work, name=f"juhe-send-{n}", daemon=True)
            for n in range(min(self._max_workers, len(batches)))
        ]
        # Everything allocated before the send outlives it: frozen, the cyclic GC's full collections
        # during the send scan only what the send allocates, not Airflow's whole heap.
        gc.freeze()
        for worker in workers:
            worker.start()
        released: list[Batch] = []
        try:
            while True:
                with self._cond:
                    while True:
                        stopping = self._stopping()
                        if not stopping and not state.write_due(self._clock()):
                            self._cond.wait(state.due_in(self._clock()))
                            continue
                        write = state.next_write(stopping)
                        if write is not None:
                            break
                        if state.done(stopping):
                            self._closing = True
                            self._work_ready.notify_all()
                            return released + list(state.pending)
                        self._cond.wait(STOP_POLL_SECONDS)
                self._write(write)
                released.extend(write.release)
                with self._cond:
                    self._work_ready.notify(len(write.announce))
        finally:
            self._shut_down(workers)
            gc.unfreeze()

    def _stopping(self) -> bool:
        if not self._state.stopped and self._should_stop():
            self._state.stopped = True
        return self._state.stopped

    def _write(self, write: LedgerWrite) -> None:
        """One ledger write: settle finished calls, release never-started ones, announce the next."""
        updates, sent = write.ledger_updates()
        started = self._clock()
        self._ledger.write(updates, sent)
        seconds = self._clock() - started
        with self._cond:
            self._state.written(write, seconds)
        for batch, outcome in write.settle:
            self._on_outcome(batch, outcome)

    def _work(self) -> None:
        state = self._state
        ended: tuple[Batch, Outcome, float] | None = None
        while True:
            with self._cond:
                if ended is not None:
                    state.finish(*ended, self._clock())
                    if state.stopped:
                        self._work_ready.notify_all()
                while not state.ready and not self._closing and not state.stopped:
                    if ended is not None:  # the writer hears of the finish before this worker sleeps
                        self._cond.notify()
                        ended = None
                    self._work_ready.wait()
                if state.stopped or not state.ready or self._should_stop():
                    self._cond.notify()  # the writer sees the stop
                    self._work_ready.notify_all()
                    return
                batch = state.take()
                if ended is not None:  # told after the take: the writer sees what is left ready
                    self._cond.notify()
                    ended = None
            assert batch is not None
            started = self._clock()
            outcome = self._send(batch)
            ended = (batch, outcome, self._clock() - started)

    def _shut_down(self, workers: list[threading.Thread]) -> None:
        """Let calls in flight end, then settle whatever finished (also when the writer failed)."""
        with self._cond:
            self._state.stopped = self._closing = True
            self._work_ready.notify_all()
        for worker in workers:
            worker.join()
        with self._cond:
            write = self._state.next_write(stopping=True)
        if write is not None:
            try:
                self._write(write)
            except Exception:
                self._log.exception("Could not settle the last %d call(s) in the ledger", len(write.settle))
                raise
