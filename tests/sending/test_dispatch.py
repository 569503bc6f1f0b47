"""The dispatcher's write-ahead bound, with a state store that dies mid-send as a killed worker's would."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from airflow_provider_juhe.sending.dispatch import Dispatcher, Outcome
from airflow_provider_juhe.sending.ledger import InMemoryStateStore, SendLedger
from airflow_provider_juhe.sending.plan import Batch

LOG = logging.getLogger(__name__)


class Killed(BaseException):
    """The process died: nothing after it runs, nothing more reaches the store."""


class DyingStore(InMemoryStateStore):
    """Keeps JSON copies, as the real store does; dies at its ``die_at``-th write."""

    def __init__(self, die_at: int | None = None) -> None:
        super().__init__()
        self.die_at = die_at
        self.writes = 0
        self.most_open = 0

    def set(self, key, value):
        if self.die_at is not None and self.writes + 1 >= self.die_at:
            raise Killed
        super().set(key, json.loads(json.dumps(value)))
        self.writes += 1
        opened = sum(v["status"].count("a") for k, v in self.items() if k.startswith("juhe_batches_"))
        self.most_open = max(self.most_open, opened)


def batches(count: int) -> list[Batch]:
    return [Batch(i, 7, (f"138{i:08d}",)) for i in range(count)]


def run(store: DyingStore, plan: list[Batch], workers: int, fail: set[int] = frozenset()):
    started: list[int] = []
    lock = threading.Lock()

    def send(batch: Batch) -> Outcome:
        with lock:
            started.append(batch.index)
        time.sleep(0.002)
        if batch.index in fail:
            return Outcome("failed", error_code=228806, reason="rejected")
        return Outcome("sent", sid=f"sid-{batch.index}", fee=1)

    ledger = SendLedger(store, LOG)
    ledger.load(len(plan), replayed=False)
    outcomes = []
    dispatcher = Dispatcher(send, ledger, workers, lambda b, o: outcomes.append((b.index, o.status)), LOG)
    return dispatcher, dispatcher.run(plan), started, outcomes


@pytest.mark.parametrize("workers", [1, 4, 8])
def test_every_batch_sent_once_and_at_most_two_per_worker_open(workers):
    store = DyingStore()
    plan = batches(200)

    _, not_started, started, outcomes = run(store, plan, workers)

    assert not_started == []
    assert sorted(started) == list(range(200))
    assert sorted(index for index, _ in outcomes) == list(range(200))
    assert store.most_open <= 2 * workers
    ledger = SendLedger(store, LOG)
    ledger.load(200, replayed=True)
    assert ledger.status.decode() == "s" * 200
    assert ledger.sent(123) == ("sid-123", 1)


@pytest.mark.parametrize(("workers", "die_at"), [(1, 5), (4, 9), (8, 13), (8, 40)])
def test_after_a_death_only_announced_batches_may_have_started(workers, die_at):
    store = DyingStore(die_at=die_at)
    plan = batches(1000)

    with pytest.raises(Killed):
        run(store, plan, workers)

    ledger = SendLedger(store, LOG)
    ledger.load(1000, replayed=True)
    status = ledger.status.decode()
    may_have_started = [i for i, s in enumerate(status) if s in "au"]
    assert 0 < len(may_have_started) <= 2 * workers
    assert "." in status  # the rest is known never to have started: a retry sends it


def test_failed_batches_are_left_for_a_retry():
    store = DyingStore()

    _, not_started, _, outcomes = run(store, batches(20), 4, fail={3, 17})

    assert not_started == []
    assert sorted(i for i, status in outcomes if status == "failed") == [3, 17]
    ledger = SendLedger(store, LOG)
    ledger.load(20, replayed=True)
    assert [i for i, s in enumerate(ledger.status.decode()) if s == "."] == [3, 17]


def test_a_stop_starts_no_further_call_and_releases_the_announced_ones():
    store = DyingStore()
    plan = batches(50)
    started: list[int] = []

    def send(batch: Batch) -> Outcome:
        started.append(batch.index)
        if batch.index == 2:
            return Outcome("failed", error_code=10001, reason="bad key", stop=True)
        return Outcome("sent", sid="s", fee=1)

    ledger = SendLedger(store, LOG)
    ledger.load(50, replayed=False)
    dispatcher = Dispatcher(send, ledger, 1, lambda b, o: None, LOG)

    not_started = dispatcher.run(plan)

    assert started == [0, 1, 2]
    assert [b.index for b in not_started] == list(range(3, 50))
    assert dispatcher.stop_outcome.error_code == 10001
    reloaded = SendLedger(store, LOG)
    reloaded.load(50, replayed=True)
    assert reloaded.status.decode() == "ss" + "." * 48  # nothing left announced: a later try may send it
