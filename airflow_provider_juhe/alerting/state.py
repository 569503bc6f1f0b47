"""
Alert state in Airflow Variables, reached through whichever channel the calling process has.

Task-level callbacks (in the worker), DAG-level callbacks (in the DAG processor) and the triggerer
talk to the API server through the task SDK's supervisor channel. Where that channel does not exist
(DAG-level callbacks under ``dag.test()``), the task SDK's ``Variable.get`` quietly returns its
default, so the process's own metadata-DB access is used instead.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

#: Every Variable this provider writes starts with it.
VARIABLE_PREFIX = "juhe_sms_"


def variable_key(kind: str, name: str) -> str:
    """A short, URL-safe Variable key for ``name`` (a group key or a template id, of any length)."""
    return f"{VARIABLE_PREFIX}{kind}_{hashlib.sha256(name.encode()).hexdigest()[:20]}"


def _has_supervisor_channel() -> bool:
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return task_runner is not None and hasattr(task_runner, "SUPERVISOR_COMMS")


def load(key: str) -> dict[str, Any] | None:
    """
    The record stored under ``key``, or None. A page matters more than its bookkeeping: a record that
    cannot be read is logged and treated as absent, so the alert goes out.
    """
    try:
        record = _load(key)
    except Exception:
        log.warning("Could not read alert state %s; paging as if none were kept", key, exc_info=True)
        return None
    return record if isinstance(record, dict) else None


def _load(key: str) -> Any:
    if _has_supervisor_channel():
        from airflow.sdk import Variable

        return Variable.get(key, default=None, deserialize_json=True)
    from airflow.models.variable import Variable as MetadataVariable

    return MetadataVariable.get(key, default_var=None, deserialize_json=True)


def save(key: str, record: dict[str, Any], description: str) -> bool:
    """Store ``record`` under ``key`` (JSON); a failure is logged (False), never raised over the page."""
    try:
        _save(key, record, description)
    except Exception:
        log.warning("Could not store alert state %s", key, exc_info=True)
        return False
    return True


def _save(key: str, record: dict[str, Any], description: str) -> None:
    if _has_supervisor_channel():
        from airflow.sdk import Variable

        Variable.set(key, record, description=description, serialize_json=True)
        return
    from airflow.models.variable import Variable as MetadataVariable

    MetadataVariable.set(key, record, description=description, serialize_json=True)
