"""
The write-ahead ledger of a send in the task-instance state store, which survives task retries.

Keys (one task instance each): ``juhe_plan`` (the plan's record), ``juhe_plan_carriers_<n>`` (carrier
answers that differ from the prefix table) and ``juhe_batches_<n>`` (one segment of batches). A
segment is ``{"status": "..s.a", "sent": "<index>,<sid>,<fee>;..."}``, one character per batch:

- ``.`` never started, or surely not sent (refused, an error answer): a later try sends it;
- ``a`` announced: its call may have started; a later try reports it unknown, never re-sends it;
- ``s`` sent, with its sid and fee; ``u`` its call ended with an unknown outcome.

A state-store write is a round trip to the API server (~25 ms): the dispatcher batches its updates,
and only the segments that changed are written. The sids travel as one string, not a mapping: the
API validates every element of a JSON value, and a mapping of 500 sids cost more than the call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, unquote

from airflow_provider_juhe.sending.plan import SendPlan

PLAN_KEY = "juhe_plan"
CARRIERS_KEY = "juhe_plan_carriers_{}"
SEGMENT_KEY = "juhe_batches_{}"
#: Batches per segment record: a segment stays well under the state store's 64 KB advisory limit.
SEGMENT_BATCHES = 500
#: Numbers per carrier-override record.
CARRIERS_PER_RECORD = 4_000

NOT_SENT, ANNOUNCED, SENT, UNKNOWN = ".", "a", "s", "u"
#: Batches that may have gone out: never sent again by this task instance.
MAY_HAVE_STARTED = frozenset({ANNOUNCED, UNKNOWN})


class StateStore(Protocol):
    """What the ledger needs of ``context["task_state_store"]``."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class InMemoryStateStore(dict[str, Any]):
    """A state store for runs without ``task_state_store`` (it does not survive task retries)."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


class SendLedger:
    """
    Reads and writes the plan and the batches' states.

    :param store: ``context["task_state_store"]``, or ``None`` outside a task run (then nothing
        survives a retry, and a warning says so).
    """

    def __init__(self, store: StateStore | None, log: logging.Logger) -> None:
        if store is None:
            log.warning("No task_state_store in the context: batches cannot be tracked across task retries")
            store = InMemoryStateStore()
        self._store = store
        self.status = bytearray()
        self._sent: list[dict[int, str]] = []  # per segment: index -> "<index>,<sid>,<fee>"

    # -- the plan -------------------------------------------------------------------------------------

    def read_plan(self) -> dict[str, Any] | None:
        return self._store.get(PLAN_KEY, None)

    def read_overrides(self, record: Mapping[str, Any]) -> dict[str, str]:
        overrides: dict[str, str] = {}
        for part in range(int(record.get("carrier_records", 0))):
            for carrier, numbers in (self._store.get(CARRIERS_KEY.format(part), None) or {}).items():
                overrides.update(dict.fromkeys(numbers.split(","), carrier))
        return overrides

    def save_plan(self, plan: SendPlan, **facts: Any) -> None:
        """
        Carrier answers first, the plan record last: a plan record always finds its parts.

        :param facts: kept beside the plan for later tries (e.g. its ``estimated_fee``).
        """
        numbers = sorted(plan.overrides)
        parts = [numbers[i : i + CARRIERS_PER_RECORD] for i in range(0, len(numbers), CARRIERS_PER_RECORD)]
        for index, part in enumerate(parts):
            by_carrier: dict[str, list[str]] = {}
            for number in part:
                by_carrier.setdefault(plan.overrides[number], []).append(number)
            self._store.set(CARRIERS_KEY.format(index), {c: ",".join(n) for c, n in by_carrier.items()})
        self._store.set(PLAN_KEY, {**plan.record, **facts, "carrier_records": len(parts)})

    # -- the batches ----------------------------------------------------------------------------------

    def load(self, batch_count: int, *, replayed: bool) -> None:
        """Read the batches' states an earlier try left (a fresh plan has none to read)."""
        self.status = bytearray(NOT_SENT.encode() * batch_count)
        self._sent = [{} for _ in range(_segments(batch_count))]
        if not replayed:
            return
        for segment in range(len(self._sent)):
            record = self._store.get(SEGMENT_KEY.format(segment), None) or {}
            start = segment * SEGMENT_BATCHES
            states = record.get("status", "").encode()[: min(SEGMENT_BATCHES, batch_count - start)]
            self.status[start : start + len(states)] = states
            self._sent[segment] = _parse_sent(record.get("sent", ""))

    def state(self, index: int) -> str:
        return chr(self.status[index])

    def sent(self, index: int) -> tuple[str, int]:
        """The sid and fee of a batch an earlier try sent."""
        _, sid, fee = self._sent[index // SEGMENT_BATCHES][index].split(",")
        return unquote(sid), int(fee)

    def write(self, updates: Iterable[tuple[int, str]], sent: Mapping[int, tuple[str, int]] = {}) -> None:
        """Apply ``(index, state)`` updates and the sids of sent batches; write each changed segment once."""
        dirty: set[int] = set()
        for index, state in updates:
            self.status[index] = ord(state)
            dirty.add(index // SEGMENT_BATCHES)
        for index, (sid, fee) in sent.items():
            self._sent[index // SEGMENT_BATCHES][index] = f"{index},{quote(sid, safe='')},{int(fee)}"
        for segment in sorted(dirty):
            start = segment * SEGMENT_BATCHES
            self._store.set(
                SEGMENT_KEY.format(segment),
                {
                    "status": self.status[start : start + SEGMENT_BATCHES].decode(),
                    "sent": ";".join(self._sent[segment].values()),
                },
            )


def _parse_sent(sent: str) -> dict[int, str]:
    return {int(entry.split(",", 1)[0]): entry for entry in sent.split(";") if entry}


def _segments(batch_count: int) -> int:
    return (batch_count + SEGMENT_BATCHES - 1) // SEGMENT_BATCHES


def may_have_sent(key: str, value: Any) -> bool:
    """Whether a ledger record says that some batch may have gone out (announced, sent or unknown)."""
    if not key.startswith(SEGMENT_KEY.format("")) or not isinstance(value, Mapping):
        return False
    return any(state != NOT_SENT for state in str(value.get("status", "")))
