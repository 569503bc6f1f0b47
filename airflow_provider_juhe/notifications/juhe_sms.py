"""JuheSmsNotifier: an SMS from on_failure_callback, on_success_callback and DAG-level callbacks."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier, Context

from airflow_provider_juhe.exceptions import JuheInputError
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.mobiles import mask_sample, parse_recipients

if TYPE_CHECKING:
    import jinja2


class JuheSmsNotifier(BaseNotifier):
    """
    Send an approved template when a callback fires; ``mobiles`` and ``tpl_value`` are Jinja-rendered.

    A failure to notify is logged and never raised over the task's own error. Each call renders a
    fresh copy, so one instance shared through ``default_args`` names each task correctly. An invalid
    number among ``mobiles`` is logged (masked) and skipped: the valid ones are still paged.

    :param mobiles: who to page: a list or a comma/whitespace separated string.
    :param tpl_id: an approved template id.
    :param tpl_value: the template variables, e.g. ``{"#task#": "{{ ti.task_id }}"}``.
    :param juhe_conn_id: Airflow connection of type ``juhe_sms``.
    """

    template_fields: Sequence[str] = ("mobiles", "tpl_id", "tpl_value")

    def __init__(
        self,
        *,
        mobiles: str | Iterable[str],
        tpl_id: int | str,
        tpl_value: Mapping[str, object] | str | None = None,
        juhe_conn_id: str = JuheSmsHook.default_conn_name,
    ) -> None:
        super().__init__()
        self.mobiles = mobiles
        self.tpl_id = tpl_id
        self.tpl_value = tpl_value
        self.juhe_conn_id = juhe_conn_id

    @cached_property
    def hook(self) -> JuheSmsHook:
        return JuheSmsHook(juhe_conn_id=self.juhe_conn_id)

    def __call__(self, *args: Any) -> None:
        # Airflow renders template fields in place: render a copy, keep this instance's templates.
        fresh = copy.copy(self)
        try:
            super(JuheSmsNotifier, fresh).__call__(*args)
        except Exception:
            self.log.exception("Juhe SMS notification failed; the task's own outcome stands")

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        # DAG-level callbacks may carry a scheduler-side DAG without a Jinja environment of its own.
        if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
            jinja_env = self.get_template_env()
        super().render_template_fields(context, jinja_env)

    def notify(self, context: Context) -> None:
        recipients = parse_recipients(self.mobiles)
        if recipients.invalid:  # one typo in an on-call list must not silence the page
            self.log.warning(
                "Not paging %d invalid number(s): %s",
                len(recipients.invalid),
                mask_sample(recipients.invalid),
            )
        if not recipients.valid:
            raise JuheInputError(f"mobiles: no valid number to page in {mask_sample(recipients.invalid)}")
        sent = self.hook.send_sms(recipients.valid, self.tpl_id, self.tpl_value)
        self.log.info("Juhe SMS notification sent: sid %s to %d number(s)", sent["sid"], sent["count"])


send_juhe_sms_notification = JuheSmsNotifier
