"""
Where the send ledger lives: ``context["task_state_store"]`` (Airflow 3.3+), or, on 3.0-3.2 where
it does not exist, Airflow Variables with the same promises.

One task instance's ledger is a *directory* Variable (``juhe_sms_ledger_<digest>``, unsealed, no
personal data: its generation, the tries that wrote it, the keys written, whether anything may have
been sent, the day it was last used, its data key wrapped) and its records. While a try runs, each
ledger key is a Variable of its own (``set`` returns once the API server committed it, so the
write-ahead order holds); when the try ends (finished or deferred), the records are packed into at
most :data:`MAX_CHUNKS` Variables, so a finished task instance keeps at most ``1 + MAX_CHUNKS``.

Identity: the digest of dag, run id, task and map index names the directory; the directory records
the task instance id (a UUID7, new for every try) of each try that wrote it. A try is the same task
instance's when its id is recorded (a send resuming after a deferral) or its try number is above
every recorded one (a retry, a clear). Any other try belongs to another DagRun row that reuses the
run id (a run deleted and created again): the old ledger is retired and a new generation starts.

Sealing: records are sealed (Fernet) under a data key of the ledger's own, wrapped under a key
derived from the connection's App key and, where ``[core] fernet_key`` is set, under Airflow's
Fernet too. A user who can read Variables sees neither numbers nor sids. After an App key rotation
the ledger opens through Airflow's key (and is wrapped anew under the new App key); where neither
opens, a ledger in which nothing may have been sent is reopened afresh, and one in which something
may have been sent fails the task without retries rather than guess what was sent.

Retention (``[juhe] ledger_retention_days``, 0 = never): each day a ledger is used it is entered in
one of :data:`INDEX_SLOTS` index Variables of that day (no lock: a lost entry is entered again when
the try ends); the first ledger opened on a day deletes the ledgers of expired days whose last use
is older than the retention. A ledger in use (running, deferred for its window) was used within the
last day, so it is never swept while ``ledger_retention_days >= 1``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_juhe import config, variables
from airflow_provider_juhe.exceptions import JuheConfigError, JuheError
from airflow_provider_juhe.hooks.juhe_sms import JuheSmsHook
from airflow_provider_juhe.sending.ledger import StateStore, may_have_sent

log = logging.getLogger(__name__)

PREFIX = f"{variables.VARIABLE_PREFIX}ledger_"
DAY_INDEX_KEY = PREFIX + "day_{:%Y%m%d}_{}"
#: The day index before it was split into slots (deleted by the sweep).
LEGACY_DAY_INDEX_KEY = PREFIX + "day_{:%Y%m%d}"
SWEPT_KEY = PREFIX + "swept"
#: Index Variables per day: ledgers opening at once rarely write the same one.
INDEX_SLOTS = 16
#: Most Variables a finished task instance's records are packed into.
MAX_CHUNKS = 8
#: Characters per packed Variable before a second one is used.
CHUNK_CHARS = 1 << 20
#: Most days one sweep walks back over (the first sweep after a long pause deletes the rest later).
SWEEP_DAYS = 14
FORMAT = 2
_SEAL_CONTEXT = b"juhe-sms-ledger-v2"
STORE_NAME = "the send ledger in Airflow Variables (the fallback store below Airflow 3.3)"


class LedgerUnavailable(JuheError):
    """The ledger's Variables could not be read or written: nothing more is sent; a retry may work."""


@contextmanager
def ledger_store(context: Mapping[str, Any], hook: JuheSmsHook) -> Iterator[StateStore | None]:
    """
    The store of this task instance's send ledger, for one try: the task state store where Airflow
    has one, else sealed Variables, packed when the try ends (``with ledger_store(...) as store:``).

    :param context: the task's context.
    :param hook: the send's hook; its App key seals the Variables (read only where they are used).
    """
    store = context.get("task_state_store")
    if store is not None or context.get("ti") is None:
        yield store
        return
    ti = context["ti"]
    ti_id = getattr(ti, "id", None)
    fallback = VariableLedgerStore(
        f"{ti.dag_id}\0{ti.run_id}\0{ti.task_id}\0{ti.map_index}",
        lambda: hook.config.appkey,
        attempt=None if ti_id is None else (int(ti.try_number), str(ti_id)),
        description=f"Juhe SMS send ledger of {ti.dag_id}.{ti.task_id} in {ti.run_id} (sealed)",
    )
    try:
        yield fallback
    finally:
        fallback.close()


