"""JuheSmsHook: the only place that speaks HTTP to the Juhe financial SMS API."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import requests
from airflow.sdk import BaseHook, Connection
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from urllib3.exceptions import NewConnectionError

from airflow_provider_juhe.exceptions import (
    OUTCOME_UNKNOWN_CODE,
    JuheApiError,
    JuheConnectionError,
    JuheDeliveryUnknownError,
    JuheError,
    JuheResponseError,
    api_error,
    input_checks,
)
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
from airflow_provider_juhe.mobiles import mask_sample, require_valid
from airflow_provider_juhe.sms_content import encode_tpl_value

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3


class CallKind(Enum):
    """What a call does, which decides when it may be retried."""

    READ = "read"  # no side effect: retried on any transport error
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


class _TransportFailure(JuheConnectionError):
    def __init__(self, message: str, request_sent: bool) -> None:
        super().__init__(message)
        self.request_sent = request_sent


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

    @cached_property
    def config(self) -> JuheConnectionConfig:
        """The connection's settings, read once; the appkey is registered with the secrets masker."""
        from airflow.sdk.log import mask_secret

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
            from airflow.sdk.log import amask_secret

            conn = await self.aget_connection(self.juhe_conn_id)
            config = self._read_config(conn, await conn.aextra_dejson())
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

    def _read_config(self, conn: Connection, extra: Mapping[str, Any]) -> JuheConnectionConfig:
        appkey = (conn.password or "").strip()
        if not appkey:
            raise JuheError(f"Connection {self.juhe_conn_id!r}: the App key (password field) is empty")
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
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size, max_retries=0)
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
        result = self._call(
            CallKind.WRITE, SUBMIT_TEMPLATE_PATH, {"signature": signature, "content": content}
        )
        carrier_tpl_ids: dict[str, int] = {}
        for entry in result.get("tplBatchInfo") or []:
            for letter, tpl_id in entry.items():
                if letter in BATCH_INFO_CARRIERS:
                    carrier_tpl_ids[BATCH_INFO_CARRIERS[letter]] = int(tpl_id)
        return {
            "tpl_id": int(result["tplId"]),
            "send_content": result.get("sendContent", ""),
            "carrier_tpl_ids": carrier_tpl_ids,
        }

    def send_sms(
        self,
        mobiles: str | Iterable[str],
        tpl_id: int | str,
        tpl_value: Mapping[str, object] | str | None = None,
    ) -> dict[str, Any]:
        """
        Send one approved template to the numbers, in exactly one API call.

        :param mobiles: numbers, as a list or a comma/whitespace separated string (at most 1,000).
        :param tpl_id: an approved template id.
        :param tpl_value: the template's variables, ``{"code": "123456"}`` or an encoded string.
        :return: ``{"sid": str, "fee": int, "count": int}``
        :raises JuheDeliveryUnknownError: the request left but its outcome cannot be known.
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
        result = self._call(CallKind.SEND, SEND_PATH, params, recipients=numbers)
        return {**_read_send_result(result, numbers), "count": len(numbers)}

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
            result = self._call(CallKind.READ, MOBILE_GROUP_PATH, {"mobiles": ",".join(chunk)})
            for letter, carrier in MOBILE_GROUP_CARRIERS.items():
                groups[carrier].extend(str(m) for m in (result.get(letter) or []))
        return groups

    def list_templates(self) -> list[dict[str, Any]]:
        """
        The account's templates with their review state.

        :return: ``[{"tpl_id", "content", "signature", "state", "state_name", "carrier"}, ...]``
        """
        result = self._call(CallKind.READ, TEMPLATES_PATH, {})
        templates = (result or {}).get("templates") or []
        return [
            {
                "tpl_id": int(t["tplId"]),
                "content": t.get("tpl", ""),
                "signature": t.get("tpl_signature", ""),
                "state": int(t.get("tpl_state", 0)),
                "state_name": TEMPLATE_STATES.get(int(t.get("tpl_state", 0)), "unknown"),
                "carrier": TEMPLATE_CARRIERS.get(int(t.get("operation", 0)), "unknown"),
            }
            for t in templates
        ]

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
        self, kind: CallKind, path: str, params: dict[str, str], *, recipients: list[str] | None = None
    ) -> Any:
        """POST one call, retrying per the retry policy; return Juhe's ``result``."""
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
        try:
            return retrying(self._post, kind, path, params)
        except _TransportFailure as failure:
            if kind is CallKind.SEND and failure.request_sent:
                raise JuheDeliveryUnknownError(recipients or [], str(failure)) from None
            raise JuheConnectionError(str(failure)) from None
        except JuheApiError as error:
            if kind is CallKind.SEND and error.error_code == OUTCOME_UNKNOWN_CODE:
                raise JuheDeliveryUnknownError(
                    recipients or [], f"Juhe error {error.error_code}: {error.reason}", error.error_code
                ) from None
            raise

    def _post(self, kind: CallKind, path: str, params: dict[str, str]) -> Any:
        config = self.config
        self.rate_limiter.wait()
        session = self.get_conn()
        try:
            # Prepared here, not by session.post(): merging the session's settings into every request
            # cost a third of a call's CPU, and the form body needs nothing of them.
            request = requests.PreparedRequest()
            request.prepare(
                method="POST",
                url=config.base_url + path,
                headers={**session.headers, "Content-Type": FORM_CONTENT_TYPE},
                data=urlencode({"key": config.appkey, **params}).encode(),
            )
            response = session.send(request, timeout=config.timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise _TransportFailure(
                f"{type(error).__name__} calling {path}: {self._redact(str(error))}",
                request_sent=not _surely_not_sent(error),
            ) from None
        return self._parse(response)

    def _parse(self, response: requests.Response) -> Any:
        body = None
        if response.status_code == 200:
            with contextlib.suppress(ValueError):  # JSON finds its own encoding; response.text guesses
                body = json.loads(response.content)
        if not isinstance(body, dict) or "error_code" not in body:
            excerpt = self._redact(" ".join(response.text[:200].split()))
            raise JuheResponseError(response.status_code, excerpt)
        code = int(body["error_code"])
        if code != 0:
            if code == 10011:
                self.rate_limiter.slow_down()
            raise api_error(code, self._redact(str(body.get("reason", ""))))
        return body.get("result") or {}

    def _redact(self, text: str) -> str:
        """Belt and braces: no message this hook builds may carry the appkey."""
        config = self.__dict__.get("config")  # set once the connection has been read
        return text.replace(config.appkey, "***") if config else text


def _read_send_result(result: Any, numbers: list[str]) -> dict[str, Any]:
    """
    ``{"sid", "fee"}`` from send.php's result. The SMS may already be out: a reply that cannot be read
    is an unknown outcome (with the sid when there is one), never an input error.
    """
    sid = result.get("sid") if isinstance(result, Mapping) else None
    sid = str(sid) if sid not in (None, "") else None
    try:
        if sid is None:
            raise ValueError("no sid")
        fee = float(result.get("fee") or 0)  # the doc types fee as a string: "1", "1.0"
        if fee < 0 or not fee.is_integer():
            raise ValueError(f"fee {result.get('fee')!r}")
    except (TypeError, ValueError) as error:
        raise JuheDeliveryUnknownError(
            numbers, f"send.php answered success with an unreadable result ({error})", sid=sid
        ) from None
    return {"sid": sid, "fee": int(fee)}


def build_base_url(host: str | None, schema: str | None, port: int | None) -> str:
    """A full URL in ``host`` wins; else ``schema`` (http/https, default https), host and port."""
    host = (host or "").strip() or DEFAULT_HOST
    if "://" in host:
        return host.rstrip("/")
    scheme = (schema or "https").strip().lower()
    if scheme not in ("http", "https"):
        raise JuheError(f"Connection schema must be 'http' or 'https', got {schema!r}")
    return f"{scheme}://{host.strip('/')}" + (f":{port}" if port else "")


def validate_tpl_id(tpl_id: int | str) -> int:
    """A template id is a positive integer (given as int or digits)."""
    if isinstance(tpl_id, bool) or not str(tpl_id).strip().isdigit() or int(str(tpl_id).strip()) <= 0:
        raise ValueError(f"tpl_id: expected a positive integer template id, got {tpl_id!r}")
    return int(str(tpl_id).strip())


def _required_text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: expected non-empty text, got {value!r}")
    return value.strip()


def _extra_number(
    extra: Mapping[str, Any], field: str, kind: type, default: Any, *, zero_allowed: bool = False
) -> Any:
    """A numeric connection extra (the UI may store it as text); blank means the default."""
    value = extra.get(field)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise JuheError(f"Connection extra {field!r}: expected a number, got {value!r}") from None
    if number < 0 or (number == 0 and not zero_allowed):
        raise JuheError(
            f"Connection extra {field!r}: must be {'≥' if zero_allowed else '>'} 0, got {value!r}"
        )
    return number


def _surely_not_sent(error: requests.RequestException) -> bool:
    """True only when the connection failed before any byte of the request left."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(error, requests.ConnectionError) and error.args:
        reason = getattr(error.args[0], "reason", error.args[0])
        return isinstance(reason, NewConnectionError)
    return False


def _may_retry(error: BaseException, kind: CallKind) -> bool:
    if isinstance(error, JuheApiError):
        return error.retryable
    if isinstance(error, _TransportFailure):
        return kind is CallKind.READ or not error.request_sent
    if isinstance(error, JuheResponseError):
        return kind is CallKind.READ and error.status_code >= 500
    return False
