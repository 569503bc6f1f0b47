"""
Airflow Variables as JSON records, reached through whichever channel the calling process has.

Task-level callbacks and tasks (in the worker), DAG-level callbacks (in the DAG processor) and the
triggerer talk to the API server through the task SDK's supervisor channel. Where that channel does
not exist (DAG-level callbacks under ``dag.test()``), the task SDK's ``Variable.get`` quietly returns
its default, so the process's own metadata-DB access is used instead.

Shared by the alert state (``alerting/``) and the ledger's fallback store (``sending/``).
"""

from __future__ import annotations

import sys
from typing import Any

#: Every Variable this provider writes starts with it.
VARIABLE_PREFIX = "juhe_sms_"


class StateUnavailable(Exception):
    """The Variables could not be read or written."""


def has_supervisor_channel() -> bool:
    """Whether this process talks to the API server through the task SDK's supervisor channel."""
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return task_runner is not None and hasattr(task_runner, "SUPERVISOR_COMMS")


def read(key: str) -> dict[str, Any] | None:
    """
    The JSON object stored under ``key``; None when missing or not an object.

    :raises StateUnavailable: the Variables could not be read.
    """
    try:
        if has_supervisor_channel():
            from airflow.sdk import Variable

            record = Variable.get(key, default=None, deserialize_json=True)
        else:
            from airflow.models.variable import Variable as MetadataVariable

            record = MetadataVariable.get(key, default_var=None, deserialize_json=True)
    except Exception as error:
        raise StateUnavailable(f"reading {key}: {type(error).__name__}: {error}") from error
    return record if isinstance(record, dict) else None


def write(key: str, record: dict[str, Any], description: str) -> None:
    """
    Store ``record`` as JSON under ``key``.

    :raises StateUnavailable: the Variables could not be written.
    """
    try:
        if has_supervisor_channel():
            from airflow.sdk import Variable

            Variable.set(key, record, description=description, serialize_json=True)
        else:
            from airflow.models.variable import Variable as MetadataVariable

            MetadataVariable.set(key, record, description=description, serialize_json=True)
    except Exception as error:
        raise StateUnavailable(f"writing {key}: {type(error).__name__}: {error}") from error


def delete(key: str) -> None:
    """
    Delete the Variable ``key`` (nothing when it is missing).

    :raises StateUnavailable: the Variables could not be written.
    """
    try:
        if has_supervisor_channel():
            from airflow.sdk import Variable

            Variable.delete(key)
        else:
            from airflow.models.variable import Variable as MetadataVariable

            MetadataVariable.delete(key)
    except Exception as error:
        raise StateUnavailable(f"deleting {key}: {type(error).__name__}: {error}") from error
