"""Operators for the Juhe financial SMS API: thin Airflow glue over JuheSmsHook."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.sdk import BaseOperator, Context

from airflow_provider_juhe._compat import AirflowFailException
from airflow_provider_juhe.exceptions import JuheConfigError, JuheError, JuheInputError, input_checks
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook, validate_tpl_id
from airflow_provider_juhe.mobiles import group_by_carrier, mask_sample, require_valid
from airflow_provider_juhe.sending.dispatch import Dispatcher, Outcome, send_batch
from airflow_provider_juhe.sending.fallback_store import ledger_store
from airflow_provider_juhe.sending.ledger import SendLedger
from airflow_provider_juhe.sending.plan import Batch, SendPlan, resolve_carrier_tpl_ids, validate_batching
from airflow_provider_juhe.sending.recipients import (
    NOT_A_NUMBER,
    Audience,
    audience_from_mobiles,
    audience_from_rows,
    check_text,
    is_location,
    masked_view,
    read_suppressed,
)
from airflow_provider_juhe.sending.report import SendSummary, report_location, report_rows, write_report
from airflow_provider_juhe.sending.window import SendWindow, now
from airflow_provider_juhe.sms_content import (
    encode_tpl_value,
    message_parts,
    template_variables,
    unfilled_variables,
)

if TYPE_CHECKING:
    import jinja2

GROUPING_SOURCES = ("api", "local")
_TEMPLATE_MARKS = ("{{", "{%", "{#")
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_WORKERS = 4
DEFAULT_TIMEZONE = "Asia/Shanghai"


class JuheBaseOperator(BaseOperator):
    """
    Shared by the Juhe operators: the connection, the hook, and failing without retries on auth errors
    and bad input.

    :param juhe_conn_id: Airflow connection of type ``juhe_sms``.
    """

    ui_color = "#e8f4ff"

    #: Template fields that may hold customers' numbers (and values): masked once rendered.
    personal_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, juhe_conn_id: str = JuheSmsHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.juhe_conn_id = juhe_conn_id
        self._inputs: dict[str, Any] = {}

    @cached_property
    def hook(self) -> JuheSmsHook:
        return JuheSmsHook(juhe_conn_id=self.juhe_conn_id)

    def execute(self, context: Context) -> Any:
        try:
            return self.call_juhe(context)
        except JuheError as error:
            if error.final:  # bad input, a connection that cannot work, a refusal no retry changes
                raise AirflowFailException(f"{error} (not retried: a retry cannot change it)") from error
            raise

    def call_juhe(self, context: Context) -> Any:
        raise NotImplementedError

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        # The one rendering step of mapped and unmapped tasks alike.
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            self._mask_personal_fields()

    def _mask_personal_fields(self) -> None:
        """
        Keep rendered numbers and rows for ``execute`` and leave a masked description in their place:
        Airflow stores and shows the task's rendered fields from these attributes.
        """
        for name in self.personal_fields:
            value = getattr(self, name)
            if (
                name not in self._inputs
                and value is not None
                and not (name != "mobiles" and is_location(value))
            ):
                self._inputs[name] = value
                setattr(self, name, masked_view(value, getattr(self, "mobile_field", "mobile")))

    def _input(self, name: str) -> Any:
        """A personal field's rendered value (or the attribute, when nothing was rendered)."""
        return self._inputs.get(name, getattr(self, name))

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
    personal_fields: ClassVar[tuple[str, ...]] = ("mobiles",)

    def __init__(self, *, mobiles: str | Iterable[str], source: str = "api", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mobiles = mobiles
        self.source = source

    def call_juhe(self, context: Context) -> dict[str, list[str]]:
        groups = group_mobiles(self.hook, self._input("mobiles"), self.source)
        self.log.info("Carrier groups: %s", {carrier: len(numbers) for carrier, numbers in groups.items()})
        return groups


class JuheSendSmsOperator(JuheBaseOperator):
    """
    Send an approved template to many numbers, or personalised text to many customers, every
    recipient accounted for, none twice.

    Give ``mobiles`` (one ``tpl_value`` for all) or ``recipients`` (one row per customer, its own
    variables). Numbers are normalised, de-duplicated and validated (invalid ones are reported, never
    sent); numbers in ``suppress`` are never sent. Numbers with equal values share calls of up to
    ``batch_size`` numbers, up to ``max_workers`` calls at once. The first try of a task instance fixes
    the plan in the task-instance state store; later tries (and resumptions after a send window
    closed) replay it and never send a batch an earlier try may have sent. Returns the summary
    ``{"requested", "sent", "fee", "suppressed", "invalid", "invalid_count", "failed", "failed_count",
    "unknown", "unknown_count", "batches", "batches_count", "report"}`` (lists capped at 1,000 numbers
    each, ``batches`` at 1,000 calls). When
    anything failed the task fails after every batch was tried (a retry sends what surely failed);
    when only unknowns are left it fails without retries, or succeeds with a warning when
    ``fail_on_unknown=False``.

    After rendering, ``mobiles``, ``recipients`` and ``suppress`` values that hold numbers (not a
    path) are replaced by a masked description, which is what Airflow stores as the task's rendered
    fields: customers' numbers and values stay out of the Rendered Templates view.

    :param mobiles: a list, or a string separated by commas, whitespace or newlines. (templated)
    :param recipients: instead of ``mobiles``: rows, each a mapping with the number under
        ``mobile_field`` and template variables under the other keys; or a path/URI (``str`` or
        ``ObjectStoragePath``) of a ``.csv`` (with a header row) or ``.jsonl`` file, optionally
        ``.gz``, read as a stream. A row's variables override ``tpl_value``; when the template text is
        readable, a row missing one of its variables is invalid. (templated)
    :param mobile_field: the key or CSV column that holds the number.
    :param tpl_id: an approved template id, for every number. (templated)
    :param tpl_value: the template variables, ``{"code": "123456"}`` (or an encoded string). (templated)
    :param carrier_tpl_ids: instead of ``tpl_id``: per-carrier template ids (e.g. the submit task's
        XComArg); each number goes with its carrier's template, unknown carriers with ``all``. (templated)
    :param source: how numbers are grouped for ``carrier_tpl_ids``: ``"api"`` or ``"local"``. (templated)
    :param suppress: numbers never to send to (opt-outs): a list (or numbers as text), or a path/URI of
        a text file (one number a line) or of a CSV with a ``mobile`` column. (templated)
    :param send_window: ``("08:00", "21:00")``: local times (``HH:MM[:SS]``) between which calls may
        start. Outside it the task defers (holding no worker slot) until the window opens, and a
        send still running when it closes defers and resumes at the next opening. (templated)
    :param timezone: the time zone of ``send_window``. (templated)
    :param report_path: a path/URI where a CSV with one row per requested number (status, sid, fee,
        error) is written at the end of each try, covering every try. (templated)
    :param batch_size: numbers per API call, 1 to 1,000 (a retry keeps the first try's).
    :param max_workers: API calls in flight at once, 1 to 64.
    :param dry_run: validate, group, plan and estimate the fee (SMS parts of each rendered text)
        without sending.
    :param fail_on_unknown: fail the task when some numbers have an unknown outcome; with ``False`` they
        are reported (summary, a warning) and the task succeeds.
    """

    template_fields: Sequence[str] = (
        "mobiles",
        "recipients",
        "tpl_id",
        "tpl_value",
        "carrier_tpl_ids",
        "source",
        "suppress",
        "send_window",
        "timezone",
        "report_path",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"tpl_value": "json", "carrier_tpl_ids": "json"}
    personal_fields: ClassVar[tuple[str, ...]] = ("mobiles", "recipients", "suppress")

    def __init__(
        self,
        *,
        mobiles: str | Iterable[str] | None = None,
        tpl_id: int | str | None = None,
        tpl_value: Mapping[str, object] | str | None = None,
        carrier_tpl_ids: Mapping[str, Any] | None = None,
        source: str = "api",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_workers: int = DEFAULT_MAX_WORKERS,
        dry_run: bool = False,
        fail_on_unknown: bool = True,
        recipients: Any = None,
        mobile_field: str = "mobile",
        suppress: Any = None,
        send_window: Sequence[str] | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        report_path: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_batching(batch_size, max_workers)
        if (tpl_id is None) == (carrier_tpl_ids is None):
            raise ValueError("tpl_id, carrier_tpl_ids: give exactly one of them")
        if (mobiles is None) == (recipients is None):
            raise ValueError("mobiles, recipients: give exactly one of them")
        self.mobiles = mobiles
        self.recipients = recipients
        self.mobile_field = mobile_field
        self.tpl_id = tpl_id
        self.tpl_value = tpl_value
        self.carrier_tpl_ids = carrier_tpl_ids
        self.source = source
        self.suppress = suppress
        self.send_window = send_window
        self.timezone = timezone
        self.report_path = report_path
        self.batch_size = batch_size
        self.max_workers = max_workers
        self.dry_run = dry_run
        self.fail_on_unknown = fail_on_unknown

    def resume_send(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Where a send deferred for its window resumes: the ledger says what is left."""
        return self.execute(context)

    def call_juhe(self, context: Context) -> dict[str, Any]:
        with input_checks():  # bad values fail here, before any request, not as an unknown per batch
            window = SendWindow.parse(self.send_window, self.timezone)
            report = report_location(self.report_path)
            carrier_tpl_ids = resolve_carrier_tpl_ids(self.carrier_tpl_ids)
            tpl_id = validate_tpl_id(self.tpl_id) if carrier_tpl_ids is None else None
            _check_source(self.source)
            encode_tpl_value(self.tpl_value)  # its shape, before any request
            suppress = read_suppressed(self._input("suppress"))
            for name in ("mobiles", "recipients"):  # text that is neither numbers nor a path
                check_text(self._input(name), name)
        tpl_ids = sorted(set(carrier_tpl_ids.values())) if carrier_tpl_ids else [tpl_id]
        ledger = None if self.dry_run else SendLedger(ledger_store(context, self.hook), self.log)
        previous = ledger.read_plan() if ledger else None
        templates = self._read_templates() if self.dry_run or not previous else None
        if templates and self.recipients is None:
            self._check_filled(templates, tpl_ids)
        variables = previous.get("variables") if previous else self._variables(templates, tpl_ids)
        audience = self._audience(variables, suppress)
        summary = SendSummary(
            requested=audience.requested, invalid=list(audience.invalid), suppressed=len(audience.suppressed)
        )
        if not self.dry_run:  # session, pool and pacer built once, sized for the workers, before any call
            self.hook.prepare(self.max_workers)
        with input_checks():  # a carrier without a template, or inputs changed since an earlier try
            plan = SendPlan.make(
                to_send=audience.to_send,
                not_sent=[*audience.invalid, *audience.suppressed],
                tpl_id=tpl_id,
                carrier_tpl_ids=carrier_tpl_ids,
                source=self.source,
                variables=variables,
                batch_size=self.batch_size,
                previous=previous,
                previous_overrides=lambda: ledger.read_overrides(previous),
                group=self.hook.group_mobiles,
            )
        if self.dry_run:
            return self._dry_run(summary, plan, templates or {})
        if plan.replayed:
            self.log.info("Replaying the plan of an earlier try: %d batch(es)", len(plan.batches))
        else:
            ledger.save_plan(plan)
        ledger.load(len(plan.batches), replayed=plan.replayed)
        pending = summary.resume(plan.batches, ledger)
        if len(pending) < len(plan.batches):
            self.log.info(
                "Earlier tries: %d number(s) sent, %d with an unknown outcome (not sent again)",
                summary.sent,
                summary.unknown_count,
            )
        if window is not None and pending and not window.is_open(now()):
            self._defer_to_window(window, pending, "is closed")

        self.log.info(
            "Sending %d number(s) in %d call(s) of up to %d number(s), %d call(s) at once",
            sum(len(b.mobiles) for b in pending),
            len(pending),
            plan.batch_size,
            self.max_workers,
        )
        dispatcher = Dispatcher(
            send=lambda batch: send_batch(self.hook, batch),
            ledger=ledger,
            max_workers=self.max_workers,
            on_outcome=lambda batch, outcome: self._record(summary, batch, outcome),
            log=self.log,
            should_stop=None if window is None else lambda: not window.is_open(now()),
        )
        not_started = dispatcher.run(pending)
        auth_error = dispatcher.stop_outcome
        if not_started and auth_error is None and window is not None:  # the window closed, nothing refused
            self._defer_to_window(window, not_started, "closed")
        for batch in not_started:  # only after an auth error: surely not sent
            summary.record(batch, auth_error)
        if report is not None:
            summary.report = self._write_report(context, report, plan, ledger, summary, audience)
        return self._conclude(context, summary, auth_error, sent_now=len(pending) > 0)

    def _audience(self, variables: dict[str, list[str]] | None, suppress: frozenset[str]) -> Audience:
        with input_checks():
            if self.recipients is None:
                audience = audience_from_mobiles(self._input("mobiles"), self.tpl_value, suppress)
            else:
                required = frozenset(v for names in (variables or {}).values() for v in names)
                audience = audience_from_rows(
                    self._input("recipients"),
                    mobile_field=self.mobile_field,
                    tpl_value=self.tpl_value,
                    required=required if variables else None,
                    suppress=suppress,
                )
        invalid = list(audience.invalid)
        if invalid and not audience.to_send and not audience.suppressed:
            raise JuheInputError(
                _nothing_to_send_message(
                    audience.invalid, "mobiles" if self.recipients is None else "recipients"
                )
            )
        if invalid:
            self.log.warning(
                "%d invalid entr(ies) will not be sent: %s", len(invalid), mask_sample(invalid, limit=10)
            )
        if audience.suppressed:
            self.log.info("%d number(s) in the opt-out list will not be sent", len(audience.suppressed))
        return audience

    def _defer_to_window(self, window: SendWindow, left: list[Batch], closed: str) -> NoReturn:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        opening = window.next_opening(now())
        self.log.info(
            "The send window %s %s: %d number(s) in %d call(s) left; resuming at %s",
            window,
            closed,
            sum(len(b.mobiles) for b in left),
            len(left),
            opening.isoformat(),
        )
        self.defer(trigger=DateTimeTrigger(moment=opening), method_name="resume_send")

    def _record(self, summary: SendSummary, batch: Batch, outcome: Outcome) -> None:
        summary.record(batch, outcome)
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

    def _write_report(
        self,
        context: Context,
        location: Any,
        plan: SendPlan,
        ledger: SendLedger,
        summary: SendSummary,
        audience: Audience,
    ) -> str:
        rows = report_rows(plan, ledger, summary.outcomes, audience.invalid, audience.suppressed)
        try:
            uri = write_report(location, rows)
        except Exception as error:
            # The sends are settled in the ledger: a retry sends nothing again and writes the report.
            context["ti"].xcom_push(key="return_value", value=summary.as_dict())
            raise JuheError(
                f"report_path: could not write {location}: {type(error).__name__}: {error}"
            ) from None
        self.log.info("Wrote the per-recipient report to %s", uri)
        return uri

    def _conclude(
        self, context: Context, summary: SendSummary, auth_error: Outcome | None, *, sent_now: bool
    ) -> dict[str, Any]:
        result = summary.as_dict()
        self.log.info(
            "Requested %d: sent %d in %d call(s), fee %d; invalid %d, suppressed %d, failed %d, unknown %d",
            summary.requested,
            summary.sent,
            summary.batches_count,
            summary.fee,
            summary.invalid_count,
            summary.suppressed,
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
        message = f"{summary.describe()} (of {summary.requested} requested; the summary is in XCom)"
        if auth_error is not None:
            raise AirflowFailException(f"{message}. Not retried: the key or connection is not allowed")
        if summary.failed_count:
            if summary.failures_final():
                raise AirflowFailException(f"{message}. Not retried: a retry cannot change these refusals")
            raise JuheError(message)  # a retry sends the batches that surely failed, and only those
        raise AirflowFailException(
            f"{message}. Nothing is left for a retry to send{'' if sent_now else ' (this try sent nothing)'}: "
            "numbers with an unknown outcome are never sent again by this task instance. Check them in "
            "Juhe's console; send the ones that did not arrive from a new DAG run."
        )

    def _dry_run(
        self, summary: SendSummary, plan: SendPlan, templates: Mapping[int, Mapping[str, Any]]
    ) -> dict[str, Any]:
        planned = calls = estimated_fee = 0
        parts = None
        last: tuple[int, bytes] | None = None
        for batch in plan.iter_batches():
            if (batch.tpl_id, batch.tpl_value) != last:  # groups of equal values come one after another
                last = (batch.tpl_id, batch.tpl_value)
                template = templates.get(batch.tpl_id)
                parts = (
                    message_parts(template["signature"], template["content"], batch.tpl_value)
                    if template
                    else 1
                )
            planned += len(batch.mobiles)
            calls += 1
            estimated_fee += parts * len(batch.mobiles)
        self.log.info("Dry run: %d number(s) in %d call(s), estimated fee %d", planned, calls, estimated_fee)
        return {
            **summary.as_dict(),
            "dry_run": True,
            "planned": planned,
            "planned_batches": calls,
            "estimated_fee": estimated_fee,
        }

    def _check_filled(self, templates: Mapping[int, Mapping[str, Any]], tpl_ids: list[int]) -> None:
        """With ``mobiles``, a variable that ``tpl_value`` leaves unfilled fails before any send."""
        for tpl_id in tpl_ids:
            template = templates.get(tpl_id)
            if template is None:
                continue
            with input_checks():
                unfilled = unfilled_variables(template["content"], self.tpl_value)
            if unfilled:
                raise JuheInputError(
                    f"tpl_value: template {tpl_id} uses {', '.join(unfilled)}, which tpl_value leaves "
                    "unfilled: Juhe would refuse every call (228802)"
                )

    def _read_templates(self) -> dict[int, dict[str, Any]]:
        """The account's templates by id (their text gives variables and SMS parts); empty if unreadable."""
        try:
            return {t["tpl_id"]: t for t in self.hook.list_templates()}
        except JuheError as error:
            # A refused key fails a dry run here; a real send records it against every batch instead.
            if isinstance(error, JuheConfigError) or (error.final and self.dry_run):
                raise
            self.log.warning(
                "Could not read the templates (variables not checked, 1 SMS per number assumed): %s", error
            )
            return {}

    def _variables(
        self, templates: Mapping[int, Mapping[str, Any]] | None, tpl_ids: list[int]
    ) -> dict[str, list[str]] | None:
        """The variables each template's text uses, for the rows' check; ``None`` when not known."""
        if self.recipients is None or not templates:
            return None
        known = {
            str(i): sorted(template_variables(templates[i]["content"])) for i in tpl_ids if i in templates
        }
        return known or None


def _nothing_to_send_message(invalid: Mapping[str, str], field_name: str) -> str:
    reasons = {reason for reason in invalid.values() if reason != NOT_A_NUMBER}
    if reasons:
        return (
            f"{field_name}: none of the {len(invalid)} rows can be sent ({', '.join(sorted(reasons)[:3])}): "
            "every row needs a value for each variable the template uses"
        )
    return _no_valid_number_message(list(invalid), field_name)


def _no_valid_number_message(invalid: list[str], field_name: str) -> str:
    message = f"{field_name}: none of the {len(invalid)} entries is a valid number ({mask_sample(invalid)})"
    if any(entry[:1] in "[('\"" or entry[-1:] in "])'\"" for entry in invalid):
        message += (
            ". The value looks like a list rendered to its text form, e.g. \"['139…', '139…']\": pass "
            "the XComArg itself (mobiles=load.output), or set render_template_as_native_obj=True on the "
            "DAG when mobiles is a Jinja string such as \"{{ ti.xcom_pull('load') }}\""
        )
    return message


def _holds_no_template(content: Any) -> bool:
    """A string, or a list/tuple of strings, numbers and flat rows of them, without any Jinja syntax."""
    if isinstance(content, str):
        return not any(mark in content for mark in _TEMPLATE_MARKS)
    if type(content) in (list, tuple):
        return all(
            _plain(item) or (type(item) is dict and all(map(_plain, item.values()))) for item in content
        )
    return False


def _plain(item: Any) -> bool:
    return item is None or isinstance(item, (int, float)) or (isinstance(item, str) and "{" not in item)


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
