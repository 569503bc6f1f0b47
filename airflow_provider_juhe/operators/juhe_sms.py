"""Operators for the Juhe financial SMS API: thin Airflow glue over JuheSmsHook."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar, NoReturn, cast

from airflow.sdk import BaseOperator, Context

from airflow_provider_juhe._compat import AirflowFailException
from airflow_provider_juhe.exceptions import JuheError
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.operators.rendering import PersonalFieldsMixin
from airflow_provider_juhe.sending.campaign import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_WORKERS,
    DEFAULT_TIMEZONE,
    Campaign,
    Finished,
    SendRequest,
    WaitUntil,
    group_mobiles,
)
from airflow_provider_juhe.sending.fallback_store import ledger_store
from airflow_provider_juhe.sending.plan import validate_batching
from airflow_provider_juhe.sending.split import SplitRequest, campaign_totals, split_audience
from airflow_provider_juhe.sending.window import now


class JuheBaseOperator(PersonalFieldsMixin, BaseOperator):
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
        except JuheError as error:
            if error.final:  # bad input, a connection that cannot work, a refusal no retry changes
                raise AirflowFailException(f"{error} (not retried: a retry cannot change it)") from error
            raise

    def call_juhe(self, context: Context) -> Any:
        raise NotImplementedError


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
    :param max_fee: the most this send may cost, in SMS (Juhe's fee unit): after planning and before
        any call, the fee is estimated as a dry run does (each try over what is left to send); above
        it the task fails without retries, naming both figures. (templated)
    :param max_recipients: the most numbers this send may go to; checked like ``max_fee``. (templated)
    :param columns: renames the keys of ``recipients`` rows (a file's header) before anything else, as
        ``pandas.DataFrame.rename(columns=...)`` does: ``{"手机号": "mobile", "姓名": "name"}``. (templated)
    :param encoding: the codec of ``recipients`` and ``suppress`` files, e.g. ``"gbk"`` or ``"gb18030"``
        for Excel's CSV on Chinese Windows; a UTF-8 byte-order mark is always accepted. (templated)
    :param allow_empty_suppress: accept a ``suppress`` source with no entry at all; by default it fails
        before any send (an empty export must not pass for "nobody opted out").
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
        "max_fee",
        "max_recipients",
        "columns",
        "encoding",
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
        max_fee: int | str | None = None,
        max_recipients: int | str | None = None,
        columns: Mapping[str, str] | None = None,
        encoding: str = "utf-8",
        allow_empty_suppress: bool = False,
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
        # The contract's flag shadows BaseOperator.dry_run(), a method Airflow 3 never calls.
        self.dry_run = dry_run  # type: ignore[method-assign, assignment]
        self.fail_on_unknown = fail_on_unknown
        self.max_fee = max_fee
        self.max_recipients = max_recipients
        self.columns = columns
        self.encoding = encoding
        self.allow_empty_suppress = allow_empty_suppress

    def resume_send(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Where a send deferred for its window resumes: the ledger says what is left."""
        summary: dict[str, Any] = self.execute(context)
        return summary

    def call_juhe(self, context: Context) -> dict[str, Any]:
        request = SendRequest(**{name: self._input(name) for name in SendRequest.fields()})
        with ledger_store(context, self.hook) as store:  # below 3.3, packed when the try ends
            # Airflow's task logger: logging's on 3.0, structlog's later; the engine's %-style calls suit both
            outcome = Campaign(request, self.hook, store, cast(logging.Logger, self.log)).run()
        if isinstance(outcome, WaitUntil):
            self._defer(outcome)
        return self._conclude(context, outcome)

    def _defer(self, wait: WaitUntil) -> NoReturn:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        hours = (wait.moment - now()).total_seconds() / 3600
        if hours > 0.1:  # `airflow dags test` runs the trigger inline: it would sit there that long
            self.log.warning(
                "Waiting %.1f h for the send window to open (%s). Under `airflow dags test` the command "
                "waits too: for a test run, pass a window around now or send_window=None.",
                hours,
                wait.moment.isoformat(),
            )
        self.defer(trigger=DateTimeTrigger(moment=wait.moment), method_name="resume_send")

    def _conclude(self, context: Context, finished: Finished) -> dict[str, Any]:
        failure = finished.failure(self.fail_on_unknown)
        if failure is None:
            return finished.result
        context["ti"].xcom_push(key="return_value", value=finished.result)  # the summary, also on failure
        if failure.final:
            raise AirflowFailException(failure.message)
        raise JuheError(failure.message)  # a retry sends what surely was not sent, and only that


