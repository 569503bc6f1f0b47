"""
The send engine: a send's resolved inputs, a hook and a state store in; either "finished, with this
summary" or "wait until this moment" (a closed send window) out.

It checks the inputs, reads the audience and the opt-outs, fixes or replays the plan, guards the
cost (``max_fee``, ``max_recipients``), dispatches the calls at most once across tries through the
write-ahead ledger, and writes the per-recipient report. It needs no Airflow: the operator is its
glue (rendering, deferring, XCom, task outcome), and tests run it with an in-memory store.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_juhe import metrics
from airflow_provider_juhe.exceptions import (
    JuheConfigError,
    JuheError,
    JuheGuardError,
    JuheInputError,
    JuheNotStarted,
    input_checks,
    shorten,
)
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook, validate_tpl_id
from airflow_provider_juhe.mobiles import group_by_carrier, mask_in_text, mask_sample, require_valid
from airflow_provider_juhe.sending.dispatch import FAILED_OUTCOME, Dispatcher, Outcome, send_batch
from airflow_provider_juhe.sending.ledger import SendLedger, StateStore
from airflow_provider_juhe.sending.plan import Batch, SendPlan, resolve_carrier_tpl_ids, validate_batching
from airflow_provider_juhe.sending.recipients import (
    NOT_A_NUMBER,
    Audience,
    audience_from_mobiles,
    audience_from_rows,
    check_text,
    read_suppressed,
)
from airflow_provider_juhe.sending.report import SendSummary, report_location, report_rows, write_report
from airflow_provider_juhe.sending.window import SendWindow, now
from airflow_provider_juhe.sms_content import (
    encode_tpl_value,
    message_parts,
    template_variables,
    unfilled_message,
    unfilled_variables,
)

GROUPING_SOURCES = ("api", "local")
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_WORKERS = 4
DEFAULT_TIMEZONE = "Asia/Shanghai"

Templates = Mapping[int, Mapping[str, Any]]


@dataclass(frozen=True)
class SendRequest:
    """
    What one send asks for, rendered: the operator's parameters (see ``JuheSendSmsOperator``).

    Give ``mobiles`` or ``recipients``, and ``tpl_id`` or ``carrier_tpl_ids``.
    """

    mobiles: Any = None
    recipients: Any = None
    mobile_field: str = "mobile"
    tpl_id: Any = None
    tpl_value: Any = None
    carrier_tpl_ids: Any = None
    source: str = "api"
    suppress: Any = None
    send_window: Sequence[str] | None = None
    timezone: str = DEFAULT_TIMEZONE
    report_path: Any = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_workers: int = DEFAULT_MAX_WORKERS
    dry_run: bool = False
    max_fee: int | None = None
    max_recipients: int | None = None
    columns: Mapping[str, str] | None = None
    encoding: str = "utf-8"
    allow_empty_suppress: bool = False

    @property
    def field(self) -> str:
        """The parameter that holds the audience, for messages."""
        return "mobiles" if self.recipients is None else "recipients"

    @classmethod
    def fields(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]


@dataclass(frozen=True)
class Failure:
    """Why a finished send fails its task, and whether a retry can change anything."""

    message: str
    final: bool


@dataclass(frozen=True)
class Finished:
    """
    The send is over for this try.

    :param result: what the task returns: the summary (or the dry run's estimate).
    :param summary: the summary itself (``None`` for a dry run).
    :param stopped_by: a refusal that stopped every call (the key is not allowed).
    :param sent_now: this try made calls.
    :param report_error: the report could not be written (the sends are settled).
    """

    result: dict[str, Any]
    summary: SendSummary | None = None
    stopped_by: Outcome | None = None
    sent_now: bool = False
    report_error: str | None = None

    def failure(self, fail_on_unknown: bool = True) -> Failure | None:
        """
        ``None`` when the task succeeds; else what failed, ``final`` when no retry can change it: a
        refusal of the key, refusals no retry changes, or only unknown outcomes left (never re-sent).
        """
        summary = self.summary
        if summary is None:  # a dry run
            return None
        if self.report_error:  # the sends are settled: a retry sends nothing and writes the report
            return Failure(self.report_error, final=False)
        if not summary.failed_count and (not summary.unknown_count or not fail_on_unknown):
            return None
        message = f"{summary.describe()} (of {summary.requested} requested; the summary is in XCom)"
        if self.stopped_by is not None:
            return Failure(f"{message}. Not retried: the key or connection is not allowed", final=True)
        if summary.failed_count:
            if summary.failures_final():
                return Failure(f"{message}. Not retried: a retry cannot change these refusals", final=True)
            return Failure(message, final=False)
        return Failure(
            f"{message}. Nothing is left for a retry to send{'' if self.sent_now else ' (this try sent nothing)'}"
            ": numbers with an unknown outcome are never sent again by this task instance. Check them in "
            "Juhe's console; send the ones that did not arrive from a new DAG run.",
            final=True,
        )


@dataclass(frozen=True)
class WaitUntil:
    """The send window is closed: nothing more may start before ``moment``."""

    moment: datetime
    numbers_left: int
    calls_left: int


class Campaign:
    """
    One try of a send. :meth:`run` it again (a retry, a resumption at the window's opening) with the
    same store: the ledger replays the plan and never starts a call an earlier try may have started.

    :param request: the rendered inputs.
    :param hook: the hook that makes the calls.
    :param store: ``get``/``set`` state that survives the task's tries (``task_state_store``); None:
        nothing survives (a warning says so).
    :param log: where progress is logged.
    """

    def __init__(
        self, request: SendRequest, hook: JuheSmsHook, store: StateStore | None, log: logging.Logger
    ) -> None:
        self.request = request
        self.max_fee: int | None = None
        self.max_recipients: int | None = None
        self.hook = hook
        self.store = store
        self.log = log

    def run(self) -> Finished | WaitUntil:
        """
        :raises JuheInputError: bad input, a guard exceeded, or inputs changed since an earlier try:
            before any send, and a retry cannot help.
        """
        request = self.request
        with input_checks():  # bad values fail here, before any request, not as an unknown per batch
            validate_batching(request.batch_size, request.max_workers)
            window = SendWindow.parse(request.send_window, request.timezone)
            report = report_location(request.report_path)
            carrier_tpl_ids = resolve_carrier_tpl_ids(request.carrier_tpl_ids)
            tpl_id = validate_tpl_id(request.tpl_id) if carrier_tpl_ids is None else None
            check_source(request.source)
            encode_tpl_value(request.tpl_value)  # its shape, before any request
            self.max_fee = _guard_value(request.max_fee, "max_fee")
            self.max_recipients = _guard_value(request.max_recipients, "max_recipients")
            for name in ("mobiles", "recipients"):  # text that is neither numbers nor a path
                check_text(getattr(request, name), name)
            suppress = read_suppressed(
                request.suppress, encoding=request.encoding, allow_empty=request.allow_empty_suppress
            )
        if carrier_tpl_ids:
            tpl_ids = sorted(set(carrier_tpl_ids.values()))
        else:
            assert tpl_id is not None  # validated above whenever carrier_tpl_ids is None (never empty)
            tpl_ids = [tpl_id]
        ledger = None if request.dry_run else SendLedger(self.store, self.log)
        previous = ledger.read_plan() if ledger else None
        guarded = self.max_fee is not None
        templates = self._read_templates() if request.dry_run or not previous or guarded else None
        if templates and request.recipients is None and not previous:
            self._check_filled(templates, tpl_ids)
        variables = previous.get("variables") if previous else self._variables(templates, tpl_ids)
        audience = self._audience(variables, suppress)
        summary = SendSummary(
            requested=audience.requested,
            invalid=list(audience.invalid),
            suppressed=len(audience.suppressed),
            duplicate_count=len(audience.duplicates),
            invalid_reasons=audience.invalid_reasons(),
        )
        if not request.dry_run:  # session, pool and pacer built once, sized for the workers
            self.hook.prepare(request.max_workers)
        with input_checks():  # a carrier without a template, or inputs changed since an earlier try
            plan = SendPlan.make(
                to_send=audience.to_send,
                not_sent=[*audience.invalid, *audience.suppressed],
                tpl_id=tpl_id,
                carrier_tpl_ids=carrier_tpl_ids,
                source=request.source,
                variables=variables,
                batch_size=request.batch_size,
                previous=previous,
                # called only with previous, which only a ledger gives
                previous_overrides=lambda: ledger.read_overrides(previous) if ledger and previous else {},
                group=self.hook.group_mobiles,
            )
        if request.dry_run:
            return Finished(self._dry_run(summary, plan, templates))
        assert ledger is not None  # a dry run is the only run without one
        if plan.replayed:
            self.log.info("Replaying the plan of an earlier try: %d batch(es)", len(plan.batches))
        ledger.load(len(plan.batches), replayed=plan.replayed)
        pending = summary.resume(plan.batches, ledger)
        if len(pending) < len(plan.batches):
            self.log.info(
                "Earlier tries: %d number(s) sent, %d with an unknown outcome (not sent again)",
                summary.sent,
                summary.unknown_count,
            )
        if plan.replayed:
            assert previous is not None  # a replayed plan is the earlier try's
            summary.estimated_fee = previous.get("estimated_fee")
            self._guard(pending, templates)
        else:  # a fresh plan: every batch is pending, so the plan's estimate is the guard's too
            summary.estimated_fee = estimate_fee(plan.batches, templates)
            self._guard(pending, templates, fee=summary.estimated_fee, estimated=True)
            ledger.save_plan(plan, estimated_fee=summary.estimated_fee)
            # counted once per task instance, when its plan is fixed (later tries replay it)
            metrics.incr("sms.invalid", summary.invalid_count)
            metrics.incr("sms.suppressed", summary.suppressed)
        if window is not None and pending and not window.is_open(now()):
            return self._wait(window, pending, "is closed")
        self.log.info(
            "Sending %d number(s) in %d call(s) of up to %d number(s), %d call(s) at once",
            sum(len(b.mobiles) for b in pending),
            len(pending),
            plan.batch_size,
            request.max_workers,
        )
        closed: list[Batch] = []  # stopped right before their request by the window's close
        before_attempt = None if window is None else lambda: _check_open(window)
        dispatcher = Dispatcher(
            send=lambda batch: send_batch(self.hook, batch, before_attempt),
            ledger=ledger,
            max_workers=request.max_workers,
            on_outcome=lambda batch, outcome: (
                closed.append(batch) if not outcome.started else self._record(summary, batch, outcome)
            ),
            log=self.log,
            should_stop=None if window is None else lambda: not window.is_open(now()),
        )
        not_started = sorted([*dispatcher.run(pending), *closed], key=lambda batch: batch.index)
        stopped_by = dispatcher.stop_outcome
        if dispatcher.writes:  # a slow task state store slows every send: say what it cost
            self.log.info(
                "Ledger: %d write(s) to %s, %.0f ms each on average",
                dispatcher.writes,
                getattr(self.store, "where", "the task state store"),
                1000 * dispatcher.write_seconds / dispatcher.writes,
            )
        if not_started and stopped_by is None and window is not None:  # the window closed mid-send
            return self._wait(window, not_started, "closed")
        stop = stopped_by or Outcome(FAILED_OUTCOME, reason="not started")
        for batch in not_started:  # only after a refusal that stopped every call: surely not sent
            summary.record(batch, stop)
            metrics.incr(f"sms.{stop.status}", len(batch.mobiles))
        report_error = None
        if report is not None:
            rows = report_rows(
                plan, ledger, summary.outcomes, audience.invalid, audience.suppressed, audience.duplicates
            )
            try:
                summary.report = write_report(report, rows)
                self.log.info("Wrote the per-recipient report to %s", summary.report)
            except Exception as error:  # the sends are settled: a retry sends nothing and writes it
                report_error = f"report_path: could not write {report}: {type(error).__name__}: {error}"
        self._log_totals(summary)
        return Finished(summary.as_dict(), summary, stopped_by, len(pending) > 0, report_error)

    # -- steps ------------------------------------------------------------------------------------

    def _audience(self, variables: dict[str, list[str]] | None, suppress: frozenset[str]) -> Audience:
        request = self.request
        with input_checks():
            if request.recipients is None:
                audience = audience_from_mobiles(request.mobiles, request.tpl_value, suppress)
            else:
                required = frozenset(v for names in (variables or {}).values() for v in names)
                audience = audience_from_rows(
                    request.recipients,
                    mobile_field=request.mobile_field,
                    tpl_value=request.tpl_value,
                    required=required if variables else None,
                    suppress=suppress,
                    columns=request.columns,
                    encoding=request.encoding,
                )
        invalid = list(audience.invalid)
        if invalid and not audience.to_send:  # bad entries left nothing: never a green no-op
            raise JuheInputError(nothing_to_send_message(audience, request.field, variables))
        if invalid:
            self.log.warning(
                "%d invalid entr(ies) will not be sent (%s): %s",
                len(invalid),
                audience.invalid_reasons(),
                mask_sample(invalid, limit=10),
            )
        if audience.duplicates:
            self.log.info(
                "%d repeated entr(ies) not sent again: %s",
                len(audience.duplicates),
                mask_sample([number for number, _ in audience.duplicates], limit=5),
            )
        if audience.suppressed:
            self.log.info("%d number(s) in the opt-out list will not be sent", len(audience.suppressed))
        return audience

    def _read_templates(self) -> dict[int, dict[str, Any]] | None:
        """
        The account's templates by id (their text gives variables and SMS parts); ``None`` when
        unreadable: then nothing is checked against the text and no fee is estimated.

        :raises JuheGuardError: unreadable while ``max_fee`` is set on a real send: a guard that
            cannot evaluate refuses, before any send.
        """
        try:
            return {t["tpl_id"]: t for t in self.hook.list_templates()}
        except JuheError as error:
            # A refused key fails a dry run here; a real send records it against every batch instead.
            if isinstance(error, JuheConfigError) or (error.final and self.request.dry_run):
                raise
            if self.max_fee is not None and not self.request.dry_run:
                raise JuheGuardError(
                    f"max_fee: the templates' text could not be read, so the fee cannot be estimated: "
                    f"{error}",
                    final=error.final,
                ) from error
            self.log.warning(
                "Could not read the templates (variables not checked, no fee estimated): %s", error
            )
            return None

    def _check_filled(self, templates: Templates, tpl_ids: list[int]) -> None:
        """With ``mobiles``, a variable that ``tpl_value`` leaves unfilled fails before any send."""
        for tpl_id in tpl_ids:
            template = templates.get(tpl_id)
            if template is None:
                continue
            with input_checks():
                unfilled = unfilled_variables(template["content"], self.request.tpl_value)
            if unfilled:
                raise JuheInputError(unfilled_message(tpl_id, unfilled, "every call"))

    def _variables(self, templates: Templates | None, tpl_ids: list[int]) -> dict[str, list[str]] | None:
        """The variables each template's text uses, for the rows' check; ``None`` when not known."""
        if self.request.recipients is None or not templates:
            return None
        known = {
            str(i): sorted(template_variables(templates[i]["content"])) for i in tpl_ids if i in templates
        }
        return known or None

    def _guard(
        self,
        pending: list[Batch],
        templates: Templates | None,
        fee: int | None = None,
        estimated: bool = False,
    ) -> None:
        """
        ``max_recipients`` and ``max_fee`` over what is left to send, before any call of this try.
        A guard that cannot evaluate refuses: ``max_fee`` without the text of every template to send.

        :param fee: the estimate of ``pending`` when ``estimated`` (``None``: it could not be made).
        """
        numbers = sum(len(batch.mobiles) for batch in pending)
        if self.max_recipients is not None and numbers > self.max_recipients:
            raise JuheInputError(
                f"max_recipients: {numbers} number(s) to send exceed max_recipients {self.max_recipients}; "
                "nothing was sent"
            )
        if self.max_fee is not None:
            fee = fee if estimated else estimate_fee(pending, templates)
            if fee is None:
                unknown = sorted({batch.tpl_id for batch in pending} - set(templates or {}))
                raise JuheGuardError(
                    f"max_fee: the text of template(s) {', '.join(map(str, unknown))} is not among the "
                    "account's templates, so the fee cannot be estimated (Juhe would refuse the send, 228801)",
                    final=True,
                )
            if fee > self.max_fee:
                raise JuheInputError(
                    f"max_fee: the estimated fee of what is left to send, {fee} ({numbers} number(s)), "
                    f"exceeds max_fee {self.max_fee}; nothing was sent"
                )

    def _log_totals(self, summary: SendSummary) -> None:
        self.log.info(
            "Requested %d: sent %d in %d call(s), fee %d; invalid %d, suppressed %d, failed %d, unknown %d; "
            "%d duplicate entr(ies) not counted",
            summary.requested,
            summary.sent,
            summary.batches_count,
            summary.fee,
            summary.invalid_count,
            summary.suppressed,
            summary.failed_count,
            summary.unknown_count,
            summary.duplicate_count,
        )
        if summary.unknown_count and not summary.failed_count:
            self.log.warning(
                "%d number(s) have an unknown outcome: check them in Juhe's console before sending them "
                "again from a new run",
                summary.unknown_count,
            )

    def _wait(self, window: SendWindow, left: list[Batch], closed: str) -> WaitUntil:
        opening = window.next_opening(now())
        numbers = sum(len(b.mobiles) for b in left)
        self.log.info(
            "The send window %s %s: %d number(s) in %d call(s) left; resuming at %s",
            window,
            closed,
            numbers,
            len(left),
            opening.isoformat(),
        )
        return WaitUntil(opening, numbers, len(left))

    def _record(self, summary: SendSummary, batch: Batch, outcome: Outcome) -> None:
        summary.record(batch, outcome)
        metrics.incr(f"sms.{outcome.status}", len(batch.mobiles))  # sent, failed or unknown: this try's calls
        if outcome.status == "failed":
            self.log.warning(
                "Batch %d (%d numbers) failed: %s %s",
                batch.index,
                len(batch.mobiles),
                outcome.error_code,
                outcome.reason,
            )
        elif outcome.status == "unknown":
            self.log.warning(
                "Outcome of batch %d (%d numbers: %s) is unknown%s: %s",
                batch.index,
                len(batch.mobiles),
                mask_sample(list(batch.mobiles), limit=3),
                f" (sid {outcome.sid})" if outcome.sid else "",
                outcome.reason,
            )

    def _dry_run(self, summary: SendSummary, plan: SendPlan, templates: Templates | None) -> dict[str, Any]:
        planned, calls, estimated_fee = tally(plan.iter_batches(), templates)  # streamed: 1M rows fit
        self.log.info(
            "Dry run: %d number(s) in %d call(s), estimated fee %s",
            planned,
            calls,
            "unknown (the template text was not read)" if estimated_fee is None else estimated_fee,
        )
        return {
            **summary.as_dict(),
            "dry_run": True,
            "planned": planned,
            "planned_batches": calls,
            "estimated_fee": estimated_fee,
        }


def _check_open(window: SendWindow) -> None:
    """Right before a request starts: the window must still be open."""
    if not window.is_open(now()):
        raise JuheNotStarted(f"the send window {window} has closed; nothing was sent")


def tally(batches: Iterable[Batch], templates: Templates | None) -> tuple[int, int, int | None]:
    """
    Numbers, calls and the estimated fee: SMS parts of each rendered text times its numbers. The
    fee is ``None`` when the text of a template to send is not known: an estimate is never a guess.
    """
    numbers = calls = fee = 0
    known = True
    last: tuple[int, bytes] | None = None
    parts = 1
    for batch in batches:
        if (batch.tpl_id, batch.tpl_value) != last:  # groups of equal values come one after another
            last = (batch.tpl_id, batch.tpl_value)
            template = (templates or {}).get(batch.tpl_id)
            known = known and template is not None
            parts = (
                message_parts(template["signature"], template["content"], batch.tpl_value) if template else 1
            )
        numbers += len(batch.mobiles)
        calls += 1
        fee += parts * len(batch.mobiles)
    return numbers, calls, fee if known else None


def estimate_fee(batches: Iterable[Batch], templates: Templates | None) -> int | None:
    """What a dry run estimates these calls cost; ``None`` when a template's text is not known."""
    return tally(batches, templates)[2]


def group_mobiles(hook: JuheSmsHook, mobiles: str | Iterable[str], source: str) -> dict[str, list[str]]:
    """Group numbers by carrier through the API or, with ``source="local"``, from the prefix table."""
    with input_checks():
        check_source(source)
        if source == "local":
            return group_by_carrier(require_valid(mobiles))
    return hook.group_mobiles(mobiles)


def check_source(source: str) -> None:
    if source not in GROUPING_SOURCES:
        raise ValueError(f"source: expected 'api' or 'local', got {source!r}")


def _guard_value(value: Any, name: str) -> int | None:
    """A guard's limit: a whole number ≥ 0 (rendered templates give it as digits), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a whole number ≥ 0 or None, got {value!r}")
    return value


def nothing_to_send_message(
    audience: Audience, field_name: str, variables: Mapping[str, Sequence[str]] | None = None
) -> str:
    """
    Why a non-empty audience has nothing to send: the reasons with their counts, what else was left
    out, and the likely cause (a file's columns beside the template's variables, a list rendered to
    text).
    """
    invalid = audience.invalid
    reasons = "; ".join(
        f"{reason} ×{count}"
        for reason, count in sorted(audience.invalid_reasons().items(), key=lambda r: -r[1])
    )
    others = [
        f"{len(audience.suppressed)} suppressed" if audience.suppressed else "",
        f"{len(audience.duplicates)} duplicate entr(ies)" if audience.duplicates else "",
    ]
    message = (
        f"{field_name}: nothing to send: {len(invalid)} invalid ({shorten(reasons, 300, separator=';')})"
    )
    message += "".join(f", {other}" for other in others if other)
    if any(reason != NOT_A_NUMBER for reason in invalid.values()):
        used = sorted({name for names in (variables or {}).values() for name in names})
        if audience.header is not None:
            message += f". The file's columns: {shorten(mask_in_text(', '.join(audience.header)), 300, separator=',')}"
        if used:
            message += f"; the template uses: {', '.join(used)}"
        message += (
            ". Every row needs a value for each variable the template uses: from a column of its own "
            '(rename columns to the variables with columns=, e.g. columns={"手机号": "mobile", "姓名": "name"}) '
            "or, for a value every row shares, from tpl_value="
        )
        return message
    message += f": {mask_sample(list(invalid))}"
    if any(entry[:1] in "[('\"" or entry[-1:] in "])'\"" for entry in invalid):
        message += (
            ". The value looks like a list rendered to its text form, e.g. \"['139…', '139…']\": pass "
            "the XComArg itself (mobiles=load.output), or set render_template_as_native_obj=True on the "
            "DAG when mobiles is a Jinja string such as \"{{ ti.xcom_pull('load') }}\""
        )
    return message
