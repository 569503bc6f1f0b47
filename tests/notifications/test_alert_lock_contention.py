"""
The alert lock's liveness under a storm, against a model of a loaded API server: one worker that
serves each Variable call in turn, plus random stalls on the way. The server's times are scaled
down, and the lock's follow the latency it measures, so a storm of 20 notifications takes seconds.

Found in the Celery tier: polling a busy lock as fast as possible saturated such a server, every
token write then came later than ``WRITE_WITHIN_SECONDS`` and left a lease behind, and in 120 s
(scaled) 2 of 20 entered. With the lock kept inside the record, a token write that landed late
carried the record as it was read, and overwrote a holder's update (19 of 20 counted).
"""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from airflow_provider_juhe import variables
from airflow_provider_juhe.alerting import state
from airflow_provider_juhe.alerting.variable_store import NO_EXPIRY, Latency, VariableStore

pytestmark = pytest.mark.real_locks  # the lock's own times, from the latency it measures

SCALE = 0.05  # every time of the server below is 1/20 of the real one


class LoadedServer:
    """Variables behind one worker that takes ``service`` seconds a call; ``stall`` of legs stall."""

    def __init__(self, service: float, stall: float, seed: int) -> None:
        self.service, self.stall = service, stall
        self.random = random.Random(seed)
        self.worker = threading.Lock()
        self.values: dict[str, str] = {}
        self.calls = 0

    def _leg(self) -> None:
        with self.worker:
            delay = self.random.uniform(0.005, 0.02) * SCALE
            if self.random.random() < self.stall:
                delay += self.random.uniform(0.3, 1.5) * SCALE
        time.sleep(delay)

    def _serve(self, action):
        self._leg()
        with self.worker:
            time.sleep(self.service)
            self.calls += 1
            result = action()
        self._leg()
        return result

    def read(self, key: str):
        value = self._serve(lambda: self.values.get(key))
        return json.loads(value) if value else None

    def write(self, key: str, record: dict, description: str) -> None:
        self._serve(lambda: self.values.__setitem__(key, json.dumps(record)))


@pytest.fixture
def loaded_server(monkeypatch):
    def install(service: float, stall: float, seed: int) -> LoadedServer:
        server = LoadedServer(service * SCALE, stall, seed)
        monkeypatch.setattr(variables, "read", server.read)
        monkeypatch.setattr(variables, "write", server.write)
        return server

    return install


def _storm(notifications: int, wait: float = 30.0) -> list[BaseException]:
    """Each notification adds one to a count under the lock, on a thread of its own, arriving over 3 s (scaled)."""
    errors: list[BaseException] = []
    store = VariableStore(Latency())  # the threads share one process's latency, as callbacks would

    def notify() -> None:
        try:
            store.update(
                "juhe_sms_alert_x",
                lambda r: ({"n": (r or {}).get("n", 0) + 1}, None),
                ttl=NO_EXPIRY,
                deadline=time.monotonic() + wait,
                description="count",
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=notify) for _ in range(notifications)]
    for thread in threads:
        thread.start()
        time.sleep(0.15 * SCALE)
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize(
    ("service", "stall", "seed"),
    [(0.03, 0.05, 1), (0.05, 0.1, 3)],
    ids=["30ms", "50ms-stalls"],
)
def test_a_storm_on_a_loaded_server_loses_no_count(loaded_server, service, stall, seed):
    """20 racing notifications on a server whose calls take 30–50 ms plus stalls: all 20 enter."""
    server = loaded_server(service, stall, seed)

    assert _storm(20) == []

    assert server.read("juhe_sms_alert_x")["n"] == 20


def test_an_overloaded_server_costs_counts_never_a_lost_update(loaded_server):
    """
    At 100 ms a call with a fifth of the legs stalling, some notifications give up waiting: each
    says so (LockBusy), and every one that returned is counted exactly once.
    """
    server = loaded_server(0.1, 0.2, 4)

    gave_up = _storm(20, wait=3.0)

    assert all(isinstance(error, state.LockBusy) for error in gave_up)
    assert server.read("juhe_sms_alert_x")["n"] == 20 - len(gave_up) > 0


def test_an_update_whose_lease_ran_out_is_decided_again_not_dropped(loaded_server, monkeypatch):
    """
    Found by review: alone on a slow server, a record read that outlasted the lease raised LockBusy,
    and the episode's first alert was neither sent nor counted. It is decided again under the lock.
    """
    server = loaded_server(0.0, 0.0, 5)
    reads = []

    def slow_first_record_read(key):
        if key == "juhe_sms_alert_x":
            reads.append(key)
            if len(reads) == 1:
                time.sleep(Latency().lease)
        return server.read(key)

    monkeypatch.setattr(variables, "read", slow_first_record_read)

    assert _storm(1) == []

    assert server.read("juhe_sms_alert_x")["n"] == 1
    assert len(reads) == 2
