"""
The outcome table: every way a call to Juhe can end, and what that ending tells about its effect.

The hook classifies each ending here, once; operators, the notifier and the trigger only read the
outcome off the exception it raises (``JuheError.outcome``). docs/operations.md prints this table.
"""

from __future__ import annotations

from enum import Enum

from airflow_provider_juhe.exceptions import CallOutcome

NOTHING_LEFT = CallOutcome.NOTHING_LEFT
MAY_HAVE_TAKEN_EFFECT = CallOutcome.MAY_HAVE_TAKEN_EFFECT
REFUSED = CallOutcome.REFUSED


class Ending(Enum):
    """A way a call can end: ``(what happened, outcome)``."""

    INVALID_URL = ("invalid URL or scheme (a connection that cannot work)", NOTHING_LEFT)
    DNS_FAILURE = ("DNS failure", NOTHING_LEFT)
    CONNECTION_REFUSED = ("connection refused or unreachable", NOTHING_LEFT)
    CONNECT_TIMEOUT = ("connect timeout", NOTHING_LEFT)
    TLS_FAILURE = ("TLS handshake or certificate failure", NOTHING_LEFT)
    DEADLINE = (
        "the deadline passed after the request started (slow or trickling answer)",
        MAY_HAVE_TAKEN_EFFECT,
    )
    CONNECTION_LOST = ("connection reset or dropped after the request started", MAY_HAVE_TAKEN_EFFECT)
    HTTP_ERROR = ("HTTP error status (or a redirect)", MAY_HAVE_TAKEN_EFFECT)
    OVERSIZED = ("an answer larger than the read bound", MAY_HAVE_TAKEN_EFFECT)
    NOT_JSON = ("a body that is not JSON", MAY_HAVE_TAKEN_EFFECT)
    UNEXPECTED_SHAPE = (
        "JSON of an unexpected shape (no integer error_code, not an object)",
        MAY_HAVE_TAKEN_EFFECT,
    )
    UNREADABLE_RESULT = ("a success whose result cannot be read", MAY_HAVE_TAKEN_EFFECT)
    INTERNAL_ERROR = ("error_code 10014 (internal error of the platform)", MAY_HAVE_TAKEN_EFFECT)
    UNDOCUMENTED_CODE = ("an error_code the vendor doc does not list", MAY_HAVE_TAKEN_EFFECT)
    DOCUMENTED_CODE = ("a documented error_code other than 10014", REFUSED)

    @property
    def description(self) -> str:
        return self.value[0]

    @property
    def outcome(self) -> CallOutcome:
        return self.value[1]


#: What each outcome becomes, per kind of call (printed in docs/operations.md under the table).
CONSEQUENCES = {
    NOTHING_LEFT: (
        "retried by the hook (up to `max_retries`); then `JuheConnectionError` — a send's numbers are "
        "`failed` and a task retry sends them. An invalid URL or scheme is `JuheConfigError`: the task "
        "fails without retries before any batch is marked."
    ),
    MAY_HAVE_TAKEN_EFFECT: (
        "a send: `JuheDeliveryUnknownError`, its numbers `unknown`, never sent again by any later try; "
        "a read: `JuheResponseError`, retried; a template submission: `JuheResponseError`, not retried."
    ),
    REFUSED: (
        "`JuheApiError` / `JuheAuthError`; transient codes are retried by the hook, final ones (see the "
        "error table) fail the task without Airflow retries."
    ),
}


def outcome_table_markdown() -> str:
    """The table as docs/operations.md prints it."""
    lines = ["| how the call ended | outcome |", "|---|---|"]
    lines += [f"| {ending.description} | {ending.outcome.value} |" for ending in Ending]
    return "\n".join(lines)
