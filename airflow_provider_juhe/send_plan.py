"""Planning a bulk send and accounting for every recipient: pure functions, no Airflow, no HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from airflow_provider_juhe.juhe_api import SEND_LIMIT

CARRIER_ORDER = ("mobile", "unicom", "telecom", "unknown")


@dataclass(frozen=True)
class Batch:
    """One send.php call: a template and up to ``batch_size`` numbers."""

    tpl_id: int
    mobiles: tuple[str, ...]

    @cached_property
    def key(self) -> str:
        """Stable across task retries: the same template and numbers give the same key."""
        digest = hashlib.sha1(f"{self.tpl_id}:{','.join(self.mobiles)}".encode()).hexdigest()[:20]
        return f"juhe_send_{digest}"


def validate_batching(batch_size: int, max_workers: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= SEND_LIMIT:
        raise ValueError(f"batch_size: expected an integer from 1 to {SEND_LIMIT}, got {batch_size!r}")
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or not 1 <= max_workers <= 64:
        raise ValueError(f"max_workers: expected an integer from 1 to 64, got {max_workers!r}")


def resolve_carrier_tpl_ids(value: Mapping[str, Any] | None) -> dict[str, int] | None:
    """
    Accept ``{"all": 767, "mobile": 768, ...}`` or a whole ``submit_template`` result.

    :raises ValueError: not a mapping, an unknown carrier, or an id that is not a positive integer.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"carrier_tpl_ids: expected a mapping such as {{'all': 767, 'mobile': 768}}, got {value!r}"
        )
    if isinstance(value.get("carrier_tpl_ids"), Mapping):
        value = value["carrier_tpl_ids"]
    resolved: dict[str, int] = {}
    for carrier, tpl_id in value.items():
        if carrier not in ("all", *CARRIER_ORDER[:3]):
            raise ValueError(f"carrier_tpl_ids: unknown carrier {carrier!r} (all, mobile, unicom, telecom)")
        if isinstance(tpl_id, bool) or not str(tpl_id).isdigit() or int(tpl_id) <= 0:
            raise ValueError(f"carrier_tpl_ids[{carrier!r}]: expected a positive template id, got {tpl_id!r}")
        resolved[carrier] = int(tpl_id)
    if not resolved:
        raise ValueError("carrier_tpl_ids: empty mapping")
    return resolved


def route(groups: Mapping[str, list[str]], carrier_tpl_ids: Mapping[str, int]) -> dict[int, list[str]]:
    """Each carrier's numbers with that carrier's template; unknown carriers with ``all``."""
    routed: dict[int, list[str]] = {}
    for carrier in CARRIER_ORDER:
        numbers = groups.get(carrier) or []
        if not numbers:
            continue
        tpl_id = carrier_tpl_ids.get(carrier) if carrier != "unknown" else None
        tpl_id = tpl_id or carrier_tpl_ids.get("all")
        if tpl_id is None:
            raise ValueError(
                f"carrier_tpl_ids: no template for {len(numbers)} {carrier} number(s) and no 'all' template"
            )
        routed.setdefault(tpl_id, []).extend(numbers)
    return routed


def plan_batches(routed: Mapping[int, list[str]], batch_size: int) -> list[Batch]:
    return [
        Batch(tpl_id, tuple(numbers[start : start + batch_size]))
        for tpl_id, numbers in routed.items()
        for start in range(0, len(numbers), batch_size)
    ]


@dataclass
class SendSummary:
    """
    Where every recipient ended up: ``requested == sent + invalid + failed + unknown``.

    Sent numbers are counted, never listed, so a million recipients cost no extra memory here.
    """

    requested: int
    invalid: list[str]
    sent: int = 0
    fee: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def record_sent(self, batch: Batch, sid: str, fee: int) -> None:
        self.sent += len(batch.mobiles)
        self.fee += fee
        self.batches.append({"sid": sid, "tpl_id": batch.tpl_id, "count": len(batch.mobiles), "fee": fee})

    def record_failed(self, batch: Batch, error_code: int | None, reason: str) -> None:
        self.failed.append({"mobiles": list(batch.mobiles), "error_code": error_code, "reason": reason})

    def record_unknown(self, batch: Batch) -> None:
        self.unknown.extend(batch.mobiles)

    @property
    def failed_count(self) -> int:
        return sum(len(f["mobiles"]) for f in self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "sent": self.sent,
            "fee": self.fee,
            "invalid": self.invalid,
            "failed": self.failed,
            "unknown": self.unknown,
            "batches": self.batches,
        }
