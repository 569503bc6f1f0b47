"""
The one module that knows Airflow versions (3.0 through 3.3): every other module imports the names
that moved between releases from here.

Where apache-airflow-providers-common-compat bridges a name for the whole range it is used as it is
(it tries the task SDK first, then the older home); what it does not bridge, or bridges in a way we
cannot accept, is bridged here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    BaseHook,
    conf,
    mask_secret,
)
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS
from airflow.sdk import BaseNotifier as _SdkBaseNotifier
from airflow.sdk import Connection

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "AirflowFailException",
    "AirflowSensorTimeout",
    "BaseHook",
    "BaseNotifier",
    "Connection",
    "aconnection_and_extra",
    "amask_secret",
    "classic_field_behaviour",
    "classic_form_widgets",
    "conf",
    "mask_secret",
]


def _hide_traceback_locals() -> None:
    """
    Airflow 3.0 prints console tracebacks (``airflow dags test``, ``airflow tasks test``) with each
    frame's local variables, so a failed send would print the customers' numbers its frames hold;
    3.1 turned locals off. Do the same here: only whether locals are shown changes.
    """
    from structlog.dev import RichTracebackFormatter

    if getattr(RichTracebackFormatter, "_juhe_hides_locals", False):
        return
    show = RichTracebackFormatter.__call__

    def call_without_locals(self: RichTracebackFormatter, sio: Any, exc_info: Any) -> None:
        self.show_locals = False
        show(self, sio, exc_info)

    RichTracebackFormatter.__call__ = call_without_locals  # type: ignore[method-assign]
    RichTracebackFormatter._juhe_hides_locals = True  # type: ignore[attr-defined]


if AIRFLOW_V_3_1_PLUS:
    BaseNotifier = _SdkBaseNotifier
else:
    _hide_traceback_locals()

    class BaseNotifier(_SdkBaseNotifier):  # type: ignore[no-redef]
        """
        The task SDK's notifier as 3.1 made it: 3.0's takes no ``context`` argument.

        :param context: the context a notifier built by hand is sent with.
        """

        def __init__(self, context: Context | None = None) -> None:
            super().__init__()
            self.context = context or {}


async def aconnection_and_extra(hook: BaseHook, conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """
    A connection and its extras, read from an event loop without blocking it on the supervisor.

    3.3.2 reads both through the async API; older releases mask secrets with a blocking supervisor
    call, so there common-compat reads them on a worker thread, where blocking is safe.

    :param hook: the hook whose ``get_connection`` (or ``aget_connection``) reads the connection.
    :param conn_id: the connection's id.
    """
    conn = await get_async_connection(conn_id, hook)
    return conn, await get_async_extra_dejson(conn)


async def amask_secret(secret: str) -> None:
    """
    Register ``secret`` with the secrets masker from an event loop (3.3's ``amask_secret``).

    :param secret: the value never to show in logs.
    """
    try:
        from airflow.sdk.log import amask_secret as sdk_amask_secret
    except ImportError:  # before 3.3: the blocking call runs on a worker thread, as common-compat does
        from asgiref.sync import sync_to_async

        await sync_to_async(mask_secret)(secret)
    else:
        await sdk_amask_secret(secret)


# -- the connection form -------------------------------------------------------------------------------
# 3.2 reads the form from the provider info (``conn-fields``, ``ui-field-behaviour``) and then never
# asks the hook; 3.0 and 3.1 ask the hook class (``get_ui_field_behaviour``,
# ``get_connection_form_widgets``). These turn the one declaration into what the older releases read.


def classic_field_behaviour(declared: dict[str, Any]) -> dict[str, Any]:
    """
    The ``get_ui_field_behaviour`` answer for a provider info ``ui-field-behaviour``.

    :param declared: the ``ui-field-behaviour`` mapping (``hidden-fields``, ``relabeling``, ``placeholders``).
    """
    return {key.replace("-", "_"): value for key, value in declared.items()}


def classic_form_widgets(conn_fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """
    The ``get_connection_form_widgets`` answer (WTForms fields) for a provider info ``conn-fields``.

    3.0/3.1's API server turns WTForms fields into the React form's JSON schema (it mocks
    ``wtforms`` while it asks); only String, Integer, Password and Boolean fields are accepted, so a
    number that may have a fraction is a text field (the hook parses it).

    :param conn_fields: the ``conn-fields`` mapping: name -> ``label``, ``description``, ``schema``.
    """
    from wtforms import IntegerField, StringField
    from wtforms.validators import Optional

    widgets: dict[str, Any] = {}
    for name, field in conn_fields.items():
        schema = field.get("schema", {})
        kind = IntegerField if "integer" in schema.get("type", ()) else StringField
        widgets[name] = kind(
            field["label"],
            validators=[Optional()],
            description=field.get("description", ""),
            default=schema.get("default"),
        )
    return widgets


def stats_client() -> Any:
    """
    Airflow's stats client (StatsD, OpenTelemetry or none, as the deployment configured it).

    3.2 moved it into the task SDK (``airflow.sdk.observability.stats``) and left a deprecated shim
    at ``airflow.stats``, its home on 3.0-3.1.
    """
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:
        from airflow.stats import Stats
    return Stats
