"""The error model: Juhe's error-code tables mapped to exception classes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from airflow.exceptions import AirflowException

from airflow_provider_juhe.mobiles import mask_sample

#: Every code of the vendor doc's two tables: code -> (meaning, retryable).
#: "Retryable" means the call surely did not take effect, so sending it again cannot duplicate an SMS.
ERROR_CODES: dict[int, tuple[str, bool]] = {
    # Service level (短信服务)
    222800: ("network error, nothing was sent", True),
    228801: ("template error", False),
    228802: ("invalid parameter", False),
    228803: ("channel fault", True),
    228804: ("content too long", False),
    228805: ("remaining quota check failed", False),
    228806: ("carrier rejected the send", False),
    228807: ("system busy, try again later", True),
    # System level (聚合数据平台)
    10001: ("wrong request key", False),
    10002: ("this key has no permission for the API", False),
    10003: ("key expired", False),
    10004: ("wrong OPENID", False),
    10005: ("application review timed out, submit certification", False),
    10007: ("unknown request source", False),
    10008: ("IP address is banned", False),
    10009: ("key is banned", False),
    10011: ("too many requests from this IP", True),
    10012: ("request quota exceeded", False),
    10013: ("test key over its request limit", False),
    10014: ("internal error of the platform", False),
    10020: ("API under maintenance", True),
    10021: ("API discontinued", False),
}

#: Codes that say the key or the caller is not allowed: retrying the task cannot help.
AUTH_ERROR_CODES = frozenset({10001, 10002, 10003, 10004, 10005, 10007, 10008, 10009, 10013})

#: The platform failed internally: a send may or may not have gone out.
OUTCOME_UNKNOWN_CODE = 10014

#: Rate limiting: the caller should slow down.
RATE_LIMITED_CODE = 10011


class JuheError(AirflowException):
    """Base class of every error raised by this provider."""


class JuheApiError(JuheError):
    """
    Juhe answered with ``error_code != 0``.

    :param error_code: the ``error_code`` of the response.
    :param reason: the ``reason`` text of the response.
    """

    def __init__(self, error_code: int, reason: str) -> None:
        self.error_code = int(error_code)
        self.reason = reason
        meaning = ERROR_CODES.get(self.error_code, ("unknown error code", False))[0]
        self.retryable = is_retryable_code(self.error_code)
        super().__init__(f"Juhe error {self.error_code} ({meaning}): {reason}")

    def __reduce__(self):
        return type(self), (self.error_code, self.reason)


class JuheAuthError(JuheApiError):
    """The appkey is wrong, expired, banned or not allowed to call the API (10001–10009, 10013)."""


class JuheResponseError(JuheError):
    """
    An HTTP error status, or a body that is not the JSON Juhe documents.

    :param status_code: the HTTP status of the response.
    :param excerpt: the start of the body, for the message.
    """

    def __init__(self, status_code: int, excerpt: str) -> None:
        self.status_code = status_code
        self.excerpt = excerpt
        super().__init__(f"Unexpected response from Juhe (HTTP {status_code}): {excerpt!r}")

    def __reduce__(self):
        return type(self), (self.status_code, self.excerpt)


class JuheConnectionError(JuheError):
    """The HTTP request failed in transport (refused, reset, timed out) and was not a send."""


class JuheDeliveryUnknownError(JuheError):
    """
    A send whose outcome cannot be known: it may or may not have reached the recipients.

    :param mobiles: the recipients concerned.
    :param detail: what happened (no secrets).
    :param error_code: Juhe's code when the platform reported it (10014), else ``None``.
    :param sid: the send's id when Juhe returned one in a reply that could not be read whole.
    """

    def __init__(
        self, mobiles: Iterable[str], detail: str, error_code: int | None = None, sid: str | None = None
    ) -> None:
        self.mobiles = list(mobiles)
        self.detail = detail
        self.error_code = error_code
        self.sid = sid
        super().__init__(
            f"Outcome of the send to {len(self.mobiles)} number(s) ({mask_sample(self.mobiles)}) is unknown: "
            f"{detail}{f' (sid {sid})' if sid else ''}. "
            "It was not retried, so that no SMS is sent twice."
        )

    def __reduce__(self):
        return type(self), (self.mobiles, self.detail, self.error_code, self.sid)


class JuheInputError(JuheError, ValueError):
    """Bad input found before any request (a number, a template id, a field): a retry cannot help."""


@contextlib.contextmanager
def input_checks() -> Iterator[None]:
    """Report what the pure validators (plain ``ValueError``/``TypeError``) reject as ``JuheInputError``."""
    try:
        yield
    except JuheInputError:
        raise
    except (ValueError, TypeError) as error:
        raise JuheInputError(str(error)) from None


def is_retryable_code(error_code: int) -> bool:
    """Whether a call answered with this code surely did not take effect."""
    return ERROR_CODES.get(error_code, ("", False))[1]


def api_error(error_code: int, reason: str) -> JuheApiError:
    """Build the exception class that fits a Juhe error code."""
    cls = JuheAuthError if error_code in AUTH_ERROR_CODES else JuheApiError
    return cls(error_code, reason)
