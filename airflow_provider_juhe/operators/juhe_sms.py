"""Operators for the Juhe financial SMS API: thin Airflow glue over JuheSmsHook."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_juhe.exceptions import JuheAuthError, JuheError
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook, validate_tpl_id
from airflow_provider_juhe.mobiles import group_by_carrier, mask_sample, parse_recipients, require_valid
from airflow_provider_juhe.operators.bulk_send import SendLedger, send_batches
from airflow_provider_juhe.send_plan import (
    SendSummary,
    plan_batches,
    resolve_carrier_tpl_ids,
    route,
    validate_batching,
)
from airflow_provider_juhe.sms_content import encode_tpl_value, render_text, sms_parts

GROUPING_SOURCES = ("api", "local")
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
        except (ValueError, TypeError) as error:  # bad input, found before any request: a retry cannot help
            raise AirflowFailException(str(error)) from error

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
    Send an approved template to many numbers, every recipient accounted for.

    Numbers are normalised, de-duplicated and validated (invalid ones are reported, never sent), then
    sent in batches of ``batch_size`` numbers per call, up to ``max_workers`` calls at once. Each batch
    is written ahead to the task-instance state store, so a retry of the task never sends a batch an
    earlier try sent, and reports a batch left in flight as ``unknown``. Returns the summary
    ``{"requested", "sent", "fee", "invalid", "failed", "unknown", "batches"}``; when anything failed
    or is unknown, the task fails after every batch was tried and the summary was pushed.

    :param mobiles: a list, or a string separated by commas, whitespace or newlines.
    :param tpl_id: an approved template id, for every number.
    :param tpl_value: the template variables, ``{"code": "123456"}`` (or an encoded string).
    :param carrier_tpl_ids: instead of ``tpl_id``: per-carrier template ids (e.g. the submit task's
        XComArg); each number goes with its carrier's template, unknown carriers with ``all``.
    :param source: how numbers are grouped for ``carrier_tpl_ids``: ``"api"`` or ``"local"``.
    :param batch_size: numbers per API call, 1 to 1,000.
    :param max_workers: API calls in flight at once.
    :param dry_run: validate, group, plan batches and estimate the fee without sending.
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

    def call_juhe(self, context: Context) -> dict[str, Any]:
        recipients = parse_recipients(self.mobiles)
        if recipients.invalid:
            self.log.warning(
                "%d invalid number(s) will not be sent: %s",
                len(recipients.invalid),
                mask_sample(recipients.invalid, limit=10),
            )
        encode_tpl_value(self.tpl_value)  # a bad tpl_value fails here, not as an "unknown" in every batch
        carrier_tpl_ids = resolve_carrier_tpl_ids(self.carrier_tpl_ids)
        if carrier_tpl_ids is None:
            routed = {validate_tpl_id(self.tpl_id): recipients.valid} if recipients.valid else {}
        else:
            routed = route(group_mobiles(self.hook, recipients.valid, self.source), carrier_tpl_ids)
        batches = plan_batches(routed, self.batch_size)
        summary = SendSummary(requested=recipients.requested, invalid=recipients.invalid)
        if self.dry_run:
            return self._dry_run(summary, routed, len(batches))

        self.hook.pool_size = max(self.hook.pool_size, self.max_workers)
        self.hook.config  # noqa: B018 - read the connection here, not in the worker threads
        ti = context.get("ti")
        ledger = SendLedger(
            context.get("task_state_store"), self.log, first_try=getattr(ti, "try_number", None) == 1
        )
        self.log.info(
            "Sending %d number(s) in %d batch(es) of up to %d, %d call(s) at once",
            len(recipients.valid),
            len(batches),
            self.batch_size,
            self.max_workers,
        )
        auth_error = send_batches(
            self.hook, batches, self.tpl_value, summary, ledger, self.max_workers, self.log
        )
        result = summary.as_dict()
        self.log.info(
            "Requested %d: sent %d in %d batch(es), fee %d; invalid %d, failed %d, unknown %d",
            summary.requested,
            summary.sent,
            len(summary.batches),
            summary.fee,
            len(summary.invalid),
            summary.failed_count,
            len(summary.unknown),
        )
        if auth_error is not None or summary.failed or summary.unknown:
            context["ti"].xcom_push(key="return_value", value=result)
            message = (
                f"{summary.failed_count} number(s) failed and {len(summary.unknown)} have an unknown outcome "
                f"(of {summary.requested} requested); see the summary in XCom"
            )
            if auth_error is not None:
                raise AirflowFailException(f"{auth_error}; {message}")
            # A retry re-sends only failed batches: the ledger keeps sent and in-flight ones from going out twice.
            raise JuheError(message)
        return result

    def _dry_run(
        self, summary: SendSummary, routed: Mapping[int, list[str]], batch_count: int
    ) -> dict[str, Any]:
        planned = sum(len(numbers) for numbers in routed.values())
        parts = self._parts_per_sms(routed)
        estimated_fee = sum(parts.get(tpl_id, 1) * len(numbers) for tpl_id, numbers in routed.items())
        self.log.info(
            "Dry run: %d number(s) in %d batch(es), estimated fee %d", planned, batch_count, estimated_fee
        )
        return {
            **summary.as_dict(),
            "dry_run": True,
            "planned": planned,
            "planned_batches": batch_count,
            "estimated_fee": estimated_fee,
        }

    def _parts_per_sms(self, routed: Mapping[int, list[str]]) -> dict[int, int]:
        """SMS parts per template from its rendered text, when the account's template list is readable."""
        if not routed or isinstance(self.tpl_value, str):
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
            for tpl_id in routed
            if (t := templates.get(tpl_id))
        }


def group_mobiles(hook: JuheSmsHook, mobiles: str | Iterable[str], source: str) -> dict[str, list[str]]:
    """Group through the API or, with ``source="local"``, from the prefix table."""
    if source not in GROUPING_SOURCES:
        raise ValueError(f"source: expected 'api' or 'local', got {source!r}")
    if source == "api":
        return hook.group_mobiles(mobiles)
    return group_by_carrier(require_valid(mobiles))
