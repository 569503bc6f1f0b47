"""JuheSmsHook: the only place that speaks HTTP to the Juhe financial SMS API."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, TypeVar

import requests
import urllib3
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from airflow_provider_juhe import metrics
from airflow_provider_juhe._compat import (
    BaseHook,
    Connection,
    aconnection_and_extra,
    amask_secret,
    classic_field_behaviour,
    classic_form_widgets,
    mask_secret,
)
from airflow_provider_juhe.exceptions import (
    ERROR_CODES,
    OUTCOME_UNKNOWN_CODE,
    RATE_LIMITED_CODE,
    CallOutcome,
    JuheConfigError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
    JuheError,
    JuheResponseError,
    api_error,
    input_checks,
    shorten,
)
from airflow_provider_juhe.hooks import transport
from airflow_provider_juhe.hooks.outcomes import Ending
from airflow_provider_juhe.hooks.rate_limit import RateLimiter
from airflow_provider_juhe.juhe_api import (
    BATCH_INFO_CARRIERS,
    DEFAULT_HOST,
    MOBILE_GROUP_CARRIERS,
    MOBILE_GROUP_LIMIT,
    MOBILE_GROUP_PATH,
    SEND_LIMIT,
    SEND_PATH,
    SUBMIT_TEMPLATE_PATH,
    TEMPLATE_CARRIERS,
    TEMPLATE_STATES,
    TEMPLATES_PATH,
)
from airflow_provider_juhe.mobiles import mask_in_text, mask_sample, require_valid
from airflow_provider_juhe.sms_content import encode_tpl_value

_T = TypeVar("_T")

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: The ``call`` tag of the ``juhe.call.latency`` timer, per API path.
CALL_NAMES = {
    SEND_PATH: "send",
    TEMPLATES_PATH: "templates",
    MOBILE_GROUP_PATH: "group",
    SUBMIT_TEMPLATE_PATH: "submit",
}

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
#: The most bytes of an answer read: the largest documented answer (mobileGroup for 10,000 numbers,
#: ~150 KB; a long template list) fits many times over, a runaway body does not.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: The most bytes read of an error page, for the message's excerpt.
EXCERPT_BYTES = 2048


class CallKind(Enum):
    """What a call does, which decides when it may be retried."""

    READ = "read"  # no side effect: retried on any ending
    WRITE = "write"  # retried only when it surely did not take effect
    SEND = "send"  # as WRITE; an ambiguous failure becomes JuheDeliveryUnknownError


@dataclass(frozen=True)
class JuheConnectionConfig:
    """What the hook reads from its Airflow connection."""

    base_url: str
    appkey: str = field(repr=False)  # never printed, even where no secrets masker is registered
    timeout: float
    max_retries: int
    max_calls_per_second: float | None


class JuheSmsHook(BaseHook):
    """
    Calls the Juhe financial SMS API (submit template, send, group numbers, list templates).

    The appkey is the connection's password; requests are POSTed form-encoded over one pooled
    session, so the key never travels in a URL. Calls are retried with bounded exponential backoff
    only where they surely did not take effect: a send is never repeated after its request left.

    :param juhe_conn_id: Airflow connection of type ``juhe_sms``.
    :param pool_size: most HTTP connections kept open at once (raise it for concurrent sends).
    :param retry_wait: first backoff in seconds; it doubles per retry up to ``retry_wait_max``.
    :param retry_wait_max: longest backoff in seconds.
    :param sleep: how to wait between retries (tests pass a recorder instead of ``time.sleep``).
    """

    conn_name_attr = "juhe_conn_id"
    default_conn_name = "juhe_sms_default"
    conn_type = "juhe_sms"
    hook_name = "Juhe SMS"

    def __init__(
        self,
        juhe_conn_id: str = default_conn_name,
        *,
        pool_size: int = 10,
        retry_wait: float = 0.5,
        retry_wait_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.juhe_conn_id = juhe_conn_id
        self.pool_size = pool_size
        self.retry_wait = retry_wait
        self.retry_wait_max = retry_wait_max
        self.sleep = sleep
        self._session: requests.Session | None = None
        self._limiter: RateLimiter | None = None
        self._session_lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's relabelled and hidden fields, for Airflow 3.0 and 3.1 (3.2+ reads the provider info)."""
        return classic_field_behaviour(_connection_type()["ui-field-behaviour"])

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields, for Airflow 3.0 and 3.1 (3.2+ reads the provider info)."""
        return classic_form_widgets(_connection_type()["conn-fields"])

    @cached_property
    def config(self) -> JuheConnectionConfig:
        """The connection's settings, read once; the appkey is registered with the secrets masker."""
        with self._defined():
            conn = self.get_connection(self.juhe_conn_id)
        config = self._read_config(conn, conn.extra_dejson)
        mask_secret(config.appkey)
        return config

    async def aget_config(self) -> JuheConnectionConfig:
        """
        :attr:`config` for code on an event loop (triggers, ``async_notify``).

        Every step that may talk to the task supervisor (the connection, its extras, masking the key)
        goes through the async API: a blocking supervisor call on the triggerer's loop can deadlock.
        """
        if "config" not in self.__dict__:
            with self._defined():
                conn, extra = await aconnection_and_extra(self, self.juhe_conn_id)
            config = self._read_config(conn, extra)
            await amask_secret(config.appkey)
            self.__dict__["config"] = config
        return self.config

    def prepare(self, concurrency: int = 1) -> None:
        """
        Read the connection and build the session, pool and pacer before calls run in parallel.

        :param concurrency: calls that will be in flight at once; the pool keeps that many connections.
        """
        if concurrency > self.pool_size:
            self.pool_size = concurrency
            self.close()  # a session built earlier (e.g. by list_templates) has a smaller pool
        self.config  # noqa: B018 - read here, not first inside worker threads
        self.get_conn()

    @contextlib.contextmanager
    def _defined(self) -> Iterator[None]:
        """An undefined connection fails at once (no retry defines it), saying how to define it."""
        from airflow.exceptions import AirflowNotFoundException

        try:
            yield
        except AirflowNotFoundException:
            variable = "AIRFLOW_CONN_" + self.juhe_conn_id.upper()
            raise JuheConfigError(
                f"juhe_conn_id: the connection {self.juhe_conn_id!r} is not defined (the default id is "
                f"{self.default_conn_name!r}). Define it as an environment variable, e.g. {variable}="
                '\'{"conn_type": "juhe_sms", "host": "v.juhe.cn", "password": "<your appkey>"}\', '
                "in the UI (Admin → Connections, type Juhe SMS), or in your secrets backend."
            ) from None

    def _read_config(self, conn: Connection, extra: Mapping[str, Any]) -> JuheConnectionConfig:
        appkey = (conn.password or "").strip()
        with _connection_field(self.juhe_conn_id):
            if not appkey:
                raise ValueError("password: the App key is empty")
            return JuheConnectionConfig(
                base_url=build_base_url(conn.host, conn.schema, conn.port),
                appkey=appkey,
                timeout=_extra_number(extra, "timeout", float, DEFAULT_TIMEOUT),
                max_retries=_extra_number(extra, "max_retries", int, DEFAULT_MAX_RETRIES, zero_allowed=True),
                max_calls_per_second=_extra_number(extra, "max_calls_per_second", float, None),
            )

    @property
    def rate_limiter(self) -> RateLimiter:
        """The pacer shared by every call of this hook (built once, thread-safe)."""
        config = self.config
        with self._session_lock:
            if self._limiter is None:
                self._limiter = RateLimiter(config.max_calls_per_second)
            return self._limiter

    def get_conn(self) -> requests.Session:
        """The pooled session shared by every call of this hook (thread-safe), sized by ``pool_size``."""
        base_url = self.config.base_url
        with self._session_lock:
            if self._session is None:
                session = requests.Session()
                adapter = transport.DeadlineAdapter(
                    pool_connections=1, pool_maxsize=self.pool_size, max_retries=0
                )
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = "airflow-provider-juhe"
                # Proxies and CA bundle read from the environment once, not on every call: requests
                # would scan the whole environment per request (a third of a send's CPU).
                session.trust_env = False
                session.proxies.update(requests.utils.get_environ_proxies(base_url))
                session.verify = (
                    os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
                )
                self._session = session
            return self._session

    def close(self) -> None:
        """Close the pooled connections."""
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    # -- the four calls ---------------------------------------------------------------------------

    def submit_template(self, signature: str, content: str) -> dict[str, Any]:
        """
        Submit a template for review.

        :return: ``{"tpl_id", "send_content", "carrier_tpl_ids": {"all", "mobile", "unicom", "telecom"}}``
        """
        with input_checks():
            signature = _required_text(signature, "signature")
            content = _required_text(content, "content")
        return self._call(
            CallKind.WRITE,
            SUBMIT_TEMPLATE_PATH,
            {"signature": signature, "content": content},
            _read_submitted,
        )

    def send_sms(
        self,
        mobiles: str | Iterable[str],
        tpl_id: int | str,
        tpl_value: Mapping[str, object] | str | None = None,
        *,
        before_attempt: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """
        Send one approved template to the numbers, in exactly one API call.

        :param mobiles: numbers, as a list or a comma/whitespace separated string (at most 1,000).
        :param tpl_id: an approved template id.
        :param tpl_value: the template's variables, ``{"code": "123456"}`` or an encoded string.
        :param before_attempt: called right before each attempt's request starts (after the pacer's
            wait and any retry's backoff); it may raise :class:`~airflow_provider_juhe.exceptions.JuheNotStarted`
            (e.g. a send window has closed) to stop the call with nothing sent, never retried.
        :return: ``{"sid": str, "fee": int, "count": int}``
        :raises JuheDeliveryUnknownError: the request left but its outcome cannot be known.
        :raises JuheNotStarted: ``before_attempt`` stopped the call before its request started.
        """
        with input_checks():
            numbers = require_valid(mobiles)
            if not numbers:
                raise ValueError("mobiles: no number given")
            if len(numbers) > SEND_LIMIT:
                raise ValueError(f"mobiles: {len(numbers)} numbers in one call, at most {SEND_LIMIT}")
            params = {"mobile": ",".join(numbers), "tplId": str(validate_tpl_id(tpl_id))}
            encoded = encode_tpl_value(tpl_value)
        if encoded:
            params["tplValue"] = encoded
        self.log.debug(
            "Sending template %s to %d number(s): %s",
            params["tplId"],
            len(numbers),
            mask_sample(numbers, limit=3),
        )
        sent = self._call(
            CallKind.SEND,
            SEND_PATH,
            params,
            _read_send_result,
            recipients=numbers,
            before_attempt=before_attempt,
        )
        return {**sent, "count": len(numbers)}

    def group_mobiles(self, mobiles: str | Iterable[str]) -> dict[str, list[str]]:
        """
        Group numbers by carrier through mobileGroup.php, 10,000 numbers per call.

        :return: ``{"mobile": [...], "unicom": [...], "telecom": [...], "unknown": [...]}``
        """
        with input_checks():
            numbers = require_valid(mobiles)
        groups: dict[str, list[str]] = {"mobile": [], "unicom": [], "telecom": [], "unknown": []}
        for start in range(0, len(numbers), MOBILE_GROUP_LIMIT):
            chunk = numbers[start : start + MOBILE_GROUP_LIMIT]
            answer = self._call(CallKind.READ, MOBILE_GROUP_PATH, {"mobiles": ",".join(chunk)}, _read_groups)
            for carrier, members in answer.items():
                groups[carrier].extend(members)
        return groups

    def list_templates(self) -> list[dict[str, Any]]:
        """
        The account's templates with their review state.

        :return: ``[{"tpl_id", "content", "signature", "state", "state_name", "carrier"}, ...]``
        """
        return self._call(CallKind.READ, TEMPLATES_PATH, {}, _read_templates)

    def get_template(self, tpl_id: int | str) -> dict[str, Any] | None:
        """One template by id, or ``None`` when the account has no such template."""
        with input_checks():
            wanted = validate_tpl_id(tpl_id)
        return next((t for t in self.list_templates() if t["tpl_id"] == wanted), None)

    def test_connection(self) -> tuple[bool, str]:
        """Check the key by listing templates; never raises."""
        try:
            count = len(self.list_templates())
        except Exception as error:
            return False, self._redact(str(error))
        return True, f"Connected to Juhe at {self.config.base_url}: {count} template(s) on the account"

    # -- HTTP -------------------------------------------------------------------------------------

    def _call(
        self,
        kind: CallKind,
        path: str,
        params: dict[str, str],
        read: Callable[[Any], _T] = lambda result: result,
        *,
        recipients: list[str] | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> _T:
        """
        POST one call and ``read`` its result, retrying per the outcome table; every other ending
        becomes the exception the table names for this kind of call.

        :param before_attempt: see :meth:`send_sms`; what it raises ends the call as it is.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_exponential(multiplier=self.retry_wait, max=self.retry_wait_max),
            retry=retry_if_exception(lambda error: _may_retry(error, kind)),
            sleep=self.sleep,
            before_sleep=lambda state: self.log.warning(
                "Juhe %s failed (attempt %d), retrying: %s",
                path,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            ),
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(lambda: self._attempt(kind, path, params, read, before_attempt))
        except _Ended as ended:
            raise self._error(ended, kind, path, recipients or []) from None
        finally:  # the whole call, its retries included, however it ended
            metrics.timing(
                "call.latency", time.monotonic() - started, tags={"call": CALL_NAMES.get(path, path)}
            )

    def _error(self, ended: _Ended, kind: CallKind, path: str, recipients: list[str]) -> JuheError:
        """The exception the outcome table names for this ending and kind of call."""
        outcome = ended.ending.outcome
        if ended.ending is Ending.INVALID_URL:
            return JuheConfigError(f"Connection {self.juhe_conn_id!r} (host): {ended.detail}")
        if outcome is CallOutcome.NOTHING_LEFT:
            return JuheConnectionError(f"{ended.detail} calling {path}; nothing was sent")
        if outcome is CallOutcome.REFUSED:
            return api_error(ended.error_code, ended.detail)  # type: ignore[arg-type]
        if kind is CallKind.SEND:
            detail = ended.detail if ended.status in (0, 200) else f"HTTP {ended.status}: {ended.detail}"
            return JuheDeliveryUnknownError(recipients, detail, ended.error_code, ended.sid)
        return JuheResponseError(ended.status, ended.detail, ended.error_code)

    def _attempt(
        self,
        kind: CallKind,
        path: str,
        params: dict[str, str],
        read: Callable[[Any], _T],
        before_attempt: Callable[[], None] | None = None,
    ) -> _T:
        result = self._post(path, params, before_attempt)
        try:
            return read(result)
        except Exception as error:  # whatever a server's result makes a reader raise: unreadable
            raise _Ended(
                Ending.UNREADABLE_RESULT,
                f"{path} answered success with an unreadable result ({type(error).__name__}: "
                f"{self._redact(shorten(str(error), 200))})",
                sid=_sid_of(result) if kind is CallKind.SEND else None,
            ) from None

    def _post(
        self, path: str, params: dict[str, str], before_attempt: Callable[[], None] | None = None
    ) -> Any:
        """One HTTP request under the whole-call deadline: Juhe's ``result``, or ``_Ended``."""
        config = self.config
        session = self.get_conn()
        self.rate_limiter.wait()
        if before_attempt is not None:  # the last moment before the request starts: after any wait
            before_attempt()
        with transport.attempt(config.timeout) as attempt:
            try:
                # Prepared here, not by session.post(): merging the session's settings into every
                # request cost a third of a call's CPU, and the form body needs nothing of them.
                request = requests.PreparedRequest()
                request.prepare(
                    method="POST",
                    url=config.base_url + path,
                    headers={**session.headers, "Content-Type": FORM_CONTENT_TYPE},
                    data=transport.form_body({"key": config.appkey, **params}),
                )
                response = session.send(request, timeout=config.timeout, allow_redirects=False, stream=True)
            except (requests.RequestException, urllib3.exceptions.LocationValueError) as error:
                ending = _transport_ending(error, attempt.started)
                cause = (
                    f"{type(error).__name__}: {shorten(str(error), 300)}"
                    if ending is Ending.INVALID_URL
                    else transport.failure_cause(error, config.base_url, config.timeout, attempt.started)
                )
                raise _Ended(ending, self._redact(cause), status=0) from None
            try:
                body = _read_body(response)
            except _Ended:
                raise
            except Exception as error:  # urllib3's read errors: the request had started
                timed_out = isinstance(error, (TimeoutError, urllib3.exceptions.TimeoutError))
                cause = transport.failure_cause(error, config.base_url, config.timeout, started=True)
                raise _Ended(
                    Ending.DEADLINE if timed_out else Ending.CONNECTION_LOST,
                    f"{self._redact(cause)}, reading the answer of {path}",
                    status=0,
                ) from None
        try:
            return self._parse(response.status_code, response.headers.get("Content-Type", ""), body)
        except _Ended:
            raise
        except Exception as error:  # anything else a body can make a parser raise: not Juhe's JSON
            raise _Ended(
                Ending.NOT_JSON, f"an answer that cannot be parsed ({type(error).__name__})"
            ) from None

    def _parse(self, status: int, content_type: str, body: bytes) -> Any:
        """Juhe's ``result`` from a whole answer, or ``_Ended`` per the outcome table."""
        charset = _charset(content_type)
        if status != 200:
            raise _Ended(Ending.HTTP_ERROR, self._redact(_excerpt(body, charset)), status=status)
        try:
            text = body if charset in (None, "utf-8", "utf8") else body.decode(charset)
            answer = json.loads(text, object_pairs_hook=_unique_keys)
        except (ValueError, LookupError, RecursionError):
            raise _Ended(Ending.NOT_JSON, self._redact(_excerpt(body, charset))) from None
        code = answer.get("error_code") if isinstance(answer, dict) else None
        if type(code) is not int:
            raise _Ended(Ending.UNEXPECTED_SHAPE, self._redact(_excerpt(body, charset)))
        if code == 0:
            return answer.get("result")
        reason = self._redact(shorten(str(answer.get("reason", "")), 300))
        if code == RATE_LIMITED_CODE:
            self.rate_limiter.slow_down()
        if code == OUTCOME_UNKNOWN_CODE:
            raise _Ended(Ending.INTERNAL_ERROR, f"Juhe error {code} {reason}", error_code=code)
        if code not in ERROR_CODES:
            raise _Ended(Ending.UNDOCUMENTED_CODE, f"Juhe error {code} {reason}", error_code=code)
        raise _Ended(Ending.DOCUMENTED_CODE, reason, error_code=code)

    def _redact(self, text: str) -> str:
        """
        Belt and braces: no message this hook builds may carry the appkey, nor a number unmasked
        (a server's reason or error page may echo the request).
        """
        config = self.__dict__.get("config")  # set once the connection has been read
        return mask_in_text(text.replace(config.appkey, "***") if config else text)


class _Ended(Exception):
    """How one attempt ended, when not with a readable success (internal to the hook)."""

    def __init__(
        self,
        ending: Ending,
        detail: str,
        *,
        status: int = 200,
        error_code: int | None = None,
        sid: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.ending = ending
        self.detail = detail
        self.status = status
        self.error_code = error_code
        self.sid = sid


_INVALID_URL_ERRORS = (
    urllib3.exceptions.LocationValueError,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
)


def _transport_ending(error: Exception, started: bool) -> Ending:
    """
    Classify a failure before any answer. Only a failure that cannot happen once bytes have left
    (and with no byte written, by ``started``) counts as nothing left; anything unclear may have.
    """
    if isinstance(error, _INVALID_URL_ERRORS):
        return Ending.INVALID_URL
    if not started:
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return Ending.CONNECT_TIMEOUT
        if isinstance(error, requests.exceptions.SSLError):
            return Ending.TLS_FAILURE
        reason = getattr(error.args[0], "reason", error.args[0]) if error.args else None
        if isinstance(reason, urllib3.exceptions.NameResolutionError):
            return Ending.DNS_FAILURE
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return Ending.CONNECTION_REFUSED
    return Ending.DEADLINE if isinstance(error, requests.Timeout) else Ending.CONNECTION_LOST


def _read_body(response: requests.Response) -> bytes:
    """The answer, read up to :data:`MAX_ANSWER_BYTES` (an error page only up to its excerpt)."""
    ok = response.status_code == 200
    limit = MAX_ANSWER_BYTES if ok else EXCERPT_BYTES
    declared = response.headers.get("Content-Length", "")
    if ok and declared.isdigit() and int(declared) > limit:
        response.raw.close()
        raise _Ended(Ending.OVERSIZED, f"the answer declares {declared} bytes, more than the {limit} read")
    body = response.raw.read(limit + 1, decode_content=True)
    if len(body) > limit or not ok:
        response.raw.close()  # the rest stays unread: this connection cannot serve another call
        if ok:
            raise _Ended(Ending.OVERSIZED, f"the answer is larger than the {limit} bytes read")
        return body[:limit]
    response.raw.release_conn()
    return body


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"').lower()
    return None


def _excerpt(body: bytes, charset: str | None) -> str:
    """The start of a body for a message: decoded as declared (else UTF-8), never guessed."""
    try:
        text = body[:EXCERPT_BYTES].decode(charset or "utf-8", "replace")
    except (LookupError, UnicodeError):  # an unknown charset, or one without a "replace" handler
        text = body[:EXCERPT_BYTES].decode("utf-8", "replace")
    return shorten(text, 200)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys repeat (two ``error_code``s) is ambiguous: not Juhe's JSON."""
    answer = dict(pairs)
    if len(answer) != len(pairs):
        raise ValueError("a key repeats in a JSON object")
    return answer


def _sid_of(result: Any) -> str | None:
    sid = result.get("sid") if isinstance(result, Mapping) else None
    if isinstance(sid, bool) or not isinstance(sid, (str, int)) or sid == "":
        return None
    return str(sid)


def _integer(value: Any) -> int:
    """An integer Juhe sent as a number or as digits; anything else raises ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def _read_submitted(result: Any) -> dict[str, Any]:
    """submitTpl's result: ``{"tpl_id", "send_content", "carrier_tpl_ids"}``."""
    carrier_tpl_ids: dict[str, int] = {}
    for entry in result.get("tplBatchInfo") or []:
        for letter, tpl_id in entry.items():
            if letter in BATCH_INFO_CARRIERS:
                carrier_tpl_ids[BATCH_INFO_CARRIERS[letter]] = _integer(tpl_id)
    return {
        "tpl_id": _integer(result["tplId"]),
        "send_content": _text(result.get("sendContent")),
        "carrier_tpl_ids": carrier_tpl_ids,
    }


def _read_groups(result: Any) -> dict[str, list[str]]:
    """mobileGroup's result by carrier (``"unknown": null`` is an empty list)."""
    groups: dict[str, list[str]] = {}
    for letter, carrier in MOBILE_GROUP_CARRIERS.items():
        members = result.get(letter) or []
        if not isinstance(members, list):
            raise TypeError(f"{letter!r} is {type(members).__name__}, not a list")
        groups[carrier] = [_text(member) for member in members]
    return groups


def _read_templates(result: Any) -> list[dict[str, Any]]:
    """myTemplates' result: one plain record per template."""
    templates = result.get("templates") or []  # a result that is not an object is unreadable
    if not isinstance(templates, list):
        raise TypeError(f"templates is {type(templates).__name__}, not a list")
    records = []
    for t in templates:
        state, operation = _integer(t.get("tpl_state", 0)), _integer(t.get("operation", 0))
        records.append(
            {
                "tpl_id": _integer(t["tplId"]),
                "content": _text(t.get("tpl")),
                "signature": _text(t.get("tpl_signature")),
                "state": state,
                "state_name": TEMPLATE_STATES.get(state, "unknown"),
                "carrier": TEMPLATE_CARRIERS.get(operation, "unknown"),
            }
        )
    return records


def _read_send_result(result: Any) -> dict[str, Any]:
    """``{"sid", "fee"}`` from send.php's result; raises for anything else (an unreadable success)."""
    sid = _sid_of(result)
    if sid is None:
        raise ValueError("no sid")
    given = result.get("fee") or 0
    if isinstance(given, bool) or not isinstance(given, (int, float, str)):
        raise ValueError(f"fee {given!r}")
    fee = float(given)  # the doc types fee as a string: "1", "1.0"
    if fee < 0 or not fee.is_integer():
        raise ValueError(f"fee {given!r}")
    return {"sid": sid, "fee": int(fee)}


def build_base_url(host: str | None, schema: str | None, port: int | None) -> str:
    """
    A full URL in ``host`` wins; else ``schema`` (http/https, default https), host and port.

    :raises ValueError: naming the connection field, for a URL that cannot work (``htp://…``).
    """
    host = (host or "").strip() or DEFAULT_HOST
    if "://" not in host and ":/" in host:  # "http:/v.juhe.cn": a URL with a slash missing
        raise ValueError(f"host: {host!r} is not a valid host or base URL")
    if "://" in host:
        url = host.rstrip("/")
    else:
        scheme = (schema or "https").strip().lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"schema: expected 'http' or 'https', got {schema!r}")
        url = f"{scheme}://{host.strip('/')}" + (f":{port}" if port else "")
    try:
        parsed = urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise ValueError(f"host: {host!r} is not a valid host or URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"host: the URL's scheme must be http or https, got {host!r}")
    if (
        not parsed.host
        or any(c.isspace() for c in url)
        or parsed.query
        or parsed.fragment
        or (parsed.port is not None and not 0 < parsed.port < 65536)
        or not _valid_host(parsed.host)
    ):
        raise ValueError(f"host: {host!r} is not a valid host or base URL")
    return url


def _valid_host(host: str) -> bool:
    """An IP literal, or a name whose labels are not empty (``a..b``) and that encodes as IDNA."""
    if host.startswith("["):
        return host.endswith("]")
    try:
        host.rstrip(".").encode("idna")
    except UnicodeError:
        return False
    return all(host.rstrip(".").split("."))


@contextlib.contextmanager
def _connection_field(conn_id: str) -> Iterator[None]:
    """A connection field that cannot work is a configuration error: no task retry can fix it."""
    try:
        yield
    except (ValueError, TypeError) as error:
        raise JuheConfigError(f"Connection {conn_id!r}, {error}") from None


def validate_tpl_id(tpl_id: int | str) -> int:
    """A template id is a positive integer (given as int or digits)."""
    if isinstance(tpl_id, bool) or not str(tpl_id).strip().isdigit() or int(str(tpl_id).strip()) <= 0:
        raise ValueError(f"tpl_id: expected a positive integer template id, got {tpl_id!r}")
    return int(str(tpl_id).strip())


def _required_text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: expected non-empty text, got {value!r}")
    return value.strip()


def _connection_type() -> dict[str, Any]:
    """The ``juhe_sms`` entry of the provider info: the one declaration of the connection form."""
    from airflow_provider_juhe import get_provider_info

    connection_type: dict[str, Any] = get_provider_info()["connection-types"][0]
    return connection_type


def _extra_number(
    extra: Mapping[str, Any], field: str, kind: type, default: Any, *, zero_allowed: bool = False
) -> Any:
    """A numeric connection extra (the UI may store it as text); blank means the default."""
    value = extra.get(field)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"extra {field!r}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero_allowed):
        raise ValueError(
            f"extra {field!r}: must be a finite number {'≥' if zero_allowed else '>'} 0, got {value!r}"
        )
    return number


def _may_retry(error: BaseException, kind: CallKind) -> bool:
    """The hook's own retries: only where the call surely did not take effect (or is a read)."""
    if not isinstance(error, _Ended) or error.ending is Ending.INVALID_URL:
        return False
    outcome = error.ending.outcome
    if outcome is CallOutcome.NOTHING_LEFT:
        return True
    if outcome is CallOutcome.REFUSED:
        return ERROR_CODES[error.error_code].transient  # type: ignore[index]
    return kind is CallKind.READ
