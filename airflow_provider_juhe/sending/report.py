"""
Where every recipient ended up: the summary a send task returns (its lists capped for XCom), and
the per-recipient report file (every number, unmasked: it is the user's own storage).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_juhe.exceptions import explain, shorten
from airflow_provider_juhe.sending.dispatch import FAILED_OUTCOME, SENT_OUTCOME, Outcome
from airflow_provider_juhe.sending.ledger import MAY_HAVE_STARTED, SENT, SendLedger
from airflow_provider_juhe.sending.plan import Batch, SendPlan

REPORT_COLUMNS = ("mobile", "status", "tpl_id", "sid", "fee", "error_code", "reason")
#: What makes a spreadsheet read a cell as a formula (CSV injection): such cells get a leading ``'``.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SUPPRESSED_REASON = "in the opt-out list (suppress)"

#: The most numbers the summary lists under each of ``invalid``, ``failed`` and ``unknown``.
LIST_CAP = 1_000


@dataclass
class SendSummary:
    """
    ``requested == sent + invalid_count + suppressed + failed_count + unknown_count``.

    Sent numbers are counted, never listed; the other lists stop at :data:`LIST_CAP` numbers each, and
    ``batches`` (the calls that sent, with their sids) at :data:`LIST_CAP` calls, so the XCom stays
    small for a million recipients while the counts stay exact. The report file lists every one.
    """

    requested: int
    invalid: list[str]
    suppressed: int = 0
    sent: int = 0
    fee: int = 0
    failed_count: int = 0
    unknown_count: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    batches_count: int = 0
    report: str | None = None
    #: SMS parts of each planned text times its numbers, as a dry run estimates them (None: not known).
    estimated_fee: int | None = None
    #: Repeated entries (not in ``requested``) and the invalid entries' reasons, counted.
    duplicate_count: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    _failed: dict[tuple[int | None, str], dict[str, Any]] = field(default_factory=dict)
    _failed_listed: int = 0
    #: This try's failed and unknown outcomes by batch index: the report's error codes and reasons.
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.invalid_count = len(self.invalid)
        self.invalid = self.invalid[:LIST_CAP]

    def record_sent(self, batch: Batch, sid: str | None, fee: int) -> None:
        self.sent += len(batch.mobiles)
        self.fee += fee
        self.batches_count += 1
        if len(self.batches) < LIST_CAP:  # a personalised campaign makes a call per customer
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

    def resume(self, batches: Iterable[Batch], ledger: SendLedger) -> list[Batch]:
        """Account for what earlier tries settled or may have started; return what is still to send."""
        pending = []
        for batch in batches:
            state = ledger.state(batch.index)
            if state == SENT:
                self.record_sent(batch, *ledger.sent(batch.index))
            elif state in MAY_HAVE_STARTED:
                self.record_unknown(batch)
            else:
                pending.append(batch)
        return pending

    def record(self, batch: Batch, outcome: Outcome) -> None:
        """One call of this try, settled."""
        if outcome.status == SENT_OUTCOME:
            self.record_sent(batch, outcome.sid, outcome.fee)
            return
        self.outcomes[batch.index] = outcome
        if outcome.status == FAILED_OUTCOME:
            self.record_failed(batch, outcome.error_code, outcome.reason)
        else:
            self.record_unknown(batch)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return list(self._failed.values())

    def failures_final(self) -> bool:
        """Every failure of this try is a refusal that no retry can change (e.g. 228801)."""
        failed = [o for o in self.outcomes.values() if o.status == FAILED_OUTCOME]
        return bool(failed) and all(outcome.final for outcome in failed)

    def describe(self) -> str:
        """
        What went wrong, for the task's exception: ``5 number(s) failed: 228801 模板不存在 ×5 (the
        template does not exist on this account, or is not approved)``, and the unknown outcomes.
        """
        parts = []
        if self.failed_count:
            causes = "; ".join(
                f"{'' if e['error_code'] is None else str(e['error_code']) + ' '}{shorten(e['reason'] or 'no reason given', 160)} "
                f"×{e['count']}{'' if e['error_code'] is None else ' (' + explain(e['error_code']) + ')'}"
                for e in sorted(self._failed.values(), key=lambda e: -e["count"])[:5]
            )
            more = len(self._failed) - 5
            parts.append(
                f"{self.failed_count} number(s) failed: {causes}{f'; and {more} other cause(s)' if more > 0 else ''}"
            )
        if self.unknown_count:
            parts.append(
                f"{self.unknown_count} number(s) have an unknown outcome (they may have been sent: never "
                "sent again by this task instance)"
            )
        return "; ".join(parts)

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
            "batches_count": self.batches_count,
            "report": self.report,
            "estimated_fee": self.estimated_fee,
            "duplicate_count": self.duplicate_count,
            "invalid_reasons": self.invalid_reasons,
        }


def report_rows(
    plan: SendPlan,
    ledger: SendLedger,
    outcomes: Mapping[int, Outcome],
    invalid: Mapping[str, str],
    suppressed: Iterable[str],
    duplicates: Iterable[tuple[str, str]] = (),
) -> Iterator[tuple[Any, ...]]:
    """
    One row per requested number, in :data:`REPORT_COLUMNS` order, from the ledger (every try), and
    one per repeated entry (``duplicate``, naming the entry kept).

    Cells that did not come from this module pass :func:`spreadsheet_safe` (once per batch, not per
    number: a million rows are written at speed); the batches' numbers are valid, they start with 1.
    """
    for batch in plan.batches:  # already planned for the send: not sorted again
        state = ledger.state(batch.index)
        outcome = outcomes.get(batch.index)
        if state == SENT:
            sid, fee = ledger.sent(batch.index)
            sid = spreadsheet_safe(sid)
            share, extra = divmod(fee, len(batch.mobiles))  # a call's fee, spread over its numbers
            for place, number in enumerate(batch.mobiles):
                yield number, "sent", batch.tpl_id, sid, share + (place < extra), "", ""
            continue
        status = "unknown" if state in MAY_HAVE_STARTED else "failed"
        sid = (outcome.sid if outcome else None) or ""
        code = outcome.error_code if outcome else None
        reason = (
            outcome.reason
            if outcome
            else ("may have been sent by an earlier try" if status == "unknown" else "")
        )
        sid, code, reason = (
            spreadsheet_safe(cell) for cell in (sid or "", "" if code is None else code, reason)
        )
        for number in batch.mobiles:
            yield number, status, batch.tpl_id, sid, "", code, reason
    for number, reason in invalid.items():  # entries as given: "=cmd|'/c calc'!A0" is one
        yield spreadsheet_safe(number), "invalid", "", "", "", "", spreadsheet_safe(reason)
    for number in suppressed:
        yield number, "suppressed", "", "", "", "", SUPPRESSED_REASON
    for number, reason in duplicates:
        yield spreadsheet_safe(number), "duplicate", "", "", "", "", reason


def write_report(location: Any, rows: Iterable[tuple[Any, ...]]) -> str:
    """Write the CSV through ``ObjectStoragePath`` (missing folders created); return its URI."""
    path = report_location(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as stream:
        # "\r\n" (RFC 4180), not "\n": the writer quotes a cell holding a character of the line
        # terminator only, and a bare "\r" in a reason or an entry would otherwise split its row
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(rows)
    return str(path)


def spreadsheet_safe(cell: Any) -> Any:
    """
    A cell a spreadsheet shows as text, never runs as a formula: one beginning with ``=``, ``+``,
    ``-``, ``@``, tab or carriage return gets a leading ``'``; any other cell is returned as it is.

    :param cell: text that did not come from this module: an entry as given, a sid, an error code
        or a reason from the server.
    """
    text = cell if isinstance(cell, str) else str(cell)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else cell


def report_location(report_path: Any) -> Any:
    """
    The report's ``ObjectStoragePath``, checked before any send (an unknown scheme fails here).

    :raises ValueError: naming ``report_path``.
    """
    if report_path is None:
        return None
    from airflow.sdk import ObjectStoragePath

    if isinstance(report_path, ObjectStoragePath):
        return report_path
    if not isinstance(report_path, str) or not report_path.strip():
        raise ValueError(f"report_path: expected a path or URI, got {report_path!r}")
    try:
        return ObjectStoragePath(report_path)
    except Exception as error:
        raise ValueError(f"report_path: {report_path}: {type(error).__name__}: {error}") from None