class VariableLedgerStore:
    """
    ``get(key, default)`` / ``set(key, value)`` over Variables, sealed, for one task instance.

    :param identity: the task instance (dag, run, task, map index); only its digest is written.
    :param appkey: reads the App key a wrap of the data key is derived from (read on first use).
    :param attempt: ``(try number, task instance id)`` of this try; ``None``: not checked.
    :param description: shown beside each Variable in the UI.
    :param retention_days: days a ledger is kept after its last use, 0 = never expire; ``None``
        reads ``[juhe] ledger_retention_days``.
    """

    #: Where the ledger lives, as the task's log names it.
    where = f"Airflow Variables ({PREFIX}*)"

    def __init__(
        self,
        identity: str,
        appkey: Callable[[], str],
        *,
        attempt: tuple[int, str] | None = None,
        description: str = "Juhe SMS send ledger (sealed)",
        retention_days: int | None = None,
    ) -> None:
        self.name = PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:24]
        self._appkey = appkey
        self._attempt = attempt
        self._description = description
        self._retention_days = retention_days
        self._directory: dict[str, Any] | None = None
        self._fernet: Any = None
        self._values: dict[str, Any] = {}  # read or written by this try
        self._archive: dict[str, Any] | None = None
        self._sweep_due = False

    # -- the StateStore protocol ----------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        directory = self._open()
        if key in self._values:
            return self._values[key]
        if key in directory["live"]:
            record = _call(variables.read, self._record(key))
            if record is None:  # entered in the directory, never written: nothing to read
                return default
            value = json.loads(self._unseal(record["sealed"], self._record(key)))
        elif key in directory["packed"]:
            value = self._read_archive()[key]
        else:
            return default
        self._values[key] = value
        return value

    def set(self, key: str, value: Any) -> None:
        directory = self._open()
        changed = False
        if key not in directory["live"]:  # the directory first: it may name a record not yet written
            directory["live"].append(key)
            changed = True
        sending = may_have_sent(key, value)
        if sending and key not in directory["sent"]:  # before the record that announces a batch
            directory["sent"].append(key)
            changed = True
        if changed:
            self._write_directory()
        sealed = self._seal().encrypt(_dumps(value).encode()).decode()
        _call(variables.write, self._record(key), {"sealed": sealed}, self._description)
        self._values[key] = value
        if not sending and key in directory["sent"]:  # after the record: every batch of it settled unsent
            directory["sent"].remove(key)
            self._write_directory()

    # -- the end of a try -----------------------------------------------------------------------------

    def close(self) -> None:
        """
        Pack this try's records into at most :data:`MAX_CHUNKS` Variables and delete the rest.
        Never raises: the send is settled; what could not be packed stays readable where it is.
        """
        directory = self._directory
        if directory is None:
            return
        try:
            if directory["live"]:
                self._pack(directory)
                self._enter_index(directory["used"], again=True)
            if self._sweep_due and (retention := self._retention()):
                sweep(_today() - timedelta(days=retention))
        except Exception as error:
            log.warning("Could not pack the send ledger %s (left as it is): %s", self.name, error)

    def _pack(self, directory: dict[str, Any]) -> None:
        records = dict(self._read_archive()) if directory["packed"] else {}
        for key in directory["live"]:
            if key in self._values:
                records[key] = self._values[key]
            elif (value := self.get(key, _MISSING)) is not _MISSING:
                records[key] = value
        token = self._seal().encrypt(_dumps(records).encode()).decode()
        count = max(1, min(MAX_CHUNKS, math.ceil(len(token) / CHUNK_CHARS)))
        size = math.ceil(len(token) / count)
        version = int(directory["archive"]) + 1
        names = [self._chunk(version, index) for index in range(count)]
        for index, name in enumerate(names):
            chunk = token[index * size : (index + 1) * size]
            _call(variables.write, name, {"part": chunk}, self._description)
        garbage = [self._record(key) for key in directory["live"]]
        garbage += [self._chunk(int(directory["archive"]), i) for i in range(int(directory["chunks"]))]
        directory.update(
            archive=version,
            chunks=count,
            packed=sorted(records),
            live=[],
            garbage=directory["garbage"] + garbage,
        )
        self._write_directory()  # the packed records are the ledger from here on
        self._archive = records
        for name in directory["garbage"]:
            _delete(name)
        directory["garbage"] = []
        self._write_directory()

    # -- opening ----------------------------------------------------------------------------------------

    def _open(self) -> dict[str, Any]:
        if self._directory is not None:
            return self._directory
        self._retention()  # a bad [juhe] ledger_retention_days fails here, before any send
        directory: dict[str, Any] | None = _call(variables.read, self.name)
        if directory is not None and directory.get("format") != FORMAT:
            raise JuheConfigError(
                f"The send ledger {self.name} was written by another version of this provider. Not "
                "retried: nothing is sent while it is unknown what an earlier try sent; send the "
                "remaining numbers from a new DAG run"
            )
        today = _today()
        if directory is not None and not self._same_task_instance(directory):
            log.warning(
                "The send ledger of an earlier DagRun with the same run id was found (that run was "
                "deleted and created again): it is retired, and this run's send starts afresh"
            )
            directory = self._retire(directory)
        if directory is not None and self._unwrap(directory) is None:
            if directory["sent"]:
                raise JuheConfigError(
                    f"The send ledger {self.name} cannot be opened: the connection's App key differs from "
                    "the one it was sealed with, and [core] fernet_key does not open it either. Not "
                    "retried: nothing is sent while it is unknown what an earlier try sent; restore the "
                    "App key the earlier try used"
                )
            log.warning(
                "The send ledger %s was sealed under another App key; nothing in it may have been "
                "sent, so it is reopened afresh under the connection's key",
                self.name,
            )
            directory = self._retire(directory)
        if directory is None:
            directory = self._new(generation=0, garbage=[])
        before = _dumps(directory)
        if self._attempt is not None:
            tries = directory["tries"].setdefault(str(self._attempt[0]), [])
            if self._attempt[1] not in tries:
                tries.append(self._attempt[1])
        self._directory = directory
        new_day = directory["used"] != today.isoformat()
        if new_day:
            directory["used"] = today.isoformat()
            self._enter_index(directory["used"])
        if _dumps(directory) != before:
            self._write_directory()  # who opened it, and since when: before any record is written
        self._sweep_due = new_day  # at the end of the try: the send path never waits for it
        return directory

    def _same_task_instance(self, directory: Mapping[str, Any]) -> bool:
        """Whether this try is one of the task instance that wrote the ledger (see the module doc)."""
        if self._attempt is None or not directory["tries"]:
            return True
        number, ti_id = self._attempt
        recorded = directory["tries"]
        if any(ti_id in ids for ids in recorded.values()):
            return True
        return number > max(int(n) for n in recorded)

    def _retire(self, directory: Mapping[str, Any]) -> dict[str, Any]:
        """A new generation; the old one's Variables are deleted once the new directory is written."""
        old = _names(self.name, directory)
        new = self._new(generation=int(directory["generation"]) + 1, garbage=old)
        self._directory = new
        self._write_directory()
        for name in old:
            _delete(name)
        new["garbage"] = []
        return new

    def _new(self, *, generation: int, garbage: list[str]) -> dict[str, Any]:
        from cryptography.fernet import Fernet

        data_key = Fernet.generate_key()
        self._fernet = Fernet(data_key)
        self._archive = None
        self._values = {}
        return {
            "format": FORMAT,
            "generation": generation,
            "tries": {},
            "live": [],
            "packed": [],
            "archive": 0,
            "chunks": 0,
            "sent": [],  # the records that say some batch may have gone out
            "used": "",
            "garbage": garbage,
            "wraps": _wrap(data_key, self._appkey()),
        }

    def _unwrap(self, directory: dict[str, Any]) -> Any:
        """The data key's Fernet, through the App key or Airflow's Fernet key; None when neither opens."""
        from cryptography.fernet import Fernet, InvalidToken

        wraps = directory.get("wraps", {})
        try:
            data_key = _app_fernet(self._appkey()).decrypt(wraps.get("app", "").encode())
        except (InvalidToken, ValueError, TypeError):
            data_key = None
        if data_key is None and (airflow_fernet := _airflow_fernet()) is not None:
            try:
                data_key = airflow_fernet.decrypt(wraps.get("airflow", "").encode())
            except Exception:
                return None
            log.warning(
                "The send ledger %s was sealed under another App key; opened through [core] fernet_key "
                "and sealed anew under the connection's key",
                self.name,
            )
            directory["wraps"] = _wrap(data_key, self._appkey())
        if data_key is None:
            return None
        self._fernet = Fernet(data_key)
        return self._fernet

    # -- records ------------------------------------------------------------------------------------

    def _record(self, key: str) -> str:
        assert self._directory is not None
        return _record_name(self.name, self._directory, key)

    def _chunk(self, version: int, index: int) -> str:
        assert self._directory is not None
        return f"{self.name}_g{self._directory['generation']}_packed{version}_{index}"

    def _read_archive(self) -> dict[str, Any]:
        if self._archive is None:
            directory = self._open()
            parts = []
            for index in range(int(directory["chunks"])):
                name = self._chunk(int(directory["archive"]), index)
                record = _call(variables.read, name)
                if record is None:
                    raise LedgerUnavailable(f"{STORE_NAME}: {name} is missing; retried")
                parts.append(record["part"])
            self._archive = json.loads(self._unseal("".join(parts), self.name)) if parts else {}
        return self._archive

    def _seal(self) -> Any:
        if self._fernet is None:
            self._open()
        return self._fernet

    def _unseal(self, token: str, name: str) -> bytes:
        try:
            return bytes(self._seal().decrypt(token.encode()))
        except Exception as error:  # InvalidToken: a record not written under this ledger's data key
            raise JuheConfigError(
                f"The send ledger record {name} cannot be opened: it was not sealed under this ledger's "
                "key. Not retried: nothing is sent while it is unknown what an earlier try sent"
            ) from error

    def _write_directory(self) -> None:
        assert self._directory is not None
        _call(variables.write, self.name, self._directory, self._description)

    def _enter_index(self, day: str, again: bool = False) -> None:
        """
        Enter the ledger in the day's index slot. Two ledgers writing one slot at once may lose an
        entry; ``again`` (the end of a try) enters it anew when it went missing.
        """
        key = DAY_INDEX_KEY.format(date.fromisoformat(day), self.name[-1])
        entries = set((_call(variables.read, key) or {}).get("ledgers", ()))
        if self.name in entries:
            return
        if again:
            log.info("The send ledger %s was missing from its day index: entered again", self.name)
        _call(
            variables.write,
            key,
            {"ledgers": sorted({*entries, self.name})},
            "Juhe SMS send ledgers used this day (deleted after the retention)",
        )

    def _retention(self) -> int:
        if self._retention_days is None:
            self._retention_days = config.get_int("ledger_retention_days", minimum=0)
        return self._retention_days


