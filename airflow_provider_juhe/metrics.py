"""
Counters and timers through Airflow's stats client, under the ``juhe.`` prefix.

A metric is never worth a failed send or a silenced page: a stats client that fails is ignored.
The names (each prefixed ``juhe.``):

- ``sms.sent``, ``sms.failed``, ``sms.unknown``, ``sms.suppressed``, ``sms.invalid``: numbers of a send;
- ``alert.sent``, ``alert.grouped``, ``alert.capped``, ``alert.state_skipped``: notifications;
- ``call.latency`` (timer, ms), tagged with the call's name (``send``, ``templates``, ``group``, ``submit``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

log = logging.getLogger(__name__)

PREFIX = "juhe."


def incr(name: str, count: int = 1, *, tags: dict[str, str] | None = None) -> None:
    """
    Add ``count`` to the counter ``juhe.<name>`` (nothing when ``count`` is 0).

    :param name: the counter's name after the prefix, e.g. ``"sms.sent"``.
    :param count: how much to add.
    :param tags: tags for clients that take them (OpenTelemetry, tagged StatsD).
    """
    if not count:
        return
    try:
        from airflow_provider_juhe._compat import stats_client

        stats_client().incr(PREFIX + name, count, tags=tags)
    except Exception:  # the stats client is best effort
        log.debug("metric %s not emitted", name, exc_info=True)


def timing(name: str, seconds: float, *, tags: dict[str, str] | None = None) -> None:
    """
    Record ``seconds`` on the timer ``juhe.<name>``.

    :param name: the timer's name after the prefix, e.g. ``"call.latency"``.
    :param seconds: the duration.
    :param tags: tags for clients that take them.
    """
    try:
        from airflow_provider_juhe._compat import stats_client

        stats_client().timing(PREFIX + name, timedelta(seconds=seconds), tags=tags)
    except Exception:
        log.debug("metric %s not emitted", name, exc_info=True)
