"""Sending planned batches concurrently, at most once across task retries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from airflow_provider_juhe.exceptions import (
    JuheApiError,
    JuheAuthError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.send_plan import Batch, SendSummary

IN_FLIGHT = "in_flight"
SENT = "sent"


class StateStore(Protocol):
    """What the ledger needs of ``context["task_state_store"]``."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class InMemoryStateStore(dict):
    """A state store for runs without ``task_state_store`` (it does not survive task retries)."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


class SendLedger:
    """
    Write-ahead record of batches in the task-instance state store, which survives task retries.

    Before its call a batch is marked in flight; after it, a sent batch is settled with its sid and a
    batch that surely failed is erased (a later try may send it). A batch still in flight when a try
    died may have gone out: later tries report it unknown and never send it again.
    """

    def __init__(self, store: StateStore | None, log: logging.Logger) -> None:
        if store is None:
            log.warning("No task_state_store in the context: batches cannot be tracked across task retries")
            store = InMemoryStateStore()
        self._store = store

    def previous(self, batch: Batch) -> dict[str, Any] | None:
        return self._store.get(batch.key, None)

    def write_ahead(self, batch: Batch) -> None:
        self._store.set(batch.key, {"state": IN_FLIGHT})

    def settle_sent(self, batch: Batch, sid: str, fee: int) -> None:
        self._store.set(batch.key, {"state": SENT, "sid": sid, "fee": fee})

    def settle_failed(self, batch: Batch) -> None:
        self._store.delete(batch.key)


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

    Ledger writes happen on this thread only, before a batch is handed to a worker and after its call
    returns. Every batch ends in ``summary``. On an auth error no further batch is started and the
    error is returned, the untried batches recorded as failed with its code.
    """
    pending = iter(_not_yet_sent(batches, summary, ledger, log))
    auth_error: JuheAuthError | None = None
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="juhe-send") as pool:
        in_flight: dict[Future, Batch] = {}

        def start_next() -> bool:
            batch = next(pending, None)
            if batch is None:
                return False
            ledger.write_ahead(batch)
            in_flight[pool.submit(hook.send_sms, list(batch.mobiles), batch.tpl_id, tpl_value)] = batch
            return True

        while len(in_flight) < max_workers and start_next():
            pass
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                batch = in_flight.pop(future)
                error = _settle(future, batch, summary, ledger, log)
                if isinstance(error, JuheAuthError):
                    auth_error = auth_error or error
                if auth_error is None:
                    start_next()
    if auth_error is not None:
        for batch in pending:
            summary.record_failed(batch, auth_error.error_code, auth_error.reason)
    return auth_error


def _not_yet_sent(
    batches: list[Batch], summary: SendSummary, ledger: SendLedger, log: logging.Logger
) -> Iterator[Batch]:
    for batch in batches:
        previous = ledger.previous(batch)
        if previous is None:
            yield batch
        elif previous.get("state") == SENT:
            log.info(
                "Batch %s was sent by an earlier try (sid %s): not sending again", batch.key, previous["sid"]
            )
            summary.record_sent(batch, previous["sid"], previous["fee"])
        else:
            log.warning("Batch %s was in flight when an earlier try ended: reported unknown", batch.key)
            summary.record_unknown(batch)


def _settle(
    future: Future, batch: Batch, summary: SendSummary, ledger: SendLedger, log: logging.Logger
) -> BaseException | None:
    """Record one finished call; the ledger entry stays in flight when the outcome is unknown."""
    error = future.exception()
    if error is None:
        result = future.result()
        ledger.settle_sent(batch, result["sid"], result["fee"])
        summary.record_sent(batch, result["sid"], result["fee"])
    elif isinstance(error, JuheApiError):
        ledger.settle_failed(batch)
        summary.record_failed(batch, error.error_code, error.reason)
    elif isinstance(error, JuheConnectionError):  # the request never left: surely not sent
        ledger.settle_failed(batch)
        summary.record_failed(batch, None, str(error))
    else:  # JuheDeliveryUnknownError, an HTTP error page, or anything unexpected: it may have gone out
        level = logging.WARNING if isinstance(error, JuheDeliveryUnknownError) else logging.ERROR
        log.log(
            level, "Outcome of batch %s (%d numbers) is unknown: %s", batch.key, len(batch.mobiles), error
        )
        summary.record_unknown(batch)
    return error
