"""
The send window holds under pacing, concurrency and backoff: no call starts after the window closes.

Each worker thread runs on its own virtual clock, moved by its pacer waits, its retries' backoff and
its calls' latency (the pacer's slots are shared, as the real pacer's are): a whole send takes
milliseconds of real time, and a request starting after the close is seen exactly, on the clock of
the thread that starts it. Threads other than the workers see the latest time any worker reached.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading

import pendulum
import pytest

from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.hooks.rate_limit import RateLimiter
from airflow_provider_juhe.sending import campaign
from airflow_provider_juhe.sending.campaign import Campaign, Finished, SendRequest, WaitUntil
from airflow_provider_juhe.sending.ledger import InMemoryStateStore
from airflow_provider_juhe.sending.window import SendWindow

BASE = "http://juhe.test"
WINDOW = ("08:00", "21:00")  # Asia/Shanghai: closes at 13:00:00 UTC
CLOSE = pendulum.datetime(2026, 12, 7, 13, 0, 0, tz="UTC").timestamp()
LATENCY = 0.05
log = logging.getLogger(__name__)


class VirtualTime:
    def __init__(self, start: float) -> None:
        self.latest = start
        self._local = threading.local()
        self._lock = threading.Lock()

    def now(self) -> float:
        if not threading.current_thread().name.startswith("juhe-send-"):
            return self.latest
        if not hasattr(self._local, "t"):  # a worker's clock starts where the others have got to
            self._local.t = self.latest
        return self._local.t

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        moment = self.now() + seconds
        if threading.current_thread().name.startswith("juhe-send-"):
            self._local.t = moment
        with self._lock:
            self.latest = max(self.latest, moment)


class FakeJuhe:
    """send.php over requests-mock: the moment each request starts, transient refusals first."""

    def __init__(self, clock: VirtualTime, refusals_per_call: int) -> None:
        self.clock = clock
        self.refusals_per_call = refusals_per_call
        self.starts: list[tuple[float, list[str], bool]] = []  # (moment, numbers, answered success)
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sids = itertools.count(1)

    def __call__(self, request, context):
        form = dict(pair.split("=", 1) for pair in request.text.split("&"))
        numbers = form["mobile"].replace("%2C", ",").split(",")
        with self._lock:
            attempt = self._attempts.get(form["mobile"], 0)
            self._attempts[form["mobile"]] = attempt + 1
            refuse = attempt < self.refusals_per_call
            self.starts.append((self.clock.now(), numbers, not refuse))
        self.clock.advance(LATENCY)
        if refuse:  # surely not sent: the hook retries it after its backoff
            return json.dumps({"error_code": 222800, "reason": "网络错误", "result": None})
        return json.dumps(
            {"error_code": 0, "reason": "ok", "result": {"sid": str(next(self._sids)), "fee": 1}}
        )


@pytest.fixture
def connection(monkeypatch):
    def make(rate: float | None) -> None:
        extra = {"max_retries": 3, **({"max_calls_per_second": rate} if rate else {})}
        monkeypatch.setenv(
            "AIRFLOW_CONN_JUHE_SMS_DEFAULT",
            json.dumps({"conn_type": "juhe_sms", "host": BASE, "password": "k", "extra": extra}),
        )

    return make


def send(requests_mock, monkeypatch, *, rate, workers, backoff, starts_before_close, numbers=9, store=None):
    clock = VirtualTime(CLOSE - starts_before_close)
    monkeypatch.setattr(campaign, "now", lambda: pendulum.from_timestamp(clock.now(), "UTC"))
    juhe = FakeJuhe(clock, refusals_per_call=1 if backoff else 0)
    requests_mock.post(f"{BASE}/shortLetter/send.php", text=juhe)
    requests_mock.post(
        f"{BASE}/shortLetter/myTemplates.php",
        text=json.dumps({"error_code": 0, "reason": "ok", "result": {"templates": []}}),
    )
    hook = JuheSmsHook(retry_wait=backoff or 0.0, retry_wait_max=8.0, sleep=clock.sleep)
    hook._limiter = RateLimiter(rate, clock=clock.now, sleep=clock.sleep)
    request = SendRequest(
        mobiles=[f"1390000{n:04d}" for n in range(numbers)],
        tpl_id=1,
        batch_size=1,
        max_workers=workers,
        send_window=WINDOW,
    )
    outcome = Campaign(request, hook, store if store is not None else InMemoryStateStore(), log).run()
    return juhe, outcome


@pytest.mark.parametrize("starts_before_close", [0.3, 3.0, 10.0])
@pytest.mark.parametrize("backoff", [0.0, 0.4, 2.0])
@pytest.mark.parametrize("workers", [1, 2, 8])
@pytest.mark.parametrize("rate", [None, 0.5, 2.0, 20.0])
def test_no_call_starts_after_the_window_closes(
    connection, requests_mock, monkeypatch, rate, workers, backoff, starts_before_close
):
    """Before: with max_calls_per_second=0.5, 8 workers and 3 s left, 8 of 9 calls started after the close."""
    connection(rate)

    juhe, outcome = send(
        requests_mock,
        monkeypatch,
        rate=rate,
        workers=workers,
        backoff=backoff,
        starts_before_close=starts_before_close,
    )

    late = [moment - CLOSE for moment, _, _ in juhe.starts if moment >= CLOSE]
    assert late == [], (
        f"{len(late)} of {len(juhe.starts)} call(s) started after the close, up to {max(late):.1f} s"
    )
    sent = {number for _, numbers, ok in juhe.starts if ok for number in numbers}
    if isinstance(outcome, WaitUntil):  # the rest is left for the next opening, not failed nor unknown
        assert len(sent) + outcome.numbers_left == 9
        assert outcome.moment == SendWindow.parse(WINDOW, "Asia/Shanghai").next_opening(
            pendulum.from_timestamp(CLOSE, "UTC")
        )
    else:
        assert outcome.result["sent"] == 9
        assert outcome.result["failed_count"] == outcome.result["unknown_count"] == 0


def test_batches_stopped_by_the_close_are_sent_at_the_next_opening_and_none_twice(
    connection, requests_mock, monkeypatch
):
    connection(0.5)
    store = InMemoryStateStore()

    first, wait = send(
        requests_mock, monkeypatch, rate=0.5, workers=8, backoff=0.4, starts_before_close=3.0, store=store
    )
    assert isinstance(wait, WaitUntil)
    sent_first = [n for _, numbers, ok in first.starts if ok for n in numbers]
    # the next morning, 08:00 Shanghai: the deferral resumes
    later, finished = send(
        requests_mock,
        monkeypatch,
        rate=0.5,
        workers=8,
        backoff=0.4,
        starts_before_close=-11 * 3600,
        store=store,
    )

    assert isinstance(finished, Finished)
    sent_later = [n for _, numbers, ok in later.starts if ok for n in numbers]
    assert sorted(sent_first + sent_later) == [f"1390000{n:04d}" for n in range(9)]
    assert finished.result["sent"] == 9
    assert finished.result["unknown_count"] == finished.result["failed_count"] == 0
