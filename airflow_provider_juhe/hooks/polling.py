"""
Waiting on Juhe by polling it (the template-approval sensor and its trigger): the floor on the poll
interval, and how long a run of transient read failures is tolerated before the wait fails.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

from airflow_provider_juhe.exceptions import JuheError

#: The shortest poll interval, in seconds: a shorter one is raised to it (with a warning).
MIN_POLL_SECONDS = 1.0
#: A run of transient read failures shorter than this never ends a wait; a longer one fails it.
OUTAGE_SECONDS = 60.0
#: The first wait after a failed read; it doubles with each failure in a row, up to the longest.
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 15.0


def poll_interval(seconds: float, warn: Callable[[str], None]) -> float:
    """``seconds``, raised to :data:`MIN_POLL_SECONDS` (saying so through ``warn``) when below it."""
    if seconds < MIN_POLL_SECONDS:
        warn(
            f"poll interval {seconds:g} s is below the floor of {MIN_POLL_SECONDS:g} s: polling every "
            f"{MIN_POLL_SECONDS:g} s instead (each poll is a call to Juhe's template list)"
        )
        return MIN_POLL_SECONDS
    return seconds


class ReadOutage:
    """
    Transient read failures in a row, tolerated for :data:`OUTAGE_SECONDS` with backoff.

    :param clock: monotonic seconds (default :func:`time.monotonic`, looked up when built).
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or monotonic
        self._since: float | None = None
        self._failures = 0

    def failed(self, error: JuheError) -> float:
        """
        Note a failed read; return how long to wait before the next one.

        :raises JuheError: the failure is final (re-raised as it is), or failures in a row have lasted
            :data:`OUTAGE_SECONDS`: retryable, naming the cause.
        """
        if error.final:
            raise error
        now = self._clock()
        if self._since is None:
            self._since = now
        self._failures += 1
        lasted = now - self._since
        if lasted >= OUTAGE_SECONDS:
            raise JuheError(
                f"Juhe's template list could not be read for {lasted:.0f} s ({self._failures} attempts in a "
                f"row; transient failures are tolerated for {OUTAGE_SECONDS:g} s). Last cause: {error}"
            ) from error
        wait = min(FIRST_RETRY_SECONDS * 2.0 ** (self._failures - 1), LONGEST_RETRY_SECONDS)
        return max(0.0, min(wait, OUTAGE_SECONDS - lasted))

    def succeeded(self) -> None:
        """A read went through: the run of failures is over."""
        self._since = None
        self._failures = 0