_MISSING = object()


def sweep(before: date) -> int:
    """
    Delete the ledgers entered in the day indexes before ``before`` whose last use is before it too
    (at most :data:`SWEEP_DAYS` days of indexes). Sweeps racing each other delete the same
    Variables twice, which is harmless; a failure leaves them for a later sweep.

    :param before: the first day whose ledgers are kept.
    :return: how many ledgers were deleted.
    """
    try:
        day = before - timedelta(days=SWEEP_DAYS)
        if swept := (variables.read(SWEPT_KEY) or {}).get("through"):
            day = max(day, date.fromisoformat(swept) + timedelta(days=1))
        deleted = 0
        while day < before:
            for slot in "0123456789abcdef":
                index_key = DAY_INDEX_KEY.format(day, slot)
                deleted += _sweep_index(index_key, before)
            deleted += _sweep_index(LEGACY_DAY_INDEX_KEY.format(day), before)
            variables.write(
                SWEPT_KEY, {"through": day.isoformat()}, "Juhe SMS send ledgers deleted through this day"
            )
            day += timedelta(days=1)
        return deleted
    except variables.StateUnavailable as error:  # a leak to sweep again later, never a reason to fail
        log.warning("Could not sweep the expired send ledgers: %s", error)
        return 0


def _sweep_index(index_key: str, before: date) -> int:
    """Delete one day index and its ledgers not used since ``before``; how many were deleted."""
    index = variables.read(index_key)
    if index is None:
        return 0
    deleted = 0
    for name in index.get("ledgers", ()):
        directory = variables.read(name)
        if directory is None:
            continue
        if directory.get("format") == FORMAT and directory.get("used", "") >= before.isoformat():
            continue  # used since: entered in a later day's index too
        for record in [*_names(name, directory), name]:
            _delete(record)
        deleted += 1
    _delete(index_key)
    _delete(index_key + "_lock")  # the lock of a day index written by an earlier version
    return deleted


