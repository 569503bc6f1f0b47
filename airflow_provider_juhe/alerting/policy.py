"""
What an alert may send, decided from remembered state: pure functions over plain JSON records.

An **episode** (one per group key) is open from its first alert until a recovery closes it. Within
``repeat_interval`` of the last SMS, further alerts send nothing and are counted; the next SMS shows
the count. **Caps** (one record per template) remember, per number, when it was last paged and how
many pages were skipped, so that carriers' per-number limits are never reached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

#: The rolling windows ``max_per_number`` may cap, in seconds.
CAP_WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Decision:
    """Whether to send, the count of notifications held back before it, and the state to store."""

    send: bool
    suppressed_count: int
    state: dict[str, Any]


def decide_alert(state: Mapping[str, Any] | None, now: float, repeat_interval: timedelta | None) -> Decision:
    """An alert for an episode: send unless the episode's last SMS is younger than ``repeat_interval``."""
    state = dict(state or {})
    last_sent = state.get("last_sent")
    if (
        repeat_interval is not None
        and state.get("open")
        and last_sent is not None
        and now - last_sent < repeat_interval.total_seconds()
    ):
        return Decision(False, 0, {**state, "suppressed": state.get("suppressed", 0) + 1})
    opened = state.get("opened") if state.get("open") else now
    return Decision(
        True, state.get("suppressed", 0), {"open": True, "opened": opened, "last_sent": now, "suppressed": 0}
    )


def decide_resolve(state: Mapping[str, Any] | None, now: float) -> Decision:
    """A recovery: send only while an episode is open (an alert went out and was not resolved), then close it."""
    state = dict(state or {})
    if not state.get("open"):
        return Decision(False, 0, state)
    return Decision(True, state.get("suppressed", 0), {"open": False, "resolved": now, "suppressed": 0})


def number_id(number: str) -> str:
    """Caps are stored under a digest of the number: Variables are shown in the UI, numbers are personal."""
    return hashlib.sha256(number.encode()).hexdigest()[:16]


def check_caps(limits: Mapping[str, int]) -> dict[str, int]:
    """
    ``max_per_number`` as given, checked: a mapping, keys among minute/hour/day, values positive integers.

    :raises ValueError: naming ``max_per_number`` (``["minute"]`` or ``"minute"`` is not a mapping).
    """
    if not isinstance(limits, Mapping):
        raise ValueError(
            f"max_per_number: expected a mapping such as {{'minute': 1, 'hour': 5}}, "
            f"got {type(limits).__name__} {limits!r}"
        )
    unknown = sorted(
        repr(window) for window in limits if not isinstance(window, str) or window not in CAP_WINDOWS
    )
    if unknown:
        raise ValueError(
            f"max_per_number: unknown window(s) {', '.join(unknown)}; use {', '.join(map(repr, CAP_WINDOWS))}"
        )
    for window, count in limits.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"max_per_number[{window!r}] must be a positive integer, not {count!r}")
    return dict(limits)


@dataclass(frozen=True)
class Admission:
    """Numbers that may be paged now (each with the pages skipped for it since its last), those refused."""

    allowed: dict[str, int]
    refused: list[str]
    state: dict[str, Any]


def admit(
    state: Mapping[str, Any] | None, numbers: Iterable[str], now: float, limits: Mapping[str, int]
) -> Admission:
    """Page each number only if no window of ``limits`` is full for it; count the refusals."""
    horizon = max(CAP_WINDOWS[window] for window in limits)
    records = {
        key: {
            "sent": [t for t in record.get("sent", []) if now - t < horizon],
            "skipped": record.get("skipped", 0),
        }
        for key, record in (state or {}).items()
    }
    allowed: dict[str, int] = {}
    refused: list[str] = []
    for number in numbers:
        record = records.setdefault(number_id(number), {"sent": [], "skipped": 0})
        full = any(
            sum(1 for t in record["sent"] if now - t < CAP_WINDOWS[window]) >= count
            for window, count in limits.items()
        )
        if full:
            record["skipped"] += 1
            refused.append(number)
        else:
            allowed[number] = record["skipped"]
            record["sent"].append(now)
            record["skipped"] = 0
    # Numbers with nothing to remember are dropped, so the record stays small.
    kept = {key: record for key, record in records.items() if record["sent"] or record["skipped"]}
    return Admission(allowed, refused, kept)


def release(
    state: Mapping[str, Any], numbers: Iterable[str], now: float, skipped: Mapping[str, int]
) -> dict[str, Any]:
    """Undo :func:`admit` for numbers whose page did not go out: their slot and their count come back."""
    records = {key: dict(record) for key, record in state.items()}
    for number in numbers:
        record = records.get(number_id(number))
        if record is not None:
            record["sent"] = [t for t in record["sent"] if t != now]
            record["skipped"] = record.get("skipped", 0) + skipped.get(number, 0)
    return records
