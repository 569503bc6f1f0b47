"""JuheTemplateApprovedTrigger: polls template review in the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_juhe.exceptions import JuheAuthError, JuheError
from airflow_provider_juhe.hooks import polling
from airflow_provider_juhe.template_review import PENDING, review


class JuheTemplateApprovedTrigger(BaseTrigger):
    """
    Yields one event: ``approved``, ``rejected``, ``unknown``, ``timeout`` or ``error``.

    The event is ``{"status", "templates", "tpl_ids"}``, or ``{"status": "error", "message",
    "error_code", "auth", "final"}`` where ``final`` says a retry cannot change it (an auth error, an
    undefined connection: the sensor then fails without retries). The connection is read through the async API and HTTP runs in a thread, so no
    blocking call ever runs on the triggerer's event loop.

    :param tpl_ids: template ids that must all be approved.
    :param juhe_conn_id: Airflow connection of type ``juhe_sms`` (never a secret: this is serialised).
    :param poll_interval: seconds between two looks at the template list (at least 1: a shorter one
        is raised to 1, with a warning). A list that cannot be read is read again with backoff;
        failures in a row for 60 s end the wait with an ``error`` event naming the cause.
    :param end_time: epoch seconds after which it yields ``{"status": "timeout"}``; the triggerer
        also enforces the deferral timeout, this makes the trigger keep it wherever it runs.
    """

    def __init__(
        self,
        tpl_ids: list[int],
        juhe_conn_id: str,
        poll_interval: float = 60.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped_calls_exclude misses super(): mypy#16653
        self.tpl_ids = [int(i) for i in tpl_ids]
        self.juhe_conn_id = juhe_conn_id
        self.poll_interval = polling.poll_interval(float(poll_interval), self.log.warning)
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "tpl_ids": self.tpl_ids,
                "juhe_conn_id": self.juhe_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook

        hook = JuheSmsHook(juhe_conn_id=self.juhe_conn_id)
        try:
            await hook.aget_config()
            outage = polling.ReadOutage()
            while True:
                try:
                    templates = await asyncio.to_thread(hook.list_templates)
                except JuheError as error:
                    wait = outage.failed(error)  # raises once the outage has lasted too long
                    self.log.warning(
                        "Could not read the template list (%s); reading it again in %.0f s", error, wait
                    )
                    await asyncio.sleep(wait)
                    continue
                outage.succeeded()
                verdict = review(templates, self.tpl_ids)
                if verdict["status"] != PENDING:
                    yield TriggerEvent(verdict)
                    return
                remaining = math.inf if self.end_time is None else self.end_time - time.time()
                if remaining <= 0:
                    yield TriggerEvent({"status": "timeout", "tpl_ids": verdict["tpl_ids"]})
                    return
                self.log.info("Templates %s still in review", verdict["tpl_ids"])
                await asyncio.sleep(min(self.poll_interval, remaining))
        except Exception as error:  # reported to the sensor, which fails the try
            yield TriggerEvent(
                {
                    "status": "error",
                    "message": str(error),
                    "error_code": getattr(error, "error_code", None),
                    "auth": isinstance(error, JuheAuthError),
                    "final": getattr(error, "final", False),
                }
            )
        finally:
            hook.close()
