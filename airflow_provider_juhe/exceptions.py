"""The error model: every way a call can end, Juhe's error-code tables, and the exception classes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from airflow.exceptions import AirflowException

from airflow_provider_juhe.mobiles import mask_sample


class CallOutcome(str, Enum):
    """What a call's ending tells about its effect; the hook's outcome table maps every ending to one."""

    NOTHING_LEFT = "nothing left"  # the request surely did not take effect
    MAY_HAVE_TAKEN_EFFECT = "may have taken effect"  # a send may have gone out: never sent again
    REFUSED = "refused"  # Juhe answered with a documented error code: nothing was done


@dataclass(frozen=True)
class ErrorCode:
    """
    One code of the vendor doc's tables.

    :param meaning: an English explanation beside Juhe's Chinese reason.
    :param transient: the call surely did not take effect and may pass soon: the hook retries it.
    :param final: a retry of the task cannot change it: operators fail without Airflow retries.
    """

    meaning: str
    transient: bool = False
    final: bool = False


#: Every code of the vendor doc's two tables.
ERROR_CODES: dict[int, ErrorCode] = {
    # Service level (短信服务)
    222800: ErrorCode("network error at Juhe, nothing was sent", transient=True),
    228801: ErrorCode("the template does not exist on this account, or is not approved", final=True),
    228802: ErrorCode("a parameter is wrong, e.g. a template variable left unfilled", final=True),
    228803: ErrorCode("channel fault at Juhe", transient=True),
    228804: ErrorCode("the message is too long", final=True),
    228805: ErrorCode("the account's remaining quota could not be checked (top it up?)"),
    228806: ErrorCode("the carrier refused the send"),
    228807: ErrorCode("Juhe is busy, try again later", transient=True),
    # System level (聚合数据平台)
    10001: ErrorCode("wrong request key", final=True),
    10002: ErrorCode("this key has no permission for the API", final=True),
    10003: ErrorCode("the key has expired", final=True),
    10004: ErrorCode("wrong OPENID", final=True),
    10005: ErrorCode("the application's review timed out: submit the certification", final=True),
    10007: ErrorCode("unknown request source", final=True),
    10008: ErrorCode("this IP address is banned", final=True),
    10009: ErrorCode("the key is banned", final=True),
    10011: ErrorCode("too many requests from this IP", transient=True),
    10012: ErrorCode("the request quota is used up"),
    10013: ErrorCode("the test key is over its request limit", final=True),
    10014: ErrorCode("internal error of the platform: the call may or may not have taken effect"),
    10020: ErrorCode("the API is under maintenance", transient=True),
    10021: ErrorCode("the API is discontinued", final=True),
}

#: Codes that say the key or the caller is not allowed: retrying the task cannot help.
AUTH_ERROR_CODES = frozenset({10001, 10002, 10003, 10004, 10005, 10007, 10008, 10009, 10013})

#: The platform failed internally: a call may or may not have taken effect.
OUTCOME_UNKNOWN_CODE = 10014

#: Rate limiting: the caller should slow down.
RATE_LIMITED_CODE = 10011


def shorten(text: str, limit: int, *, separator: str = " ") -> str:
    """
    ``text`` cut to at most ``limit`` characters at a word (or ``separator``-delimited item)
    boundary, with ``…`` where it was cut: never mid-word.
    """
    text = " ".join(text.split()) if separator == " " else text
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    boundary = cut.rfind(separator)
    if boundary > 0:  # a single word longer than the limit is the one thing cut inside
        cut = cut[:boundary]
    return cut.rstrip(" ,;:(") + "…"


def explain(error_code: int | None) -> str:
    """The English explanation of a code; undocumented codes say so."""
    if error_code is None:
        return "no answer from Juhe"
    known = ERROR_CODES.get(error_code)
    return known.meaning if known else "an error code the vendor doc does not list"


class JuheError(AirflowException):
    """Base class of every error raised by this provider."""

    #: What this ending tells about the call's effect (see the hook's outcome table).
    outcome: CallOutcome = CallOutcome.MAY_HAVE_TAKEN_EFFECT
    #: A retry of the task cannot change it.
    final: bool = False


class JuheApiError(JuheError):
    """
    Juhe answered with a documented ``error_code != 0``: the call was refused.

    :param error_code: the ``error_code`` of the response.
    :param reason: the ``reason`` text of the response.
    """

    outcome = CallOutcome.REFUSED

    def __init__(self, error_code: int, reason: str) -> None:
        self.error_code = int(error_code)
        self.reason = reason
        known = ERROR_CODES.get(self.error_code, ErrorCode("an error code the vendor doc does not list"))
        self.retryable = known.transient
        self.final = known.final
        super().__init__(f"Juhe error {self.error_code} {reason} ({known.meaning})")

    def __reduce__(self) -> tuple[type[JuheApiError], tuple[int, str]]:
        return type(self), (self.error_code, self.reason)


class JuheAuthError(JuheApiError):
    """The appkey is wrong, expired, banned or not allowed to call the API (10001–10009, 10013)."""


class JuheResponseError(JuheError):
    """
    An HTTP error status, a body that is not the JSON Juhe documents, an undocumented or internal
    error code (10014) on a call that is not a send: the call may have taken effect.

    :param status_code: the HTTP status of the response (0 when none arrived whole).
    :param excerpt: the start of the body, or what went wrong, for the message.
    :param error_code: Juhe's code when the body carried one.
    """

    def __init__(self, status_code: int, excerpt: str, error_code: int | None = None) -> None:
        # Airflow's AirflowException.status_code is inferred as HTTPStatus; any int status is meant (0: none).
        self.status_code = status_code  # type: ignore[assignment]
        self.excerpt = excerpt
        self.error_code = error_code
        code = f", error {error_code} ({explain(error_code)})" if error_code is not None else ""
        if status_code:
            super().__init__(f"Unexpected response from Juhe (HTTP {status_code}{code}): {excerpt!r}")
        else:
            super().__init__(f"No complete answer from Juhe: {excerpt}")

    def __reduce__(self) -> tuple[type[JuheResponseError], tuple[int, str, int | None]]:
        return type(self), (self.status_code, self.excerpt, self.error_code)


class JuheConnectionError(JuheError):
    """The request surely did not take effect (refused, DNS, connect timeout, TLS) and retries ran out."""

    outcome = CallOutcome.NOTHING_LEFT


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

    def __reduce__(
        self,
    ) -> tuple[type[JuheDeliveryUnknownError], tuple[list[str], str, int | None, str | None]]:
        return type(self), (self.mobiles, self.detail, self.error_code, self.sid)


class JuheInputError(JuheError, ValueError):
    """Bad input found before any request (a number, a template id, a field): a retry cannot help."""

    outcome = CallOutcome.NOTHING_LEFT
    final = True


class JuheNotStarted(JuheError):
    """
    A call stopped right before its request started (a send window closed): nothing was sent, and
    the call is neither failed nor unknown: it may start later. Never retried by the hook.
    """

    outcome = CallOutcome.NOTHING_LEFT


class JuheGuardError(JuheError):
    """
    A guard (``max_fee``, ...) could not evaluate its input, so it refused: nothing was sent.

    :param message: which guard, and why it could not evaluate.
    :param final: a retry cannot change it (else the task's retries may, e.g. a template list
        that could not be read).
    """

    outcome = CallOutcome.NOTHING_LEFT

    def __init__(self, message: str, final: bool = False) -> None:
        self.final = final
        super().__init__(f"{message}; nothing was sent")

    def __reduce__(self) -> tuple[type[JuheGuardError], tuple[str, bool]]:
        return type(self), (str(self).removesuffix("; nothing was sent"), self.final)


class JuheConfigError(JuheInputError):
    """The connection cannot work (undefined, no key, a host or scheme that cannot be reached)."""


@contextlib.contextmanager
def input_checks() -> Iterator[None]:
    """Report what the pure validators (plain ``ValueError``/``TypeError``) reject as ``JuheInputError``."""
    try:
        yield
    except JuheInputError:
        raise
    except (ValueError, TypeError) as error:
        raise JuheInputError(str(error)) from None


def api_error(error_code: int, reason: str) -> JuheApiError:
    """Build the exception class that fits a Juhe error code."""
    cls = JuheAuthError if error_code in AUTH_ERROR_CODES else JuheApiError
    return cls(error_code, reason)
