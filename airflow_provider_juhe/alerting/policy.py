"""
What an alert may send, decided from remembered state: pure functions over plain JSON records.

An **episode** (one per group key) is open from its first alert until a recovery closes it. Within
``repeat_interval`` of the last SMS, further alerts send nothing and are counted; the next SMS shows
the count. **Caps** (one record per template) remember, per number, when it was last paged and how
many pages were skipped, so that carriers' per-number limits are never reached.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeGuard

#: The rolling windows ``max_per_number`` may cap, in seconds.
CAP_WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}
#: How far ahead of this clock a remembered time may lie (another worker's clock); further, it is
#: damaged and dropped: a time a day ahead would otherwise hold back every page for a day.
FUTURE_SECONDS = 60.0


@dataclass(frozen=True)
class Decision:
    """Whether to send, the count of notifications held back before it, and the state to store."""

    send: bool
    suppressed_count: int
    state: dict[str, Any]


#: The episode fields a claim may change, kept in the claim so that giving it back restores them.
_EPISODE_FIELDS = ("open", "opened", "last_sent", "resolved")


def decide_alert(
    state: Mapping[str, Any] | None,
    now: float,
    repeat_interval: timedelta | None,
    token: str,
    claim_seconds: float,
) -> Decision:
    """
    An alert for an episode: claim its SMS unless another notification holds an unexpired claim, or
    the episode's last SMS is younger than ``repeat_interval`` (then it is counted).

    The claim keeps the count it takes and the fields it changes: :func:`settle` confirms it once the
    SMS went out; :func:`give_back` (or its expiry after ``claim_seconds``, should its process die)
    restores them, so that a claim never silences an episode.
    """
    state = expire_claim(state, now, claim_seconds)
    last_sent = state.get("last_sent")
    held = "claim" in state or (
        repeat_interval is not None
        and state.get("open")
        and last_sent is not None
        and now - last_sent < repeat_interval.total_seconds()
    )
    if held:
        return Decision(False, 0, {**state, "suppressed": state.get("suppressed", 0) + 1})
    count = state.get("suppressed", 0)
    claim = {
        "token": token,
        "until": now + claim_seconds,
        "count": count,
        "was": {name: state[name] for name in _EPISODE_FIELDS if name in state},
    }
    opened = state.get("opened") if state.get("open") else now
    return Decision(True, count, {"open": True, "opened": opened, "suppressed": 0, "claim": claim})


def decide_resolve(state: Mapping[str, Any] | None, now: float) -> Decision:
    """
    A recovery: only while an episode is open (an alert went out and was not resolved); it closes the
    episode at once, whether or not a per-number cap then lets its SMS out.
    """
    state = expire_claim(state, now)
    if not state.get("open"):
        return Decision(False, 0, state)
    return Decision(True, state.get("suppressed", 0), {"open": False, "resolved": now, "suppressed": 0})


def expire_claim(
    state: Mapping[str, Any] | None, now: float, claim_seconds: float | None = None
) -> dict[str, Any]:
    """
    An episode whose claim outlived its bound (its process died), or whose bound lies further ahead
    than ``claim_seconds`` allows (damaged): as before the claim, count kept.
    """
    state = clean_episode(state, now)
    claim = state.get("claim")
    longest = now + (claim_seconds if claim_seconds is not None else math.inf) + FUTURE_SECONDS
    if isinstance(claim, Mapping) and now < claim.get("until", 0) <= longest:
        return state
    state.pop("claim", None)
    return _restored(state, claim) if isinstance(claim, Mapping) else state


def settle(state: Mapping[str, Any] | None, token: str, now: float) -> dict[str, Any]:
    """The claimed SMS went out: the episode's last SMS is now."""
    state = clean_episode(state)
    claim = state.get("claim")
    if isinstance(claim, Mapping) and claim.get("token") == token:
        state.pop("claim")
        state["last_sent"] = now
    return state