class JuheSplitAudienceOperator(JuheBaseOperator):
    """
    Split a campaign into shards for mapped sends, its guards applied to the whole campaign.

    Reads the whole audience once, normalises and de-duplicates it across all of it, applies the
    opt-outs, ``max_recipients`` and ``max_fee`` to the campaign (failing before any shard is
    written, as the send would), and writes ``shards`` gzipped JSON Lines files under
    ``output_uri``, every row of one number in the same shard, each row with the variables it is
    sent with. Returns the shards' URIs, for
    ``JuheSendSmsOperator.partial(...).expand(recipients=split.output)``; the split's own counts and
    report (invalid, suppressed and repeated entries, which are in no shard) are pushed to XCom
    under the key ``summary``, for :class:`JuheCampaignTotalsOperator`. The same input always
    writes the same files, and a file that already holds them is not touched: a retry of the split
    while shards are being sent changes nothing under them.

    :param shards: how many shard files to write (1 to 10,000). (templated)
    :param output_uri: the folder (path or URI, e.g. ``s3://bucket/sms/{{ ds }}``) the shards and
        ``split-report.csv`` are written to. (templated)
    :param recipients: rows, or a path/URI of a ``.csv``/``.jsonl`` file (optionally ``.gz``), as
        ``JuheSendSmsOperator`` reads them. (templated)
    :param mobiles: instead of ``recipients``: numbers, all with ``tpl_value``. (templated)
    :param suppress: numbers never to send to (opt-outs), as ``JuheSendSmsOperator`` reads them. (templated)
    :param tpl_id: the template the shards are sent with: its text gives the variables every row
        must fill and the fee estimate. (templated)
    :param tpl_value: variables for every row (a row's own override them); written into each row. (templated)
    :param max_fee: the most the whole campaign may cost, in SMS: estimated from the template's text
        as a dry run does; above it (or with the text unreadable) no shard is written. (templated)
    :param max_recipients: the most numbers the whole campaign may go to. (templated)
    :param mobile_field: the key or CSV column that holds the number.
    :param columns: renames the rows' keys (a file's header) to template variables. (templated)
    :param encoding: the codec of ``recipients`` and ``suppress`` files, e.g. ``"gbk"``. (templated)
    :param allow_empty_suppress: accept a ``suppress`` source with no entry at all.
    """

    template_fields: Sequence[str] = (
        "shards",
        "output_uri",
        "recipients",
        "mobiles",
        "suppress",
        "tpl_id",
        "tpl_value",
        "max_fee",
        "max_recipients",
        "columns",
        "encoding",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"tpl_value": "json", "columns": "json"}
    personal_fields: ClassVar[tuple[str, ...]] = ("mobiles", "recipients", "suppress")

    def __init__(
        self,
        *,
        shards: int,
        output_uri: Any,
        recipients: Any = None,
        mobiles: str | Iterable[str] | None = None,
        suppress: Any = None,
        tpl_id: int | str | None = None,
        tpl_value: Mapping[str, object] | str | None = None,
        max_fee: int | str | None = None,
        max_recipients: int | str | None = None,
        mobile_field: str = "mobile",
        columns: Mapping[str, str] | None = None,
        encoding: str = "utf-8",
        allow_empty_suppress: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (mobiles is None) == (recipients is None):
            raise ValueError("mobiles, recipients: give exactly one of them")
        self.shards = shards
        self.output_uri = output_uri
        self.recipients = recipients
        self.mobiles = mobiles
        self.suppress = suppress
        self.tpl_id = tpl_id
        self.tpl_value = tpl_value
        self.max_fee = max_fee
        self.max_recipients = max_recipients
        self.mobile_field = mobile_field
        self.columns = columns
        self.encoding = encoding
        self.allow_empty_suppress = allow_empty_suppress

    def call_juhe(self, context: Context) -> list[str]:
        request = SplitRequest(**{name: self._input(name) for name in SplitRequest.__dataclass_fields__})
        result = split_audience(request, self.hook, self.log)
        context["ti"].xcom_push(key="summary", value=result.summary)
        return result.shards


class JuheCampaignTotalsOperator(PersonalFieldsMixin, BaseOperator):
    """
    The campaign's summary: every count of the shards' send summaries (and of the split's) added
    up, the invariant over counts checked, and the reports merged into one CSV. Give it
    ``trigger_rule="all_done"`` so it also totals a campaign some of whose shards failed (a failed
    send still pushes its summary); a shard that left no summary fails it, naming the shard.

    Returns ``{"requested", "sent", "fee", "suppressed", "invalid_count", "failed_count",
    "unknown_count", "duplicate_count", "batches_count", "invalid_reasons", "estimated_fee",
    "shards", "shards_failed", "report"}``.

    :param summaries: the shards' summaries: the mapped send's ``.output``. (templated)
    :param split_summary: the split's summary: ``XComArg(split, key="summary")``. (templated)
    :param report_path: where to write the merged report (path/URI); ``None``: not merged. (templated)
    """

    template_fields: Sequence[str] = ("summaries", "split_summary", "report_path")
    personal_fields: ClassVar[tuple[str, ...]] = ("summaries", "split_summary")
    ui_color = "#e8f4ff"

    def __init__(
        self, *, summaries: Any, split_summary: Any = None, report_path: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.summaries = summaries
        self.split_summary = split_summary
        self.report_path = report_path

    def _mask_personal_fields(self) -> None:
        # Summaries list numbers (invalid, unknown): the rendered fields show only what they are.
        for name in self.personal_fields:
            value = getattr(self, name)
            if name not in self._inputs and value is not None:
                self._inputs[name] = value
                setattr(self, name, f"<{type(value).__name__}: send summaries, not shown>")

    def execute(self, context: Context) -> dict[str, Any]:
        summaries = list(self._input("summaries") or [])
        try:
            totals = campaign_totals(summaries, self._input("split_summary"), self.report_path)
        except JuheError as error:
            raise AirflowFailException(str(error)) from error  # a retry cannot change what the shards left
        self.log.info(
            "Campaign totals over %d shard(s): requested %d, sent %d, fee %d; invalid %d, suppressed %d, "
            "failed %d, unknown %d; %d duplicate entr(ies)%s",
            totals["shards"],
            totals["requested"],
            totals["sent"],
            totals["fee"],
            totals["invalid_count"],
            totals["suppressed"],
            totals["failed_count"],
            totals["unknown_count"],
            totals["duplicate_count"],
            f"; merged report: {totals['report']}" if totals["report"] else "",
        )
        return totals
