"""Where every recipient ended up: the summary a send task returns, its lists capped for XCom."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_juhe.sending.plan import Batch

#: The most numbers the summary lists under each of ``invalid``, ``failed`` and ``unknown``.
LIST_CAP = 1_000


@dataclass
class SendSummary:
    """
    ``requested == sent + invalid_count + suppressed + failed_count + unknown_count``.

    Sent numbers are counted, never listed; the other lists stop at :data:`LIST_CAP` numbers each, so
    the XCom stays small for a million recipients while the counts stay exact.
    """

    requested: int
    invalid: list[str]
    suppressed: int = 0
    sent: int = 0
    fee: int = 0
    failed_count: int = 0
    unknown_count: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    _failed: dict[tuple[int | None, str], dict[str, Any]] = field(default_factory=dict)
    _failed_listed: int = 0

    def __post_init__(self) -> None:
        self.invalid_count = len(self.invalid)
        self.invalid = self.invalid[:LIST_CAP]

    def record_sent(self, batch: Batch, sid: str, fee: int) -> None:
        self.sent += len(batch.mobiles)
        self.fee += fee
        self.batches.append({"sid": sid, "tpl_id": batch.tpl_id, "count": len(batch.mobiles), "fee": fee})

    def record_failed(self, batch: Batch, error_code: int | None, reason: str) -> None:
        """Failures with the same code and reason share one entry."""
        entry = self._failed.setdefault(
            (error_code, reason), {"mobiles": [], "error_code": error_code, "reason": reason, "count": 0}
        )
        listed = list(batch.mobiles[: max(0, LIST_CAP - self._failed_listed)])
        entry["mobiles"].extend(listed)
        entry["count"] += len(batch.mobiles)
        self._failed_listed += len(listed)
        self.failed_count += len(batch.mobiles)

    def record_unknown(self, batch: Batch) -> None:
        self.unknown.extend(batch.mobiles[: max(0, LIST_CAP - len(self.unknown))])
        self.unknown_count += len(batch.mobiles)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return list(self._failed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "sent": self.sent,
            "fee": self.fee,
            "suppressed": self.suppressed,
            "invalid": self.invalid,
            "invalid_count": self.invalid_count,
            "failed": self.failed,
            "failed_count": self.failed_count,
            "unknown": self.unknown,
            "unknown_count": self.unknown_count,
            "batches": self.batches,
            "report": None,
        }
