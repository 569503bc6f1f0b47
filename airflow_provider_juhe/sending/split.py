"""
A campaign split into shards for mapped sends, with its guards applied to the whole campaign, and
the totals of the shards' summaries.

:func:`split_audience` reads the audience once (rows or numbers, a list or a file), normalises and
de-duplicates it across all of it, applies the opt-outs, ``max_recipients`` and ``max_fee`` to the
campaign, and only then writes the numbers to send into ``shards`` JSON Lines files (gzipped), every
row of one number in one shard (chosen by a SHA-256 digest of the number; no number is in a file
name). Each shard row holds the number under ``mobile`` and every template variable it is sent
with, so ``JuheSendSmsOperator(recipients=<shard>)`` sends it as the campaign planned. Invalid,
suppressed and repeated entries never reach a shard: the split's own summary and report count them.

The same input always gives the same files, byte for byte (rows in input order, gzip without a
timestamp), and a file that already holds them is left untouched: a retry or a clear of the split
while shards are being sent changes nothing under them.

:func:`campaign_totals` adds up the shards' summaries (and the split's), checks the invariant over
counts, and merges the reports into one CSV.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_juhe.exceptions import JuheError, JuheGuardError, JuheInputError, input_checks
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook, validate_tpl_id
from airflow_provider_juhe.mobiles import mask_sample
from airflow_provider_juhe.sending.campaign import _guard_value, estimate_fee, nothing_to_send_message
from airflow_provider_juhe.sending.plan import SendPlan, plan_batches
from airflow_provider_juhe.sending.recipients import (
    Audience,
    audience_from_mobiles,
    audience_from_rows,
    check_text,
    read_suppressed,
)
from airflow_provider_juhe.sending.report import REPORT_COLUMNS, report_location, report_rows, write_report
from airflow_provider_juhe.sms_content import template_variables, unpack_values

#: Most shards one split writes.
MAX_SHARDS = 10_000
#: The field that holds the number in a shard's rows (``JuheSendSmsOperator``'s default ``mobile_field``).
SHARD_MOBILE_FIELD = "mobile"
SPLIT_REPORT = "split-report.csv"
#: Counts that the totals add up (the split's summary has some of them, each shard's all).
COUNTS = (
    "requested",
    "sent",
    "fee",
    "suppressed",
    "invalid_count",
    "failed_count",
    "unknown_count",
    "duplicate_count",
    "batches_count",
)


@dataclass(frozen=True)
class SplitRequest:
    """What one split asks for, rendered: the parameters of ``JuheSplitAudienceOperator``."""

    shards: Any
    output_uri: Any
    recipients: Any = None
    mobiles: Any = None
    suppress: Any = None
    tpl_id: Any = None
    tpl_value: Any = None
    max_fee: Any = None
    max_recipients: Any = None
    mobile_field: str = "mobile"
    columns: Mapping[str, str] | None = None
    encoding: str = "utf-8"
    allow_empty_suppress: bool = False


@dataclass(frozen=True)
class SplitResult:
    """
    :param shards: the shards' URIs, in order (the split operator's return value).
    :param summary: the split's counts: ``requested`` (distinct numbers), ``to_send``, ``suppressed``,
        ``invalid_count``, ``invalid_reasons``, ``duplicate_count``, ``estimated_fee`` (``None`` when
        the template text was not read), ``shard_sizes`` and ``report`` (its report's URI).
    """

    shards: list[str]
    summary: dict[str, Any]


def split_audience(request: SplitRequest, hook: JuheSmsHook, log: logging.Logger | Any) -> SplitResult:
    """
    Read, check and guard the whole audience, then write its shards.

    :raises JuheInputError: bad input, or a guard exceeded (no retry can change it): before any
        shard is written.
    :raises JuheGuardError: ``max_fee`` is set and the template text cannot be read (retryable).
    """
    with input_checks():
        shards = _shard_count(request.shards)
        folder = _folder(request.output_uri)
        if (request.recipients is None) == (request.mobiles is None):
            raise ValueError("mobiles, recipients: give exactly one of them")
        tpl_id = None if request.tpl_id in (None, "") else validate_tpl_id(request.tpl_id)
        max_fee = _guard_value(request.max_fee, "max_fee")
        max_recipients = _guard_value(request.max_recipients, "max_recipients")
        if max_fee is not None and tpl_id is None:
            raise ValueError("max_fee: the fee is estimated from the template's text: give tpl_id too")
        for name in ("mobiles", "recipients"):
            check_text(getattr(request, name), name)
        suppress = read_suppressed(
            request.suppress, encoding=request.encoding, allow_empty=request.allow_empty_suppress
        )
    templates = _read_templates(hook, tpl_id, guarded=max_fee is not None, log=log)
    required = None
    if tpl_id is not None and templates and tpl_id in templates:
        required = template_variables(templates[tpl_id]["content"])
    audience = _audience(request, suppress, required)
    field = "mobiles" if request.recipients is None else "recipients"
    if audience.invalid and not audience.to_send:  # bad entries left nothing: never a green no-op
        variables = {str(tpl_id): sorted(required)} if required is not None else None
        raise JuheInputError(nothing_to_send_message(audience, field, variables))
    numbers = len(audience.to_send)
    if max_recipients is not None and numbers > max_recipients:
        raise JuheInputError(
            f"max_recipients: the campaign's {numbers} number(s) to send exceed max_recipients "
            f"{max_recipients}; no shard was written"
        )
    fee = None
    if tpl_id is not None:
        routed = {tpl_id: sorted(audience.to_send)}
        fee = estimate_fee(plan_batches(routed, audience.to_send, 1_000), templates)
    if max_fee is not None:
        if fee is None:  # the template is not on the account, or its text was not read
            raise JuheGuardError(
                f"max_fee: the text of template {tpl_id} is not among the account's templates, so the "
                "fee cannot be estimated",
                final=True,
            )
        if fee > max_fee:
            raise JuheInputError(
                f"max_fee: the campaign's estimated fee, {fee} ({numbers} number(s)), exceeds max_fee "
                f"{max_fee}; no shard was written"
            )
    sizes = [0] * shards
    bodies = _shard_bodies(audience.to_send, shards, sizes)
    uris = []
    for index, body in enumerate(bodies):
        path = folder / f"shard-{index:05d}-of-{shards:05d}.jsonl.gz"
        _write_once(path, body)
        uris.append(str(path))
    report = write_report(folder / SPLIT_REPORT, _not_sent_rows(audience))
    summary = {
        "requested": audience.requested,
        "to_send": numbers,
        "suppressed": len(audience.suppressed),
        "invalid_count": len(audience.invalid),
        "invalid_reasons": audience.invalid_reasons(),
        "duplicate_count": len(audience.duplicates),
        "estimated_fee": fee,
        "shard_sizes": sizes,
        "report": report,
    }
    log.info(
        "Split %d distinct number(s) into %d shard(s) of %s number(s) to send (%d suppressed, %d invalid, "
        "%d repeated entr(ies); estimated fee %s)",
        audience.requested,
        shards,
        sizes if shards <= 20 else f"{min(sizes)}-{max(sizes)}",
        len(audience.suppressed),
        len(audience.invalid),
        len(audience.duplicates),
        "unknown (the template text was not read)" if fee is None else fee,
    )
    if audience.invalid:
        log.warning(
            "%d invalid entr(ies) are in no shard (%s): %s",
            len(audience.invalid),
            audience.invalid_reasons(),
            mask_sample(list(audience.invalid), limit=10),
        )
    return SplitResult(uris, summary)


def shard_of(number: str, shards: int) -> int:
    """The shard of a normalised number: a stable digest, the same in every process and release."""
    return int.from_bytes(hashlib.sha256(number.encode()).digest()[:8], "big") % shards


def campaign_totals(
    summaries: Iterable[Mapping[str, Any] | None],
    split: Mapping[str, Any] | None = None,
    report_path: Any = None,
) -> dict[str, Any]:
    """
    The campaign's summary: every count added up over the shards' summaries and the split's.

    :param summaries: each shard's send summary (``None`` for a shard that left none).
    :param split: the split's summary (its suppressed, invalid and repeated entries), if any.
    :param report_path: where to write one CSV merging the shards' reports and the split's.
    :raises JuheError: a shard left no summary, or the counts do not add up (a defect).
    """
    summaries = list(summaries)
    missing = [index for index, summary in enumerate(summaries) if not isinstance(summary, Mapping)]
    present = [summary for summary in summaries if isinstance(summary, Mapping)]
    parts: list[Mapping[str, Any]] = list(present)
    if split:  # what is in no shard: the numbers to send are requested again by their shard
        parts.append({**split, "requested": int(split["requested"]) - int(split.get("to_send") or 0)})
    totals: dict[str, Any] = {key: sum(int(part.get(key) or 0) for part in parts) for key in COUNTS}
    reasons: Counter[str] = Counter()
    for part in parts:
        reasons.update(part.get("invalid_reasons") or {})
    totals["invalid_reasons"] = dict(reasons)
    fees = [summary.get("estimated_fee") for summary in present]
    totals["estimated_fee"] = None if None in fees else sum(fees)
    totals["shards"] = len(summaries)
    totals["shards_failed"] = sum(
        1 for summary in present if summary.get("failed_count") or summary.get("unknown_count")
    )
    accounted = sum(
        totals[key] for key in ("sent", "invalid_count", "suppressed", "failed_count", "unknown_count")
    )
    totals["report"] = None
    if report_path is not None:
        reports = [part.get("report") for part in parts]
        totals["report"] = merge_reports([report for report in reports if report], report_path)
    if missing:
        raise JuheError(
            f"shard(s) {', '.join(map(str, missing[:20]))} left no summary (their task did not finish); "
            f"the totals of the other {len(present)} are {totals}"
        )
    if totals["requested"] != accounted:
        raise JuheError(
            f"the shards' counts do not add up: requested {totals['requested']} but {accounted} accounted "
            f"for (sent + invalid + suppressed + failed + unknown): {totals}"
        )
    return totals


def merge_reports(reports: Sequence[Any], report_path: Any) -> str:
    """One CSV with every report's rows under one header (rows copied as written, escapes kept)."""
    from airflow.sdk import ObjectStoragePath

    target = report_location(report_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    header = ",".join(REPORT_COLUMNS)
    with target.open("w", encoding="utf-8", newline="") as out:
        out.write(header + "\r\n")
        for report in reports:
            path: Any = report if isinstance(report, ObjectStoragePath) else ObjectStoragePath(report)
            with path.open("r", encoding="utf-8", newline="") as stream:
                first = stream.readline()
                if first.rstrip("\r\n") != header:
                    raise JuheError(f"report_path: {report} is not a send report (header {first.strip()!r})")
                for block in iter(lambda: stream.read(1 << 20), ""):
                    out.write(block)
    return str(target)


# -- steps ------------------------------------------------------------------------------------------


def _shard_count(shards: Any) -> int:
    if isinstance(shards, str) and shards.strip().isdigit():
        shards = int(shards)
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards: expected a whole number from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


def _folder(output_uri: Any) -> Any:
    from airflow.sdk import ObjectStoragePath

    if isinstance(output_uri, ObjectStoragePath):
        return output_uri
    if not isinstance(output_uri, str) or not output_uri.strip():
        raise ValueError(f"output_uri: expected a folder path or URI, got {output_uri!r}")
    try:
        return ObjectStoragePath(output_uri.rstrip("/"))
    except Exception as error:
        raise ValueError(f"output_uri: {output_uri}: {type(error).__name__}: {error}") from None


def _read_templates(
    hook: JuheSmsHook, tpl_id: int | None, *, guarded: bool, log: logging.Logger
) -> dict[int, dict[str, Any]] | None:
    """The account's templates by id; ``None`` when unreadable (refused when ``max_fee`` needs them)."""
    if tpl_id is None:
        return None
    try:
        return {t["tpl_id"]: t for t in hook.list_templates()}
    except JuheError as error:
        if guarded:
            raise JuheGuardError(
                f"max_fee: the templates' text could not be read, so the campaign's fee cannot be "
                f"estimated: {error}",
                final=error.final,
            ) from error
        log.warning("Could not read the templates (variables not checked, no fee estimated): %s", error)
        return None


def _audience(request: SplitRequest, suppress: frozenset[str], required: frozenset[str] | None) -> Audience:
    with input_checks():
        if request.recipients is None:
            return audience_from_mobiles(request.mobiles, request.tpl_value, suppress)
        return audience_from_rows(
            request.recipients,
            mobile_field=request.mobile_field,
            tpl_value=request.tpl_value,
            required=required,
            suppress=suppress,
            columns=request.columns,
            encoding=request.encoding,
        )


def _shard_bodies(to_send: Mapping[str, bytes], shards: int, sizes: list[int]) -> list[bytes]:
    """Each shard's file: a row per number (its variables as sent), in input order, gzipped."""
    texts = [io.StringIO() for _ in range(shards)]
    unpacked: dict[bytes, str] = {}  # a campaign's few distinct value sets, each encoded once
    for number, packed in to_send.items():
        values = unpacked.get(packed)
        if values is None:
            values = json.dumps(unpack_values(packed), ensure_ascii=False, separators=(",", ":"))[1:-1]
            if len(unpacked) < 4_096:
                unpacked[packed] = values
        shard = shard_of(number, shards)
        sizes[shard] += 1
        texts[shard].write(f'{{"{SHARD_MOBILE_FIELD}":"{number}"{"," if values else ""}{values}}}\n')
    return [gzip.compress(text.getvalue().encode(), mtime=0) for text in texts]


def _write_once(path: Any, body: bytes) -> None:
    """Write the file unless it already holds exactly ``body`` (a shard being sent is not touched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.exists():
            with path.open("rb") as stream:
                if stream.read(len(body) + 1) == body:
                    return
    except OSError:
        pass
    with path.open("wb") as stream:
        stream.write(body)


def _not_sent_rows(audience: Audience) -> Iterable[tuple[Any, ...]]:
    """The report rows of the entries that are in no shard: invalid, suppressed, repeated."""
    nothing = SendPlan({}, {}, {}, 1, None, {}, replayed=False)
    return report_rows(nothing, None, {}, audience.invalid, audience.suppressed, audience.duplicates)  # type: ignore[arg-type]
