"""JuheTemplateApprovedSensor: waits until templates pass Juhe's review (tpl_state == 3)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from airflow_provider_juhe._compat import AirflowFailException, AirflowSensorTimeout, conf
from airflow_provider_juhe.exceptions import JuheError
from airflow_provider_juhe.hooks import polling
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.template_review import APPROVED, PENDING, review, template_ids
from airflow_provider_juhe.triggers.juhe_sms import JuheTemplateApprovedTrigger


class JuheTemplateApprovedSensor(BaseSensorOperator):
    """
    Succeed when every template is approved, returning their records as XCom.

    Fails at once, without retries, when any template is rejected or unknown to the account, or on an
    auth error. Works in ``poke``, ``reschedule`` and ``deferrable=True`` modes; the sensor's
    ``timeout`` holds in each. Deferrable mode checks once before it defers, so an approved template
    or a bad key costs no trip through the triggerer.

    A ``poke_interval`` below 1 s is raised to 1 s, with a warning. A template list that cannot be
    read (a 502, a dropped connection) is read again with backoff (1, 2, 4 ... 15 s): failures in a
    row for less than 60 s never end the wait; after 60 s the try fails, naming the last cause (the
    task's retries apply). The same holds in every mode.

    :param tpl_id: one id, a list of ids, a ``carrier_tpl_ids`` dict, or the submit task's XComArg.
    :param juhe_conn_id: Airflow connection of type ``juhe_sms``.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("tpl_id",)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        tpl_id: int | str | Iterable[int | str] | Mapping[str, Any],
        juhe_conn_id: str = JuheSmsHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.poke_interval = polling.poll_interval(self.poke_interval, self.log.warning)
        self.tpl_id = tpl_id
        self.juhe_conn_id = juhe_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> JuheSmsHook:
        return JuheSmsHook(juhe_conn_id=self.juhe_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        checked = self.poke(context)
        if checked.is_done:
            return checked.xcom_value
        self.defer(
            trigger=JuheTemplateApprovedTrigger(
                tpl_ids=template_ids(self.tpl_id),
                juhe_conn_id=self.juhe_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        try:
            verdict = review(self._read_templates(), template_ids(self.tpl_id))
        except JuheError as error:
            if error.final:  # an auth error, an undefined connection: no retry changes it
                raise AirflowFailException(str(error)) from error
            raise
        if verdict["status"] == PENDING:
            self.log.info("Templates %s still in review", verdict["tpl_ids"])
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._conclude(verdict))

    def _read_templates(self) -> list[dict[str, Any]]:
        """The template list, read again with backoff through a transient outage of under a minute."""
        outage = polling.ReadOutage()
        while True:
            try:
                return self.hook.list_templates()
            except JuheError as error:
                wait = outage.failed(error)
                self.log.warning(
                    "Could not read the template list (%s); reading it again in %.0f s", error, wait
                )
                time.sleep(wait)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event["status"] == "error":
            message = f"Waiting for template approval failed: {event['message']}"
            if event.get("final", event.get("auth")):
                raise AirflowFailException(f"{message} (not retried: a retry cannot change it)")
            raise JuheError(message)
        if event["status"] == "timeout":
            raise AirflowSensorTimeout(f"Templates {event['tpl_ids']} still in review after {self.timeout}s")
        return self._conclude(event)

    def _conclude(self, verdict: dict[str, Any]) -> list[dict[str, Any]]:
        if verdict["status"] != APPROVED:
            raise AirflowFailException(
                f"Template(s) {verdict['tpl_ids']} {verdict['status']}: "
                + ("rejected by Juhe's review" if verdict["status"] == "rejected" else "not on this account")
            )
        self.log.info("Templates %s approved", verdict["tpl_ids"])
        templates: list[dict[str, Any]] = verdict["templates"]
        return templates
