"""JuheSmsNotifier: an SMS from on_failure_callback, on_success_callback and DAG-level callbacks."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from airflow_provider_juhe._compat import BaseNotifier
from airflow_provider_juhe.alerting import policy, state
from airflow_provider_juhe.exceptions import CallOutcome, JuheInputError, input_checks
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.mobiles import mask_sample, parse_recipients

if TYPE_CHECKING:
    import jinja2

#: Seconds since the epoch; shared by every process that pages, so intervals hold across them.
clock = time.time
Record = dict[str, Any]
#: Added to the longest a send can take: a claim older than that belongs to a process that died.
CLAIM_MARGIN_SECONDS = 5.0


class JuheSmsNotifier(BaseNotifier):
    """
    Send an approved template when a callback fires; ``mobiles`` and ``tpl_value`` are Jinja-rendered.

    A failure to notify is logged and never raised over the task's own error. Each call renders a
    fresh copy, so one instance shared through ``default_args`` names each task correctly. An invalid
    number among ``mobiles`` is logged (masked) and skipped: the valid ones are still paged.

    With ``group_key``, notifications with the same key form one alert episode, remembered in Airflow
    Variables (``juhe_sms_alert_*``, ``juhe_sms_caps_*``) so that it holds across tasks, workers,
    DAG-level callbacks and DAG runs. ``tpl_value`` sees ``{{ suppressed_count }}``: the notifications
    held back (by ``repeat_interval`` or ``max_per_number``) since the last SMS.

    :param mobiles: who to page: a list or a comma/whitespace separated string. (templated)
    :param tpl_id: an approved template id. (templated)
    :param tpl_value: the template variables, e.g. ``{"#task#": "{{ ti.task_id }}"}``. (templated)
    :param group_key: the alert episode this notification belongs to, e.g. ``"{{ dag.dag_id }}"``;
        None: every notification sends. (templated)
    :param repeat_interval: with ``group_key``: after an SMS, further notifications of the episode
        within this interval send nothing and are counted. None: each one sends.
    :param resolve: with ``group_key``, for ``on_success_callback``: send only while the episode is
        open (an alert went out and was not yet resolved), then close it.
    :param max_per_number: at most this many SMS of this template to one number per rolling window,
        e.g. ``{"minute": 1, "hour": 4, "day": 20}``; a page over the cap is skipped for that number,
        logged and counted into its next SMS. None: no cap.
    :param juhe_conn_id: Airflow connection of type ``juhe_sms``.
    """

    template_fields: Sequence[str] = ("mobiles", "tpl_id", "tpl_value", "group_key")

    def __init__(
        self,
        mobiles: str | Iterable[str],
        tpl_id: int | str,
        tpl_value: Mapping[str, object] | str | None = None,
        *,
        group_key: str | None = None,
        repeat_interval: timedelta | None = None,
        resolve: bool = False,
        max_per_number: Mapping[str, int] | None = None,
        juhe_conn_id: str = JuheSmsHook.default_conn_name,
        context: Context | None = None,
    ) -> None:
        super().__init__(context)
        if resolve and group_key is None:
            raise JuheInputError("resolve=True needs a group_key: it closes that key's open episode")
        if repeat_interval is not None and not isinstance(repeat_interval, timedelta):
            raise JuheInputError(f"repeat_interval must be a timedelta, not {type(repeat_interval).__name__}")
        self.mobiles = mobiles
        self.tpl_id = tpl_id
        self.tpl_value = tpl_value
        self.group_key = group_key
        self.repeat_interval = repeat_interval
        self.resolve = resolve
        with input_checks():
            self.max_per_number = policy.check_caps(max_per_number) if max_per_number else None
        self.juhe_conn_id = juhe_conn_id
        self._jinja_env: jinja2.Environment | None = None

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
        if jinja_env is None:
            # DAG-level callbacks may carry a scheduler-side DAG without a Jinja environment of its own.
            dag = context.get("dag")
            jinja_env = self.get_template_env(dag=dag if hasattr(dag, "get_template_env") else None)
        self._jinja_env = jinja_env
        # tpl_value is rendered when the count it may show is known (in notify).
        fields = [name for name in self.template_fields if name != "tpl_value"]
        self._do_render_template_fields(self, fields, context, jinja_env, set())

    async def async_notify(self, context: Context) -> None:
        """The same path as :meth:`notify`, on a thread: the event loop never waits for a call."""
        await asyncio.to_thread(self.notify, context)

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
        now = clock()
        token = uuid.uuid4().hex
        held_back = 0
        if self.group_key is not None:
            decision = self._decide(now, token)
            if decision is None:
                return
            held_back = decision.suppressed_count
        allowed = self._admit(recipients.valid, now)
        claimed = self.group_key is not None and not self.resolve
        if not allowed:  # every number is at its cap: the episode's SMS did not go out
            if claimed:
                self._update_episode(lambda record: (policy.give_back(record, token, True), None))
            return
        unpaged, error = self._send(context, allowed, held_back)
        if claimed:
            if unpaged and len(unpaged) == len(allowed):
                # A page that did not go out must not hold back the next one: a duplicate beats a silence.
                self._update_episode(lambda record: (policy.give_back(record, token, False), None))
            else:
                self._confirm(token)
        if error is None:
            return
        if self.max_per_number and unpaged:
            self._update_caps(
                lambda record: (policy.release(record, unpaged, now, allowed, self._secret), None)
            )
        raise error

    def _decide(self, now: float, token: str) -> policy.Decision | None:
        """The episode's decision, stored under its lock; None: nothing to send now."""

        def decide(record: Record | None) -> tuple[Record, policy.Decision]:
            if record and "claim" in record:  # an SMS was claimed: its sender may have confirmed it since
                try:
                    confirmation = state.read(self._confirmation_key)
                except state.StateUnavailable:  # unreadable (or damaged): the claim expires in time
                    confirmation = None
                record = policy.confirm(record, confirmation)
            if self.resolve:
                decision = policy.decide_resolve(record, now)
            else:
                decision = policy.decide_alert(
                    record, now, self.repeat_interval, token, self._claim_seconds()
                )
            return decision.state, decision

        try:
            decision = self._update_episode(decide)
        except state.LockBusy as error:
            self.log.error("Alert %r: nothing sent, its state stayed locked (%s)", self.group_key, error)
            return None
        if decision.send:
            return decision
        if self.resolve:
            self.log.info("Alert %r: no open episode to resolve, nothing sent", self.group_key)
        else:
            self.log.info(
                "Alert %r: held back (within repeat_interval, or another notification is sending it; "
                "%d so far), nothing sent",
                self.group_key,
                decision.state.get("suppressed", 0),
            )
        return None

    @property
    def _confirmation_key(self) -> str:
        return state.variable_key("alert", str(self.group_key)) + "_sent"

    def _confirm(self, token: str) -> None:
        """
        The claimed SMS went out. Written beside the episode, without its lock, so that a storm of
        notifications queueing for the lock cannot keep the sender waiting until Airflow kills its
        process; the next notification folds it into the episode. If this write is lost, the claim
        expires and a later notification pages again: a duplicate, never a silence.
        """
        try:
            state.write(self._confirmation_key, {"token": token, "at": clock()}, "juhe_sms SMS sent")
        except state.StateUnavailable:
            self.log.warning("Could not confirm alert %r's SMS", self.group_key, exc_info=True)

    def _claim_seconds(self) -> float:
        """How long a claim may wait for its SMS: the longest the send can take, then it expires."""
        config = self.hook.config
        attempts = config.max_retries + 1
        backoff = sum(min(self.hook.retry_wait * 2**n, self.hook.retry_wait_max) for n in range(attempts))
        return config.timeout * attempts + backoff + CLAIM_MARGIN_SECONDS

    def _admit(self, numbers: list[str], now: float) -> dict[str, int]:
        """The numbers under their caps, each with the pages skipped for it; the caps record written."""
        if not self.max_per_number:
            return {number: 0 for number in numbers}
        limits = self.max_per_number

        def admit(record: Record | None) -> tuple[Record, policy.Admission]:
            admission = policy.admit(record, numbers, now, limits, self._secret)
            return admission.state, admission

        try:
            admission = self._update_caps(admit)
        except state.LockBusy as error:
            self.log.error("Not paging: the per-number caps stayed locked (%s)", error)
            return {}
        if admission.refused:
            self.log.warning(
                "Not paging %d number(s) at their max_per_number cap %s: %s",
                len(admission.refused),
                self.max_per_number,
                mask_sample(admission.refused),
            )
        return admission.allowed

    @property
    def _secret(self) -> str:
        """Numbers in Variables are HMAC digests under the connection's App key (a secret already kept)."""
        return self.hook.config.appkey

    def _send(
        self, context: Context, allowed: Mapping[str, int], held_back: int
    ) -> tuple[list[str], Exception | None]:
        """
        One call per distinct count shown; returns the numbers surely not paged and the first error.

        A call that may have taken effect (the hook's outcome table) counts as paged: its cap slot and
        its claim are kept, so that an SMS that may be out is never followed by a second one.
        """
        by_count: dict[int, list[str]] = {}
        for number, skipped in allowed.items():
            by_count.setdefault(held_back + skipped, []).append(number)
        unpaged: list[str] = []
        error: Exception | None = None
        for count, numbers in by_count.items():
            value = self.render_template(
                self.tpl_value, {**context, "suppressed_count": count}, self._jinja_env
            )
            try:
                sent = self.hook.send_sms(numbers, self.tpl_id, value)
            except Exception as exc:
                if (
                    getattr(exc, "outcome", CallOutcome.MAY_HAVE_TAKEN_EFFECT)
                    is not CallOutcome.MAY_HAVE_TAKEN_EFFECT
                ):
                    unpaged += numbers
                error = error or exc
                continue
            self.log.info("Juhe SMS notification sent: sid %s to %d number(s)", sent["sid"], sent["count"])
        return unpaged, error

    def _update_episode(self, change: Callable[[Record | None], tuple[Record, Any]]) -> Any:
        """Apply ``change`` to the episode's record under its lock; return its result."""

        def apply(record: Record | None) -> tuple[Record, Any]:
            changed, result = change(record)
            return {**changed, "group_key": str(self.group_key)}, result

        key = state.variable_key("alert", str(self.group_key))
        return state.update(key, apply, f"juhe_sms alert episode {self.group_key!r}")

    def _update_caps(self, change: Callable[[Record | None], tuple[Record, Any]]) -> Any:
        """Apply ``change`` to the template's caps record under its lock; return its result."""
        key = state.variable_key("caps", str(self.tpl_id))
        return state.update(key, change, f"juhe_sms per-number caps of template {self.tpl_id}")


send_juhe_sms_notification = JuheSmsNotifier
