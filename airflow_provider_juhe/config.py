"""
The provider's ``[juhe]`` options: declared once here (``get_provider_info()["config"]``, so that
``airflow config list`` shows them) and validated when read, with a message naming the option.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

# No Airflow import at module level: Airflow's own configuration calls get_provider_info (and so
# provider_config) while it is still being built.
SECTION = "juhe"

#: Every ``[juhe]`` option, in the provider-info form Airflow reads.
OPTIONS: dict[str, dict[str, Any]] = {
    "alert_state_conn_id": {
        "description": "Id of a Redis connection (conn type ``redis``, the extra "
        "``airflow-provider-juhe[redis]``) that holds the alert state of every JuheSmsNotifier "
        "without its own ``state_conn_id``. Empty: Airflow Variables.",
        "version_added": "0.2.0",
        "type": "string",
        "example": "redis_default",
        "default": "",
    },
    "ledger_retention_days": {
        "description": "Days a send ledger is kept in Airflow Variables on Airflow 3.0-3.2 (3.3 keeps "
        "it in the task state store). An integer >= 1, or 0 to never expire.",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "30",
        "default": "30",
    },
}


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of the provider info."""
    return {
        SECTION: {
            "description": "Options of the Juhe SMS provider (airflow-provider-juhe).",
            "options": OPTIONS,
        }
    }


def _raw(name: str) -> str:
    from airflow_provider_juhe._compat import conf

    default = OPTIONS[name]["default"]
    value = conf.get(SECTION, name, fallback=default)
    return default if value is None else str(value).strip()


def get_str(name: str) -> str:
    """
    A string option, stripped; its declared default when unset.

    :param name: the option's name in ``[juhe]``.
    """
    return _raw(name)


def get_int(name: str, *, minimum: int | None = None) -> int:
    """
    An integer option, validated.

    :param name: the option's name in ``[juhe]``.
    :param minimum: the smallest value accepted.
    :raises JuheConfigError: naming the option, when the value is not an integer or is too small.
    """
    from airflow_provider_juhe.exceptions import JuheConfigError

    raw = _raw(name)
    try:
        value = int(raw)
    except ValueError:
        raise JuheConfigError(
            f"[{SECTION}] {name} = {raw!r} is not an integer "
            f"(AIRFLOW__{SECTION.upper()}__{name.upper()}); example: {OPTIONS[name]['example']}"
        ) from None
    if minimum is not None and value < minimum:
        raise JuheConfigError(
            f"[{SECTION}] {name} = {value} is below {minimum} "
            f"(AIRFLOW__{SECTION.upper()}__{name.upper()}); example: {OPTIONS[name]['example']}"
        )
    return value
