"""JuheSmsNotifier: an SMS from on_failure_callback, on_success_callback and DAG-level callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from airflow_provider_juhe import metrics
from airflow_provider_juhe._compat import BaseNotifier
from airflow_provider_juhe.alerting import policy, state
from airflow_provider_juhe.exceptions import CallOutcome, JuheInputError, input_checks
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.mobiles import mask_sample, parse_recipients
from airflow_provider_juhe.sms_content import unfilled_message, unfilled_variables

if TYPE_CHECKING:
    import jinja2

    from airflow_provider_juhe.alerting.state import AlertStore

#: Seconds since the epoch; shared by every process that pages, so intervals hold across them.
clock = time.time
Record = dict[str, Any]
#: A change to one record of the alert state: the record to write, and what the caller gets back.
RecordChange = Callable[[Record | None], tuple[Record, Any]]
#: Added to the longest a send can take: a claim older than that belongs to a process that died.
CLAIM_MARGIN_SECONDS = 5.0
#: From its start, a notification decides on the state within this, or pages without it (seconds).
STATE_SECONDS = 10.0
#: The longest the template read of the unfilled-variable check may take (seconds).
CHECK_TIMEOUT_SECONDS = 3.0
#: How often a notification that gave up on a busy lock looks whether its episode was paged (seconds).
PEEK_SECONDS = 0.25
#: Nothing is written to the state after this, so that a notification ends well within a task
#: callback's 20 s (``task_success_overtime``); what it could not record expires instead (seconds).
FINISH_SECONDS = 14.0
#: An episode is remembered at least this long after its last change (seconds).
EPISODE_TTL_SECONDS = 30 * 86400.0
#: A confirmation outlives its claim by this (seconds).
CONFIRMATION_TTL_SECONDS = 60.0


class JuheSmsNotifier(BaseNotifier):
    """
    Send an approved template when a callback fires; ``mobiles`` and ``tpl_value`` are Jinja-rendered.

    A failure to notify is logged and never raised over the task's own error. Each call renders a
    fresh copy, so one instance shared through ``default_args`` names each task correctly. An invalid
    number among ``mobiles`` is logged (masked) and skipped: the valid ones are still paged.

    With ``group_key``, notifications with the same key form one alert episode, remembered in the
    alert state (``juhe_sms_alert_*``, ``juhe_sms_caps_*``: Airflow Variables, or Redis with
    ``state_conn_id``) so that it holds across tasks, workers, DAG-level callbacks and DAG runs.
    ``tpl_value`` sees ``{{ suppressed_count }}``: the notifications held back (by
    ``repeat_interval`` or ``max_per_number``) since the last SMS. When the state cannot be used in
    time (a slow or unreachable store), the notification pages anyway and logs an ERROR saying what
    was skipped.

    :param mobiles: who to page: a list or a comma/whitespace separated string. (templated)
    :param tpl_id: an approved template id. (templated)
    :param tpl_value: the template variables, e.g. ``{"#task#": "{{ ti.task_id }}"}``. (templated)
    :param group_key: the alert episode this notification belongs to, e.g. ``"{{ dag.dag_id }}"``;
        None: every notification sends. (templated)
    :param repeat_interval: with ``group_key``: after an SMS, further notifications of the episode
        within this interval send nothing and are counted (a ``timedelta``, or seconds: a Deadline
        Alert's kwargs are stored as JSON). None: each one sends.
    :param resolve: with ``group_key``, for ``on_success_callback``: send only while the episode is
        open (an alert went out and was not yet resolved), then close it.
    :param max_per_number: at most this many SMS of this template to one number per rolling window,
        e.g. ``{"minute": 1, "hour": 4, "day": 20}``; a page over the cap is skipped for that number,
        logged and counted into its next SMS. None: no cap.
    :param state_conn_id: a Redis connection (conn type ``redis``, the extra
        ``airflow-provider-juhe[redis]``) that holds the alert state. None: the option
        ``[juhe] alert_state_conn_id``, and when that is empty too, Airflow Variables.
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
        repeat_interval: timedelta | float | None = None,
        resolve: bool = False,
        max_per_number: Mapping[str, int] | None = None,
        state_conn_id: str | None = None,
        juhe_conn_id: str = JuheSmsHook.default_conn_name,
        context: Context | None = None,
    ) -> None:
        super().__init__(context)
        self.mobiles = mobiles
        self.tpl_id = tpl_id
        self.tpl_value = tpl_value
        self.group_key = group_key
        self.resolve = resolve
        self.state_conn_id = state_conn_id
        self.juhe_conn_id = juhe_conn_id
        self._jinja_env: jinja2.Environment | None = None
        self.repeat_interval: timedelta | None = None
        self.max_per_number: dict[str, int] | None = None
        #: A deadline alert's kwargs refused in the triggerer: logged when awaited, never raised there
        #: (Airflow's CallbackTrigger would log the kwargs, on-call numbers included).
        self._refused: JuheInputError | None = None
        try:
            if resolve and group_key is None:
                raise JuheInputError("resolve=True needs a group_key: it closes that key's open episode")
            if isinstance(repeat_interval, (int, float)) and not isinstance(repeat_interval, bool):
                repeat_interval = timedelta(seconds=repeat_interval)  # seconds: what JSON kwargs can carry
            if repeat_interval is not None and not isinstance(repeat_interval, timedelta):
                raise JuheInputError(
                    f"repeat_interval must be a timedelta or seconds, not {type(repeat_interval).__name__}"
                )
            self.repeat_interval = repeat_interval
            with input_checks():
                self.max_per_number = policy.check_caps(max_per_number) if max_per_number else None
        except JuheInputError as error:
            if context is None:
                raise
            self._refused = error

    @cached_property
    def hook(self) -> JuheSmsHook:
        return JuheSmsHook(juhe_conn_id=self.juhe_conn_id)

    def __call__(self, *args: Any) -> None:
        # Airflow renders template fields in place: render a copy, keep this instance's templates.
        fresh = copy.copy(self)
        try:
            super(JuheSmsNotifier, fresh).__call__(*args)
        except Exception:
            self._log_failure()

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        if jinja_env is None:
            # DAG-level callbacks may carry a scheduler-side DAG without a Jinja environment of its own.
            dag = context.get("dag")
            jinja_env = self.get_template_env(dag=dag if hasattr(dag, "get_template_env") else None)
        self._jinja_env = jinja_env
        # tpl_value is rendered when the count it may show is known (in notify).
        fields = [name for name in self.template_fields if name != "tpl_value"]
        self._do_render_template_fields(self, fields, context, jinja_env, set())

    def __await__(self) -> Generator[Any, None, None]:
        """As Airflow's ``CallbackTrigger`` runs a deadline alert: rendered, then :meth:`async_notify`."""
        return self._notify_from_trigger().__await__()

    async def _notify_from_trigger(self) -> None:
        try:
            if self._refused is not None:
                raise self._refused
            self._update_context(self.context)
            self.render_template_fields(self.context)
        except Exception:
            self._log_failure()
            return
        await self.async_notify(self.context)

    async def async_notify(self, context: Context) -> None:
        """
        The same path as :meth:`notify`, on a thread: the event loop never waits for a call. Like
        ``__call__``, it logs a failure and raises nothing: Airflow's ``CallbackTrigger`` would log
        the callback's kwargs (the on-call numbers) with any exception that reached it.
        """
        try:
            await asyncio.to_thread(self.notify, context)
        except Exception:
            self._log_failure()

    def _log_failure(self) -> None:
        self.log.exception("Juhe SMS notification failed; the task's own outcome stands")

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
        self._check_filled(context)
        started = time.monotonic()
        budget = _Budget(started + STATE_SECONDS, started + FINISH_SECONDS)
        store = self._store() if self.group_key is not None or self.max_per_number else None
        token = uuid.uuid4().hex
        held_back = 0
        claimed = False
        if self.group_key is not None:
            decision = self._decide(store, token, budget)
            if decision is None:
                metrics.incr("alert.grouped")
                return
            if isinstance(decision, policy.Decision):
                held_back = decision.suppressed_count
                claimed = not self.resolve
        allowed, admitted_at = self._admit(store, recipients.valid, budget)
        if not allowed:  # every number is at its cap: the episode's SMS did not go out
            if claimed:
                # Counted once: by each number's cap record when it was written, else by the episode.
                uncounted = admitted_at is None
                self._update_after_send(
                    self._update_episode,
                    store,
                    budget,
                    lambda r: (policy.give_back(r, token, uncounted), None),
                )
            return
        unpaged, error = self._send(context, allowed, held_back)
        if len(unpaged) < len(allowed):
            metrics.incr("alert.sent")
        if claimed:
            if unpaged and len(unpaged) == len(allowed):
                # A page that did not go out must not hold back the next one: a duplicate beats a silence.
                self._update_after_send(
                    self._update_episode, store, budget, lambda r: (policy.give_back(r, token, False), None)
                )
            else:
                self._confirm(store, token, budget)
        if error is None:
            return
        if self.max_per_number and unpaged and admitted_at is not None:
            self._update_after_send(
                self._update_caps,
                store,
                budget,
                lambda r: (policy.release(r, unpaged, admitted_at, allowed, self._secret), None),
            )
        raise error

    # -- checks before the state ----------------------------------------------------------------------

    def _check_filled(self, context: Context) -> None:
        """
        A template variable that ``tpl_value`` leaves unfilled fails before any state or send, named
        (as the operator checks it), when the template's text can be read.
        """
        # One try, a short timeout: a check must not eat the callback's time when Juhe is slow.
        checker = copy.copy(self.hook)
        checker.__dict__["config"] = dataclasses.replace(
            self.hook.config, timeout=min(self.hook.config.timeout, CHECK_TIMEOUT_SECONDS), max_retries=0
        )
        try:
            template = checker.get_template(self.tpl_id)
        except JuheInputError:
            raise
        except Exception as error:  # unreadable: Juhe itself refuses an unfilled variable (228802)
            self.log.info("Template %s not read, its variables not checked: %s", self.tpl_id, error)
            return
        if template is None:
            return
        rendered = self.render_template(self.tpl_value, _with_count(context, 0), self._jinja_env)
        with input_checks():
            unfilled = unfilled_variables(template["content"], rendered)
        if unfilled:
            raise JuheInputError(unfilled_message(self.tpl_id, unfilled, "the page") + "; nothing sent")

    # -- the alert state ------------------------------------------------------------------------------

    def _store(self) -> AlertStore | None:
        """The configured store; None (logged) when it cannot be used at all."""
        try:
            return state.open_store(self.state_conn_id)
        except state.TROUBLE as error:
            self._skipped("grouping and max_per_number", error)
            return None

    def _skipped(self, what: str, error: BaseException) -> None:
        self.log.error(
            "Alert %r: %s skipped, paging anyway: the alert state could not be used (%s)",
            self.group_key,
            what,
            error,
        )
        metrics.incr("alert.state_skipped")

    def _decide(
        self, store: AlertStore | None, token: str, budget: _Budget
    ) -> policy.Decision | _Skipped | None:
        """
        The episode's decision, stored atomically; None: nothing to send now; :data:`SKIPPED`: the
        state could not be used, page as if none were kept (logged).
        """
        if store is None:
            return SKIPPED
        claim_seconds = self._claim_seconds()

        def decide(record: Record | None) -> tuple[Record, policy.Decision]:
            now = clock()  # read under the lock (or in the transaction): a wait never ages a decision
            if record and "claim" in record:  # an SMS was claimed: its sender may have confirmed it since
                try:
                    confirmation = store.read(self._confirmation_key)
                except state.TROUBLE:  # unreadable (or damaged): the claim expires in time
                    confirmation = None
                record = policy.confirm(record, confirmation)
            if self.resolve:
                decision = policy.decide_resolve(record, now)
            else:
                decision = policy.decide_alert(record, now, self.repeat_interval, token, claim_seconds)
            return decision.state, decision

        try:
            decision: policy.Decision = self._update_episode(store, decide, budget.state)
        except state.TROUBLE as error:
            if not self.resolve and self._paged_meanwhile(store, error, budget, claim_seconds):
                self.log.warning(
                    "Alert %r: held back (another notification paged this episode); this notification "
                    "is not counted: the alert state was busy (%s)",
                    self.group_key,
                    error,
                )
                return None
            self._skipped("grouping", error)
            return SKIPPED
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

    def _paged_meanwhile(
        self, store: AlertStore, error: Exception, budget: _Budget, claim_seconds: float
    ) -> bool:
        """
        Whether another notification surely paged this episode, read without the lock: a waiter need
        not page again. While another holds the lock (it may be writing its claim), look again until
        the state's time bound.
        """
        while True:
            began = time.monotonic()
            try:
                seen = store.read(self._episode_key)
            except state.TROUBLE:
                return False
            if policy.is_paged(seen, clock(), self.repeat_interval, claim_seconds):
                return True
            took = time.monotonic() - began
            if not getattr(error, "held", False) or time.monotonic() + 2 * took + PEEK_SECONDS > budget.state:
                return False
            time.sleep(max(PEEK_SECONDS, took))

    @property
    def _episode_key(self) -> str:
        return state.state_key("alert", str(self.group_key))

    @property
    def _confirmation_key(self) -> str:
        return self._episode_key + "_sent"

    @property
    def _caps_key(self) -> str:
        return state.state_key("caps", str(self.tpl_id))

    def _confirm(self, store: AlertStore | None, token: str, budget: _Budget) -> None:
        """
        The claimed SMS went out. Written beside the episode, without its lock, so that a storm of
        notifications queueing for the lock cannot keep the sender waiting until Airflow kills its
        process; the next notification folds it into the episode. If this write is lost, the claim
        expires and a later notification pages again: a duplicate, never a silence.
        """
        if store is None or budget.finished():
            self.log.warning("Alert %r: its SMS went out; no time left to record it", self.group_key)
            return
        try:
            store.write(
                self._confirmation_key,
                {"token": token, "at": clock()},
                ttl=2 * self._claim_seconds() + CONFIRMATION_TTL_SECONDS,
                description="juhe_sms SMS sent",
            )
        except state.TROUBLE:
            self.log.warning("Could not confirm alert %r's SMS", self.group_key, exc_info=True)

    def _claim_seconds(self) -> float:
        """How long a claim may wait for its SMS: the longest the send can take, then it expires."""
        config = self.hook.config
        attempts = config.max_retries + 1
        backoff = sum(min(self.hook.retry_wait * 2**n, self.hook.retry_wait_max) for n in range(attempts))
        return float(config.timeout * attempts + backoff + CLAIM_MARGIN_SECONDS)

    def _admit(
        self, store: AlertStore | None, numbers: list[str], budget: _Budget
    ) -> tuple[dict[str, int], float | None]:
        """
        The numbers under their caps, each with the pages skipped for it, and the time their pages
        were counted at (None when not counted); the caps record written.
        """
        every = {number: 0 for number in numbers}
        if not self.max_per_number or store is None:
            return every, None
        limits = self.max_per_number

        def admit(record: Record | None) -> tuple[Record, tuple[policy.Admission, float]]:
            now = clock()  # under the lock: the pages count when they go out, not when this one began
            admission = policy.admit(record, numbers, now, limits, self._secret)
            return admission.state, (admission, now)

        try:
            admission, now = self._update_caps(store, admit, budget.state)
        except state.TROUBLE as error:
            # A number whose cap is surely full (read without the lock) is not paged again; the rest are.
            # Past the state's time bound nothing more is read: the page must not wait for a slow store.
            seen = policy.Admission(every, [], {})
            if time.monotonic() < budget.state:
                with contextlib.suppress(*state.TROUBLE):
                    seen = policy.admit(store.read(self._caps_key), numbers, clock(), limits, self._secret)
            if seen.refused:
                metrics.incr("alert.capped", len(seen.refused))
                self.log.warning(
                    "Not paging %d number(s) at their max_per_number cap %s (not counted: the alert "
                    "state was busy): %s",
                    len(seen.refused),
                    self.max_per_number,
                    mask_sample(seen.refused),
                )
            if seen.allowed:
                self._skipped("max_per_number", error)
            return {number: 0 for number in seen.allowed}, None
        if admission.refused:
            metrics.incr("alert.capped", len(admission.refused))
            self.log.warning(
                "Not paging %d number(s) at their max_per_number cap %s: %s",
                len(admission.refused),
                self.max_per_number,
                mask_sample(admission.refused),
            )
        return admission.allowed, now

    @property
    def _secret(self) -> str:
        """Numbers in the state are HMAC digests under the connection's App key (a secret already kept)."""
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
            value = self.render_template(self.tpl_value, _with_count(context, count), self._jinja_env)
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

    def _update_episode(self, store: AlertStore, change: RecordChange, deadline: float) -> Any:
        """Apply ``change`` to the episode's record atomically; return its result."""

        def apply(record: Record | None) -> tuple[Record, Any]:
            changed, result = change(record)
            return {**changed, "group_key": str(self.group_key)}, result

        return store.update(
            self._episode_key,
            apply,
            ttl=max(EPISODE_TTL_SECONDS, 2 * (self.repeat_interval or timedelta()).total_seconds()),
            deadline=deadline,
            description=f"juhe_sms alert episode {self.group_key!r}",
        )

    def _update_caps(self, store: AlertStore, change: RecordChange, deadline: float) -> Any:
        """Apply ``change`` to the template's caps record atomically; return its result."""
        return store.update(
            self._caps_key,
            change,
            ttl=max(policy.CAP_WINDOWS.values()) + policy.FUTURE_SECONDS,
            deadline=deadline,
            description=f"juhe_sms per-number caps of template {self.tpl_id}",
        )

    def _update_after_send(
        self,
        update: Callable[[AlertStore, RecordChange, float], Any],
        store: AlertStore | None,
        budget: _Budget,
        change: RecordChange,
    ) -> None:
        """
        Give back a claim (``update`` is :meth:`_update_episode`) or a cap slot (:meth:`_update_caps`)
        of a page that did not go out; on trouble it expires instead.
        """
        if store is None:
            return
        try:
            update(store, change, budget.finish)
        except state.TROUBLE as error:
            self.log.warning(
                "Alert %r: could not record that its SMS did not go out (%s)", self.group_key, error
            )


def _with_count(context: Context, count: int) -> Any:
    """The context ``tpl_value`` is rendered with: ``{{ suppressed_count }}`` added."""
    return {**context, "suppressed_count": count}


class _Skipped:
    """The state could not be used: page as if none were kept."""


SKIPPED = _Skipped()


class _Budget:
    """Monotonic deadlines: the state's decisions by ``state``, everything by ``finish``."""

    def __init__(self, state: float, finish: float) -> None:
        self.state, self.finish = state, finish

    def finished(self) -> bool:
        return time.monotonic() >= self.finish


send_juhe_sms_notification = JuheSmsNotifier
