"""Sending planned batches concurrently, at most once across task retries."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from airflow_provider_juhe.exceptions import (
    JuheApiError,
    JuheAuthError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.send_plan import Batch, SendSummary

#: Batches per ledger record, at least: bounds store writes to about three per this many batches.
MIN_CHUNK_BATCHES = 16
#: A progress write of a chunk's record happens at most this often (besides write-ahead and settle).
PROGRESS_WRITE_INTERVAL = 1.0


class StateStore(Protocol):
    """What the ledger needs of ``context["task_state_store"]``."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class InMemoryStateStore(dict):
    """A state store for runs without ``task_state_store`` (it does not survive task retries)."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


@dataclass
class Chunk:
    """
    Consecutive batches sharing one ledger record: ``{"in_flight": [keys], "sent": {key: [sid, fee]}}``.

    One store write marks all of a chunk's batches in flight before the first of them starts, one
    settles them when the last returns: state-store writes are round trips to the API server, too
    slow to make two per batch.
    """

    batches: list[Batch]
    in_flight: set[str] = field(default_factory=set)
    sent: dict[str, list[Any]] = field(default_factory=dict)
    running: int = 0

    @cached_property
    def key(self) -> str:
        digest = hashlib.sha1(",".join(b.key for b in self.batches).encode()).hexdigest()[:20]
        return f"juhe_send_{digest}"

    def record(self) -> dict[str, Any]:
        return {"in_flight": sorted(self.in_flight), "sent": self.sent}


class SendLedger:
    """
    Write-ahead record of batches in the task-instance state store, which survives task retries.

    A batch is marked in flight before its call; after it, a sent batch is settled with its sid and a
    batch that surely failed is cleared (a later try may send it). A batch still marked in flight when
    a try died may have gone out: later tries report it unknown and never send it again.
    """

    def __init__(self, store: StateStore | None, log: logging.Logger, *, first_try: bool = False) -> None:
        self._first_try = first_try  # nothing to read back: saves a store round trip per chunk
        if store is None:
            log.warning("No task_state_store in the context: batches cannot be tracked across task retries")
            store = InMemoryStateStore()
        self._store = store
        self._last_write = 0.0

    def open(self, batches: list[Batch]) -> Chunk:
        chunk = Chunk(batches)
        previous = {} if self._first_try else (self._store.get(chunk.key, None) or {})
        chunk.in_flight = set(previous.get("in_flight", ()))
        chunk.sent = dict(previous.get("sent", {}))
        return chunk

    def write(self, chunk: Chunk) -> None:
        self._store.set(chunk.key, chunk.record())
        self._last_write = time.monotonic()

    def write_progress(self, chunk: Chunk) -> None:
        """Settle finished batches early, so a crash reports fewer of them unknown; rate-limited."""
        if time.monotonic() - self._last_write >= PROGRESS_WRITE_INTERVAL:
            self.write(chunk)


def send_batches(
    hook: JuheSmsHook,
    batches: list[Batch],
    tpl_value: Any,
    summary: SendSummary,
    ledger: SendLedger,
    max_workers: int,
    log: logging.Logger,
) -> JuheAuthError | None:
    """
    Send every batch not settled by an earlier try, up to ``max_workers`` calls at once.

    Ledger writes happen on this thread only. Every batch ends in ``summary``. On an auth error no
    further batch is started and the error is returned; the batches not started are recorded as
    failed with its code.
    """
    chunk_size = max(2 * max_workers, MIN_CHUNK_BATCHES)
    chunks = iter(batches[start : start + chunk_size] for start in range(0, len(batches), chunk_size))
    running: dict[Future, tuple[Batch, Chunk]] = {}
    auth_error: JuheAuthError | None = None
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="juhe-send")
    try:
        while True:
            # Open the next chunk only when the pool would otherwise run dry: few chunks in flight at once.
            while auth_error is None and len(running) < max_workers:
                opened = next(chunks, None)
                if opened is None:
                    break
                chunk = ledger.open(opened)
                pending = _resume(chunk, summary, log)
                if pending:
                    chunk.in_flight.update(b.key for b in pending)
                    ledger.write(chunk)  # write-ahead: before any of these calls starts
                for batch in pending:
                    future = pool.submit(hook.send_sms, list(batch.mobiles), batch.tpl_id, tpl_value)
                    running[future] = (batch, chunk)
                    chunk.running += 1
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                batch, chunk = running.pop(future)
                chunk.running -= 1
                if future.cancelled():  # only after an auth error: never started, surely not sent
                    assert auth_error is not None
                    chunk.in_flight.discard(batch.key)
                    summary.record_failed(batch, auth_error.error_code, auth_error.reason)
                else:
                    error = _settle(future, batch, chunk, summary, log)
                    if isinstance(error, JuheAuthError) and auth_error is None:
                        auth_error = error
                        for queued in running:
                            queued.cancel()
                if chunk.running == 0:
                    ledger.write(chunk)
                else:
                    ledger.write_progress(chunk)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if auth_error is not None:
        for unopened in chunks:
            for batch in unopened:
                summary.record_failed(batch, auth_error.error_code, auth_error.reason)
    return auth_error


def _resume(chunk: Chunk, summary: SendSummary, log: logging.Logger) -> list[Batch]:
    """Account for batches an earlier try settled or left in flight; return those still to send."""
    pending = []
    for batch in chunk.batches:
        if batch.key in chunk.sent:
            sid, fee = chunk.sent[batch.key]
            log.info("Batch %s was sent by an earlier try (sid %s): not sending again", batch.key, sid)
            summary.record_sent(batch, sid, fee)
        elif batch.key in chunk.in_flight:
            log.warning("Batch %s was in flight when an earlier try ended: reported unknown", batch.key)
            summary.record_unknown(batch)
        else:
            pending.append(batch)
    return pending


def _settle(
    future: Future, batch: Batch, chunk: Chunk, summary: SendSummary, log: logging.Logger
) -> BaseException | None:
    """Record one finished call; the batch stays in flight in the ledger when its outcome is unknown."""
    error = future.exception()
    if error is None:
        result = future.result()
        chunk.sent[batch.key] = [result["sid"], result["fee"]]
        chunk.in_flight.discard(batch.key)
        summary.record_sent(batch, result["sid"], result["fee"])
    elif isinstance(error, (JuheApiError, JuheConnectionError)):  # an answer, or a request that never left
        chunk.in_flight.discard(batch.key)
        if isinstance(error, JuheApiError):
            summary.record_failed(batch, error.error_code, error.reason)
        else:
            summary.record_failed(batch, None, str(error))
    else:  # JuheDeliveryUnknownError, an HTTP error page, or anything unexpected: it may have gone out
        level = logging.WARNING if isinstance(error, JuheDeliveryUnknownError) else logging.ERROR
        log.log(
            level, "Outcome of batch %s (%d numbers) is unknown: %s", batch.key, len(batch.mobiles), error
        )
        summary.record_unknown(batch)
    return error
