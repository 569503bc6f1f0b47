"""
Where the send ledger lives: ``context["task_state_store"]`` (Airflow 3.3+), or, on 3.0-3.2 where
it does not exist, Airflow Variables with the same promises.

The Variables of one task instance (``juhe_sms_ledger_<digest>_<ledger key>``) survive retries,
clears and a killed worker, as the state store does: ``set`` returns once the API server has
committed the record, so the ledger's write-ahead order holds. Variables are listed in the UI, so
every value is sealed (Fernet) under a key derived from the connection's App key: a user who can
read Variables sees neither numbers nor sids. A ledger whose seal cannot be opened (the App key
changed since it was written) fails the task without retries rather than guess what was sent.

Retention: each task instance is entered, once, in the index of the day its ledger was opened
(``juhe_sms_ledger_day_<YYYYMMDD>``, under the alert state's record lock); every new ledger then
deletes the ledgers of the days older than :data:`RETENTION_DAYS` (Airflow option
``[juhe] ledger_retention_days``), so the Variables stay bounded by the sends of that many days.
A task instance cleared after its ledger was deleted sends again as if new.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_juhe import config, variables
from airflow_provider_juhe.alerting import state
from airflow_provider_juhe.exceptions import JuheConfigError
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sending.ledger import StateStore

log = logging.getLogger(__name__)

PREFIX = f"{variables.VARIABLE_PREFIX}ledger_"
DAY_INDEX_KEY = PREFIX + "day_{:%Y%m%d}"
SWEPT_KEY = PREFIX + "swept"
#: Days a task instance's ledger is kept after it was opened (a clear within them never re-sends).
RETENTION_DAYS = 30
#: Most days one sweep walks back over (the first sweep after a long pause deletes the rest later).
SWEEP_DAYS = 14
_SEAL_CONTEXT = b"juhe-sms-ledger-v1"


def ledger_store(context: Mapping[str, Any], hook: JuheSmsHook) -> StateStore | None:
    """
    The store of this task instance's send ledger: the task state store where Airflow has one.

    :param context: the task's context.
    :param hook: the send's hook; its App key seals the Variables (read only where they are used).
    """
    store = context.get("task_state_store")
    if store is not None or context.get("ti") is None:
        return store
    ti = context["ti"]
    return VariableLedgerStore(
        f"{ti.dag_id}\0{ti.run_id}\0{ti.task_id}\0{ti.map_index}",
        lambda: hook.config.appkey,
        description=f"Juhe SMS send ledger of {ti.dag_id}.{ti.task_id} in {ti.run_id} (sealed)",
    )


class VariableLedgerStore:
    """
    ``get(key, default)`` / ``set(key, value)`` over Variables, sealed, for one task instance.

    :param identity: the task instance (dag, run, task, map index); only its digest is written.
    :param appkey: reads the App key the seal is derived from (read on first use).
    :param description: shown beside each Variable in the UI.
    :param retention_days: days a ledger is kept; ``None`` reads ``[juhe] ledger_retention_days``.
    """

    def __init__(
        self,
        identity: str,
        appkey: Callable[[], str],
        *,
        description: str = "Juhe SMS send ledger (sealed)",
        retention_days: int | None = None,
    ) -> None:
        self._name = PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:24]
        self._appkey = appkey
        self._fernet: Any = None
        self._description = description
        if retention_days is None:
            retention_days = config.get_int("ledger_retention_days", minimum=0)
        self._retention = timedelta(days=retention_days)
        self._keys: set[str] | None = None  # the ledger keys written so far (its directory)

    def get(self, key: str, default: Any = None) -> Any:
        record = variables.read(f"{self._name}_{key}")
        if record is None:
            return default
        try:
            return json.loads(self._seal().decrypt(record["sealed"].encode()))
        except Exception as error:  # InvalidToken, or a record not written by this store
            raise JuheConfigError(
                f"The send ledger {self._name}_{key} cannot be opened: the connection's App key differs "
                "from the one it was sealed with. Not retried: nothing is sent while it is unknown what an "
                "earlier try sent; restore the App key the earlier try used"
            ) from error

    def set(self, key: str, value: Any) -> None:
        if self._keys is None:
            self._open()
        sealed = self._seal().encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()
        variables.write(f"{self._name}_{key}", {"sealed": sealed}, self._description)
        if key not in self._keys:  # after the record: the directory never names one that is missing
            self._keys.add(key)
            variables.write(self._name, {"keys": sorted(self._keys)}, self._description)

    def _seal(self) -> Any:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            secret = hmac.new(self._appkey().encode(), _SEAL_CONTEXT, hashlib.sha256).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(secret))
        return self._fernet

    def _open(self) -> None:
        """Read this ledger's directory; a new ledger is entered in today's index and sweeps old days."""
        directory = variables.read(self._name)
        self._keys = set((directory or {}).get("keys", ()))
        if directory is not None:
            return
        today = _today()
        state.update(
            DAY_INDEX_KEY.format(today),
            lambda index: ({"ledgers": sorted({*(index or {}).get("ledgers", ()), self._name})}, None),
            "Juhe SMS send ledgers opened this day (deleted with them after the retention)",
        )
        sweep(today - self._retention)


def sweep(before: date) -> int:
    """
    Delete the ledgers opened before ``before`` (at most :data:`SWEEP_DAYS` days of them).

    Sweeps racing each other delete the same Variables twice, which is harmless.

    :param before: the first day whose ledgers are kept.
    :return: how many ledgers were deleted.
    """
    day = before - timedelta(days=SWEEP_DAYS)
    if swept := (variables.read(SWEPT_KEY) or {}).get("through"):
        day = max(day, date.fromisoformat(swept) + timedelta(days=1))
    deleted = 0
    while day < before:
        index_key = DAY_INDEX_KEY.format(day)
        for name in (variables.read(index_key) or {}).get("ledgers", ()):
            for key in (variables.read(name) or {}).get("keys", ()):
                _delete(f"{name}_{key}")
            _delete(name)
            deleted += 1
        _delete(index_key)
        _delete(index_key + state.LOCK_SUFFIX)
        variables.write(
            SWEPT_KEY, {"through": day.isoformat()}, "Juhe SMS send ledgers deleted through this day"
        )
        day += timedelta(days=1)
    return deleted


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _delete(key: str) -> None:
    """Delete one Variable through the channel the process has, as the alert state reads them."""
    try:
        variables.delete(key)
    except variables.StateUnavailable:  # a leak to sweep again later, never a reason to fail a send
        log.warning("Could not delete the expired ledger record %s", key, exc_info=True)
