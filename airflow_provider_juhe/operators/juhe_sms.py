"""Operators for the Juhe financial SMS API: thin Airflow glue over JuheSmsHook."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_juhe.exceptions import JuheAuthError, JuheError, JuheInputError, input_checks
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook, validate_tpl_id
from airflow_provider_juhe.mobiles import group_by_carrier, mask_sample, parse_recipients, require_valid
from airflow_provider_juhe.sending.dispatch import Dispatcher, Outcome, send_batch
from airflow_provider_juhe.sending.ledger import MAY_HAVE_STARTED, SENT, SendLedger
from airflow_provider_juhe.sending.plan import (
    Batch,
    SendPlan,
    resolve_carrier_tpl_ids,
    validate_batching,
)
from airflow_provider_juhe.sending.report import SendSummary
from airflow_provider_juhe.sms_content import encode_tpl_value, render_text, sms_parts

if TYPE_CHECKING:
    import jinja2

GROUPING_SOURCES = ("api", "local")
_TEMPLATE_MARKS = ("{{", "{%", "{#")
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_WORKERS = 4


class JuheBaseOperator(BaseOperator):
    """
    Shared by the Juhe operators: the connection, the hook, and failing without retries on auth errors
    and bad input.

    :param juhe_conn_id: Airflow connection of type ``juhe_sms``.
    """

    ui_color = "#e8f4ff"

    def __init__(self, *, juhe_conn_id: str = JuheSmsHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.juhe_conn_id = juhe_conn_id

    @cached_property
    def hook(self) -> JuheSmsHook:
        return JuheSmsHook(juhe_conn_id=self.juhe_conn_id)

    def execute(self, context: Context) -> Any:
        try:
            return self.call_juhe(context)
        except JuheAuthError as error:
            raise AirflowFailException(f"{error} (not retried: the key or caller is not allowed)") from error
        except JuheInputError as error:  # a retry cannot help
            raise AirflowFailException(str(error)) from error

    def call_juhe(self, context: Context) -> Any:
        raise NotImplementedError

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        # A literal list of 100,000 numbers would otherwise be compiled by Jinja one string at a time.
        if _holds_no_template(content):
            return content
        return super().render_template(content, context, jinja_env, seen_oids)


class JuheSubmitTemplateOperator(JuheBaseOperator):
    """
    Submit an SMS template for review; returns ``submit_template``'s dict (``tpl_id``, ``carrier_tpl_ids``).

    :param signature: the signature shown in 【】, e.g. ``天聚地合``.
    :param content: template text with ``#name#`` variables.
    """

    template_fields: Sequence[str] = ("signature", "content")

    def __init__(self, *, signature: str, content: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signature = signature
        self.content = content

    def call_juhe(self, context: Context) -> dict[str, Any]:
        submitted = self.hook.submit_template(self.signature, self.content)
        self.log.info(
            "Submitted template %s for review: %s", submitted["tpl_id"], submitted["carrier_tpl_ids"]
        )
        return submitted


class JuheListTemplatesOperator(JuheBaseOperator):
    """Return the account's templates with their review state (``list_templates()``)."""

    def call_juhe(self, context: Context) -> list[dict[str, Any]]:
        templates = self.hook.list_templates()
        self.log.info("The account has %d template(s)", len(templates))
        return templates