def _names(name: str, directory: Mapping[str, Any]) -> list[str]:
    """Every Variable of a ledger's records (its directory aside)."""
    if directory.get("format") != FORMAT:  # written by an earlier version: records beside the directory
        return [f"{name}_{key}" for key in directory.get("keys", ())]
    names = [_record_name(name, directory, key) for key in directory["live"]]
    generation = directory["generation"]
    names += [
        f"{name}_g{generation}_packed{directory['archive']}_{i}" for i in range(int(directory["chunks"]))
    ]
    return names + list(directory.get("garbage", ()))


def _record_name(name: str, directory: Mapping[str, Any], key: str) -> str:
    return f"{name}_g{directory['generation']}_{key}"


def _wrap(data_key: bytes, appkey: str) -> dict[str, str]:
    wraps = {"app": _app_fernet(appkey).encrypt(data_key).decode()}
    if (airflow_fernet := _airflow_fernet()) is not None:
        wraps["airflow"] = airflow_fernet.encrypt(data_key).decode()
    return wraps


def _app_fernet(appkey: str) -> Any:
    from cryptography.fernet import Fernet

    secret = hmac.new(appkey.encode(), _SEAL_CONTEXT, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(secret))


def _airflow_fernet() -> Any:
    """Airflow's Fernet (``[core] fernet_key``, rotations included); None where it is not set."""
    try:
        from airflow.models.crypto import get_fernet

        fernet = get_fernet()
    except Exception:
        return None
    return fernet if getattr(fernet, "is_encrypted", False) else None


def _call(function: Callable[..., Any], *args: Any) -> Any:
    """A Variables call; a failure becomes :class:`LedgerUnavailable`, naming the store and the cause."""
    try:
        return function(*args)
    except variables.StateUnavailable as error:
        raise LedgerUnavailable(
            f"{STORE_NAME} could not be used ({error}): nothing more was sent by this try; a retry "
            "resumes where it stopped"
        ) from error


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _delete(key: str) -> None:
    """Delete one Variable; a failure is a leak for a later sweep, never a reason to fail a send."""
    try:
        variables.delete(key)
    except variables.StateUnavailable:
        log.warning("Could not delete the send ledger record %s", key, exc_info=True)
