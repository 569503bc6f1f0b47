"""A thread-safe pacer for API calls: a fixed rate, slowed down when Juhe answers 10011."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Pace adopted on the first 10011 when no rate was configured.
FIRST_SLOW_DOWN_INTERVAL = 0.1
#: Never slower than one call per this many seconds.
SLOWEST_INTERVAL = 2.0


class RateLimiter:
    """
    Spaces calls at least ``1 / calls_per_second`` apart across threads.

    :param calls_per_second: the most calls per second, or ``None`` for no limit until :meth:`slow_down`.
    :param clock: monotonic clock (injectable for tests).
    :param sleep: how to wait (injectable for tests).
    """

    def __init__(
        self,
        calls_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / calls_per_second if calls_per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller's slot comes."""
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def slow_down(self) -> None:
        """Halve the rate (Juhe said 10011: too many requests from this IP)."""
        with self._lock:
            self.interval = min(
                SLOWEST_INTERVAL, self.interval * 2 if self.interval else FIRST_SLOW_DOWN_INTERVAL
            )