class JuheGroupMobilesOperator(JuheBaseOperator):
    """
    Group numbers by carrier; returns ``{"mobile", "unicom", "telecom", "unknown"}`` lists.

    :param mobiles: a list, or a string separated by commas, whitespace or newlines.
    :param source: ``"api"`` asks Juhe (authoritative, 10,000 numbers per call); ``"local"`` uses the
        prefix table with no API call (fast, but blind to number portability).
    """

    template_fields: Sequence[str] = ("mobiles", "source")

    def __init__(self, *, mobiles: str | Iterable[str], source: str = "api", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mobiles = mobiles
        self.source = source

    def call_juhe(self, context: Context) -> dict[str, list[str]]:
        groups = group_mobiles(self.hook, self.mobiles, self.source)
        self.log.info("Carrier groups: %s", {carrier: len(numbers) for carrier, numbers in groups.items()})
        return groups


class JuheSendSmsOperator(JuheBaseOperator):
    """
    Send an approved template to many numbers, every recipient accounted for, none twice.

    Numbers are normalised, de-duplicated and validated (invalid ones are reported, never sent), then
    sent in batches of ``batch_size`` numbers per call, up to ``max_workers`` calls at once. The first
    try of a task instance fixes the plan (which number goes with which template, in which batch) in
    the task-instance state store; later tries replay it and never send a batch an earlier try may
    have sent. Returns the summary ``{"requested", "sent", "fee", "suppressed", "invalid",
    "invalid_count", "failed", "failed_count", "unknown", "unknown_count", "batches", "report"}``.
    When anything failed the task fails after every batch was tried (a retry sends what surely
    failed); when only unknowns are left it fails without retries, or succeeds with a warning when
    ``fail_on_unknown=False``.

    :param mobiles: a list, or a string separated by commas, whitespace or newlines. (templated)
    :param tpl_id: an approved template id, for every number. (templated)
    :param tpl_value: the template variables, ``{"code": "123456"}`` (or an encoded string). (templated)
    :param carrier_tpl_ids: instead of ``tpl_id``: per-carrier template ids (e.g. the submit task's
        XComArg); each number goes with its carrier's template, unknown carriers with ``all``. (templated)
    :param source: how numbers are grouped for ``carrier_tpl_ids``: ``"api"`` or ``"local"``. (templated)
    :param batch_size: numbers per API call, 1 to 1,000 (a retry keeps the first try's).
    :param max_workers: API calls in flight at once, 1 to 64.
    :param dry_run: validate, group, plan batches and estimate the fee without sending.
    :param fail_on_unknown: fail the task when some numbers have an unknown outcome; with ``False`` they
        are reported (summary, a warning) and the task succeeds.
    """

    template_fields: Sequence[str] = ("mobiles", "tpl_id", "tpl_value", "carrier_tpl_ids", "source")
    template_fields_renderers: ClassVar[dict[str, str]] = {"tpl_value": "json", "carrier_tpl_ids": "json"}

    def __init__(
        self,
        *,
        mobiles: str | Iterable[str],
        tpl_id: int | str | None = None,
        tpl_value: Mapping[str, object] | str | None = None,
        carrier_tpl_ids: Mapping[str, Any] | None = None,
        source: str = "api",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_workers: int = DEFAULT_MAX_WORKERS,
        dry_run: bool = False,
        fail_on_unknown: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_batching(batch_size, max_workers)
        if (tpl_id is None) == (carrier_tpl_ids is None):
            raise ValueError("tpl_id, carrier_tpl_ids: give exactly one of them")
        self.mobiles = mobiles
        self.tpl_id = tpl_id
        self.tpl_value = tpl_value
        self.carrier_tpl_ids = carrier_tpl_ids
        self.source = source
        self.batch_size = batch_size
        self.max_workers = max_workers
        self.dry_run = dry_run
        self.fail_on_unknown = fail_on_unknown

    def call_juhe(self, context: Context) -> dict[str, Any]:
        recipients = parse_recipients(self.mobiles)
        if recipients.requested and not recipients.valid:
            raise JuheInputError(_no_valid_number_message(recipients.invalid))
        if recipients.invalid:
            self.log.warning(
                "%d invalid number(s) will not be sent: %s",
                len(recipients.invalid),
                mask_sample(recipients.invalid, limit=10),
            )
        with input_checks():  # bad values fail here, before any request, not as an unknown per batch
            tpl_value = encode_tpl_value(self.tpl_value)
            carrier_tpl_ids = resolve_carrier_tpl_ids(self.carrier_tpl_ids)
            tpl_id = validate_tpl_id(self.tpl_id) if carrier_tpl_ids is None else None
            _check_source(self.source)
        summary = SendSummary(requested=recipients.requested, invalid=recipients.invalid)
        if not self.dry_run:  # session, pool and pacer built once, sized for the workers, before any call
            self.hook.prepare(self.max_workers)
        ledger = None if self.dry_run else SendLedger(context.get("task_state_store"), self.log)
        previous = ledger.read_plan() if ledger else None
        with input_checks():  # a carrier without a template, or inputs changed since an earlier try
            plan = SendPlan.make(
                valid=recipients.valid,
                invalid=recipients.invalid,
                tpl_id=tpl_id,
                carrier_tpl_ids=carrier_tpl_ids,
                source=self.source,
                tpl_value=tpl_value,
                batch_size=self.batch_size,
                previous=previous,
                previous_overrides=lambda: ledger.read_overrides(previous),
                group=self.hook.group_mobiles,
            )
        if self.dry_run:
            return self._dry_run(summary, plan.batches)
        if plan.replayed:
            self.log.info("Replaying the plan of an earlier try: %d batch(es)", len(plan.batches))
        else:
            ledger.save_plan(plan)
        ledger.load(len(plan.batches), replayed=plan.replayed)
        pending = self._resume(plan.batches, ledger, summary)

        self.log.info(
            "Sending %d number(s) in %d batch(es) of up to %d, %d call(s) at once",
            sum(len(b.mobiles) for b in pending),
            len(pending),
            plan.record["batch_size"],
            self.max_workers,
        )
        dispatcher = Dispatcher(
            send=lambda batch: send_batch(self.hook, batch, tpl_value),
            ledger=ledger,
            max_workers=self.max_workers,
            on_outcome=lambda batch, outcome: self._record(summary, batch, outcome),
            log=self.log,
        )
        not_started = dispatcher.run(pending)
        auth_error = dispatcher.stop_outcome
        for batch in not_started:  # only after an auth error: surely not sent
            summary.record_failed(batch, auth_error.error_code, auth_error.reason)
        return self._conclude(context, summary, auth_error, sent_now=len(pending) > 0)

    def _resume(self, batches: list[Batch], ledger: SendLedger, summary: SendSummary) -> list[Batch]:
        """Account for what earlier tries settled or may have started; return what is still to send."""
        pending = []
        for batch in batches:
            state = ledger.state(batch.index)
            if state == SENT:
                summary.record_sent(batch, *ledger.sent(batch.index))
            elif state in MAY_HAVE_STARTED:
                summary.record_unknown(batch)
            else:
                pending.append(batch)
        if len(pending) < len(batches):
            self.log.info(
                "Earlier tries: %d number(s) sent, %d with an unknown outcome (not sent again)",
                summary.sent,
                summary.unknown_count,
            )
        return pending

    def _record(self, summary: SendSummary, batch: Batch, outcome: Outcome) -> None:
        if outcome.status == "sent":
            summary.record_sent(batch, outcome.sid, outcome.fee)
        elif outcome.status == "failed":
            self.log.warning(
                "Batch %d (%d numbers) failed: %s %s",
                batch.index,
                len(batch.mobiles),
                outcome.error_code,
                outcome.reason,
            )
            summary.record_failed(batch, outcome.error_code, outcome.reason)
        else:
            self.log.warning(
                "Outcome of batch %d (%d numbers: %s) is unknown%s: %s",
                batch.index,
                len(batch.mobiles),
                mask_sample(list(batch.mobiles), limit=3),
                f" (sid {outcome.sid})" if outcome.sid else "",
                outcome.reason,
            )
            summary.record_unknown(batch)

    def _conclude(
        self, context: Context, summary: SendSummary, auth_error: Outcome | None, *, sent_now: bool
    ) -> dict[str, Any]:
        result = summary.as_dict()
        self.log.info(
            "Requested %d: sent %d in %d batch(es), fee %d; invalid %d, failed %d, unknown %d",
            summary.requested,
            summary.sent,
            len(summary.batches),
            summary.fee,
            summary.invalid_count,
            summary.failed_count,
            summary.unknown_count,
        )
        if not summary.failed_count and not summary.unknown_count:
            return result
        if not summary.failed_count and not self.fail_on_unknown:
            self.log.warning(
                "%d number(s) have an unknown outcome (fail_on_unknown=False): check them in Juhe's "
                "console before sending them again from a new run",
                summary.unknown_count,
            )
            return result
        context["ti"].xcom_push(key="return_value", value=result)
        message = (
            f"{summary.failed_count} number(s) failed and {summary.unknown_count} have an unknown outcome "
            f"(of {summary.requested} requested); see the summary in XCom"
        )
        if auth_error is not None:
            raise AirflowFailException(f"Juhe error {auth_error.error_code}: {auth_error.reason}; {message}")
        if summary.failed_count:  # a retry sends the batches that surely failed, and only those
            raise JuheError(message)
        raise AirflowFailException(
            f"{message}. Nothing is left for a retry to send{'' if sent_now else ' (this try sent nothing)'}: "
            "numbers with an unknown outcome are never sent again by this task instance. Check them in "
            "Juhe's console; send the ones that did not arrive from a new DAG run."
        )

    def _dry_run(self, summary: SendSummary, batches: list[Batch]) -> dict[str, Any]:
        routed: dict[int, int] = {}
        for batch in batches:
            routed[batch.tpl_id] = routed.get(batch.tpl_id, 0) + len(batch.mobiles)
        parts = self._parts_per_sms(list(routed))
        planned = sum(routed.values())
        estimated_fee = sum(parts.get(tpl_id, 1) * count for tpl_id, count in routed.items())
        self.log.info(
            "Dry run: %d number(s) in %d batch(es), estimated fee %d", planned, len(batches), estimated_fee
        )
        return {
            **summary.as_dict(),
            "dry_run": True,
            "planned": planned,
            "planned_batches": len(batches),
            "estimated_fee": estimated_fee,
        }

    def _parts_per_sms(self, tpl_ids: list[int]) -> dict[int, int]:
        """SMS parts per template from its rendered text, when the account's template list is readable."""
        if not tpl_ids or isinstance(self.tpl_value, str):
            return {}
        try:
            templates = {t["tpl_id"]: t for t in self.hook.list_templates()}
        except JuheError as error:
            self.log.warning(
                "Could not read templates for the fee estimate (1 SMS per number assumed): %s", error
            )
            return {}
        return {
            tpl_id: sms_parts(f"【{t['signature']}】" + render_text(t["content"], self.tpl_value or {}))
            for tpl_id in tpl_ids
            if (t := templates.get(tpl_id))
        }


def _no_valid_number_message(invalid: list[str]) -> str:
    message = f"mobiles: none of the {len(invalid)} entries is a valid number ({mask_sample(invalid)})"
    if any(entry[:1] in "[('\"" or entry[-1:] in "])'\"" for entry in invalid):
        message += (
            ". The value looks like a list rendered to its text form, e.g. \"['139…', '139…']\": pass "
            "the XComArg itself (mobiles=load.output), or set render_template_as_native_obj=True on the "
            "DAG when mobiles is a Jinja string such as \"{{ ti.xcom_pull('load') }}\""
        )
    return message


def _holds_no_template(content: Any) -> bool:
    """A string, or a flat list/tuple of strings and numbers, without any Jinja syntax."""
    if isinstance(content, str):
        return not any(mark in content for mark in _TEMPLATE_MARKS)
    if type(content) in (list, tuple):
        return all(
            isinstance(item, (int, float)) or (isinstance(item, str) and "{" not in item) for item in content
        )
    return False


def group_mobiles(hook: JuheSmsHook, mobiles: str | Iterable[str], source: str) -> dict[str, list[str]]:
    """Group through the API or, with ``source="local"``, from the prefix table."""
    with input_checks():
        _check_source(source)
        if source == "local":
            return group_by_carrier(require_valid(mobiles))
    return hook.group_mobiles(mobiles)


def _check_source(source: str) -> None:
    if source not in GROUPING_SOURCES:
        raise ValueError(f"source: expected 'api' or 'local', got {source!r}")