def confirm(state: Mapping[str, Any] | None, confirmation: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fold in a sender's confirmation of the claim it holds (written beside the episode)."""
    state = clean_episode(state)
    claim = state.get("claim")
    if (
        claim is not None
        and isinstance(confirmation, Mapping)
        and confirmation.get("token") == claim["token"]
        and is_time(confirmation.get("at"))
    ):
        return settle(state, claim["token"], confirmation["at"])
    return state


def give_back(state: Mapping[str, Any] | None, token: str, count_this_one: bool) -> dict[str, Any]:
    """
    The claimed SMS did not go out: the episode as before the claim, with the count it took (and
    this notification, when a cap held it back) restored. A claim that already expired was restored.
    """
    state = clean_episode(state)
    claim = state.get("claim")
    if isinstance(claim, Mapping) and claim.get("token") == token:
        state.pop("claim")
        state = _restored(state, claim)
    if count_this_one:
        state["suppressed"] = state.get("suppressed", 0) + 1
    return state


def _restored(state: dict[str, Any], claim: Mapping[str, Any]) -> dict[str, Any]:
    restored = {k: v for k, v in state.items() if k not in _EPISODE_FIELDS}
    restored.update(claim.get("was") or {})
    restored["suppressed"] = state.get("suppressed", 0) + claim.get("count", 0)
    return restored


def clean_episode(state: Any, now: float | None = None) -> dict[str, Any]:
    """
    An episode record with every field of the right type; a field that is not (a record damaged by
    hand, or by another version) is dropped, so that a bad record can never silence paging. Given
    ``now``, so is a time more than :data:`FUTURE_SECONDS` ahead of it.
    """
    state = dict(state) if isinstance(state, Mapping) else {}
    clean: dict[str, Any] = {
        k: v for k, v in state.items() if k not in (*_EPISODE_FIELDS, "claim", "suppressed")
    }
    if isinstance(state.get("open"), bool):
        clean["open"] = state["open"]
    for name in ("opened", "last_sent", "resolved"):
        if is_time(state.get(name)) and (now is None or state[name] <= now + FUTURE_SECONDS):
            clean[name] = state[name]
    clean["suppressed"] = _count(state.get("suppressed"))
    claim = state.get("claim")
    if isinstance(claim, Mapping) and isinstance(claim.get("token"), str) and is_time(claim.get("until")):
        clean["claim"] = {
            "token": claim["token"],
            "until": claim["until"],
            "count": _count(claim.get("count")),
            "was": clean_episode(claim.get("was"), now) if isinstance(claim.get("was"), Mapping) else {},
        }
        clean["claim"]["was"].pop("suppressed", None)
    return clean


def clean_caps(state: Any) -> dict[str, Any]:
    """A caps record with every entry of the right shape; damaged entries are dropped."""
    records = state.items() if isinstance(state, Mapping) else ()
    return {
        key: {
            "sent": [t for t in record.get("sent") or [] if is_time(t)]
            if isinstance(record.get("sent"), list)
            else [],
            "skipped": _count(record.get("skipped")),
        }
        for key, record in records
        if isinstance(key, str) and isinstance(record, Mapping)
    }


def is_time(value: Any) -> TypeGuard[float]:
    """A finite number (not a bool, not an int too large for a float): a time a record may hold."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def number_id(number: str, secret: str) -> str:
    """
    Caps are stored under a keyed digest of the number (HMAC-SHA256 under ``secret``): Variables are
    shown in the UI, and a plain hash of an 11-digit number is reversed by trying them all.
    """
    return hmac.new(secret.encode(), number.encode(), hashlib.sha256).hexdigest()[:24]


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
    state: Mapping[str, Any] | None,
    numbers: Iterable[str],
    now: float,
    limits: Mapping[str, int],
    secret: str,
) -> Admission:
    """Page each number only if no window of ``limits`` is full for it; count the refusals."""
    horizon = max(CAP_WINDOWS[window] for window in limits)
    records = {
        key: {
            "sent": [t for t in record["sent"] if now - horizon < t <= now + FUTURE_SECONDS],
            "skipped": record["skipped"],
        }
        for key, record in clean_caps(state).items()
    }
    allowed: dict[str, int] = {}
    refused: list[str] = []
    for number in numbers:
        record = records.setdefault(number_id(number, secret), {"sent": [], "skipped": 0})
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
    state: Mapping[str, Any] | None,
    numbers: Iterable[str],
    now: float,
    skipped: Mapping[str, int],
    secret: str,
) -> dict[str, Any]:
    """Undo :func:`admit` for numbers whose page did not go out: their slot and their count come back."""
    records = clean_caps(state)
    for number in numbers:
        record = records.get(number_id(number, secret))
        if record is not None:
            record["sent"] = [t for t in record["sent"] if t != now]
            record["skipped"] = record.get("skipped", 0) + skipped.get(number, 0)
    return records


def is_paged(
    state: Mapping[str, Any] | None, now: float, repeat_interval: timedelta | None, claim_seconds: float
) -> bool:
    """
    Whether an episode, read without its lock, was surely paged already: a live claim, or an SMS
    within ``repeat_interval``. A notification that could not reach the state sends nothing then.
    """
    state = expire_claim(state, now, claim_seconds)
    if "claim" in state:
        return True
    last_sent = state.get("last_sent")
    return bool(
        repeat_interval is not None
        and state.get("open")
        and last_sent is not None
        and now - last_sent < repeat_interval.total_seconds()
    )
