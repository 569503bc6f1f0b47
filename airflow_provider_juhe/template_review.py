"""Deciding whether templates passed review: shared by the sensor and its trigger."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_juhe.juhe_api import STATE_APPROVED, STATE_REJECTED

APPROVED, REJECTED, UNKNOWN, PENDING = "approved", "rejected", "unknown", "pending"


def template_ids(value: int | str | Iterable[int | str] | Mapping[str, Any]) -> list[int]:
    """
    One id, a list of ids, a ``carrier_tpl_ids`` dict, or a whole ``submit_template`` result.

    :raises ValueError: naming ``tpl_id`` and the bad value.
    """
    if isinstance(value, Mapping):
        value = value["carrier_tpl_ids"] if isinstance(value.get("carrier_tpl_ids"), Mapping) else value
        items: list[Any] = list(value.values())
    elif isinstance(value, (str, int)):
        items = [value]
    else:
        items = list(value)
    ids: list[int] = []
    for item in items:
        if isinstance(item, bool) or not str(item).strip().isdigit() or int(str(item).strip()) <= 0:
            raise ValueError(f"tpl_id: expected positive template ids, got {item!r} in {value!r}")
        if int(str(item).strip()) not in ids:
            ids.append(int(str(item).strip()))
    if not ids:
        raise ValueError(f"tpl_id: no template id in {value!r}")
    return ids


def review(templates: list[dict[str, Any]], wanted: list[int]) -> dict[str, Any]:
    """
    The verdict over ``wanted`` ids: rejected or unknown beats pending, which beats approved.

    :return: ``{"status", "templates": records of the wanted ids found, "tpl_ids": ids concerned}``
    """
    by_id = {t["tpl_id"]: t for t in templates}
    found = [by_id[i] for i in wanted if i in by_id]
    missing = [i for i in wanted if i not in by_id]
    if missing:
        return {"status": UNKNOWN, "templates": found, "tpl_ids": missing}
    rejected = [t["tpl_id"] for t in found if t["state"] == STATE_REJECTED]
    if rejected:
        return {"status": REJECTED, "templates": found, "tpl_ids": rejected}
    waiting = [t["tpl_id"] for t in found if t["state"] != STATE_APPROVED]
    if waiting:
        return {"status": PENDING, "templates": found, "tpl_ids": waiting}
    return {"status": APPROVED, "templates": found, "tpl_ids": wanted}
