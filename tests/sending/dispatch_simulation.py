"""
A discrete-event simulation of the dispatcher: the real :class:`DispatchState` and the real ledger,
driven by a fake clock, with calls and ledger writes that take simulated time. No threads, no sleeps.

It plays the threads of :class:`~airflow_provider_juhe.sending.dispatch.Dispatcher` in their order:
a worker that finishes a call records it and takes the next announced batch in one step, then the
writer looks; the writer, when idle, writes if a write is due, else waits for the next finish or for
the moment a finished call has waited long enough. A write makes its batches ready when it ends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from dataclasses import dataclass

from airflow_provider_juhe.sending.dispatch import DispatchState, LedgerWrite, Outcome
from airflow_provider_juhe.sending.ledger import ANNOUNCED, InMemoryStateStore, SendLedger
from airflow_provider_juhe.sending.plan import Batch

LOG = logging.getLogger(__name__)


@dataclass
class Result:
    """How one simulated send went."""

    calls: int
    #: Calls per second over the middle 80 % of the send (ramp-up and the last round left out),
    #: as a fraction of ``W / L``.
    of_ideal: float
    #: Most batches the ledger ever showed announced and not settled, and the bound.
    most_announced: int
    bound: int
    writes: int

    @property
    def writes_per_1000_calls(self) -> float:
        return 1000 * self.writes / self.calls


def simulate(
    workers: int,
    write_seconds: float,
    latency: float,
    sigma: float = 0.0,
    calls: int = 4000,
    seed: int = 1,
) -> Result:
    """
    Send ``calls`` one-number batches at ``workers`` calls in flight.

    :param write_seconds: each ledger write's duration.
    :param latency: the calls' mean duration.
    :param sigma: lognormal spread of the call times (the log's standard deviation); 0: every call
        takes ``latency``.
    """
    rng = random.Random(seed)
    mu = math.log(latency) - sigma * sigma / 2  # a lognormal whose mean is ``latency``

    def call_time() -> float:
        return rng.lognormvariate(mu, sigma) if sigma else latency

    store = InMemoryStateStore()
    ledger = SendLedger(store, LOG)
    ledger.load(calls, replayed=False)
    state = DispatchState([Batch(i, 7, (f"138{i:08d}",)) for i in range(calls)], workers)
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    now = 0.0
    idle = workers
    writing: LedgerWrite | None = None
    wake_at: float | None = None
    finish_times: list[float] = []
    most_announced = 0

    def at(when: float, kind: str, payload: object = None) -> None:
        heapq.heappush(events, (when, next(order), kind, payload))

    def start(batch: Batch) -> None:
        assert ledger.status[batch.index] == ord(ANNOUNCED), "a call started before its announcement"
        seconds = call_time()
        at(now + seconds, "finish", (batch, seconds))

    def writer_looks() -> None:
        nonlocal writing, wake_at
        if writing is not None:
            return
        if not state.write_due(now):
            wake = now + state.due_in(now)
            if wake_at is None or wake < wake_at or wake_at <= now:
                wake_at = wake
                at(wake, "wake")
            return
        writing = state.next_write(stopping=False)
        if writing is not None:
            at(now + write_seconds, "written", writing)

    at(0.0, "wake")
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "finish":
            batch, seconds = payload  # type: ignore[misc]
            state.finish(batch, Outcome("sent", sid=f"sid-{batch.index}", fee=1), seconds, now)
            finish_times.append(now)
            following = state.take()
            if following is None:
                idle += 1
            else:
                start(following)
        elif kind == "written":
            assert payload is writing
            ledger.write(*writing.ledger_updates())
            announced = ledger.status.count(ord(ANNOUNCED))
            assert announced <= state.bound, f"{announced} batches announced and unsettled"
            most_announced = max(most_announced, announced)
            state.written(writing, write_seconds)
            writing = None
            while idle and (batch := state.take()) is not None:
                idle -= 1
                start(batch)
        assert state.unsettled <= state.bound
        writer_looks()
    assert state.done(stopping=False)
    assert writing is None
    assert ledger.status.decode() == "s" * calls, "every call settled as sent"
    first, last = finish_times[calls // 10], finish_times[calls - calls // 10 - 1]
    rate = (calls - 2 * (calls // 10) - 1) / (last - first)
    return Result(calls, rate / (workers / latency), most_announced, state.bound, state.writes)
