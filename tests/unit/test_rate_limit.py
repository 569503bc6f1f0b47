from __future__ import annotations

from airflow_provider_juhe.hooks.rate_limit import FIRST_SLOW_DOWN_INTERVAL, SLOWEST_INTERVAL, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))


def test_no_limit_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        limiter.wait()

    assert clock.slept == []


def test_spaces_calls_at_the_configured_rate():
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)

    for _ in range(4):
        limiter.wait()

    assert clock.slept == [0.25, 0.5, 0.75]


def test_slow_down_starts_pacing_and_doubles_up_to_a_bound():
    limiter = RateLimiter(None)

    limiter.slow_down()
    assert limiter.interval == FIRST_SLOW_DOWN_INTERVAL
    for _ in range(10):
        limiter.slow_down()
    assert limiter.interval == SLOWEST_INTERVAL
