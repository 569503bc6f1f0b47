"""
Alert state in Redis, through ``RedisHook`` of apache-airflow-providers-redis (the extra
``airflow-provider-juhe[redis]``).

Each update is one optimistic transaction: ``WATCH`` the key, read it, ``MULTI``/``SET … PX``/``EXEC``;
a racing write aborts the ``EXEC`` and the change is made again on what that racer wrote. No lock is
held, so a process that dies mid-update blocks nobody, and records expire by TTL. Calls time out after
:data:`SOCKET_TIMEOUT_SECONDS` and are not retried by the client: a Redis that is down or unreachable
is reported at once, and the notifier pages without it.

Used synchronously everywhere a notifier runs: task callbacks, DAG callbacks, and the triggerer,
where ``async_notify`` runs the notification on a worker thread (the event loop never waits).
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, TypeVar

import redis
from airflow.providers.redis.hooks.redis import RedisHook
from redis.backoff import NoBackoff
from redis.retry import Retry

from airflow_provider_juhe.alerting.store import Change, LockBusy, Record
from airflow_provider_juhe.variables import StateUnavailable

T = TypeVar("T")

#: How long one Redis call (and a connect) may take before the state counts as unavailable.
SOCKET_TIMEOUT_SECONDS = 2.0


class RedisStore:
    """Records as JSON strings under their keys in the Redis connection ``conn_id``."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.name = f"Redis connection {conn_id!r}"
        self._client: redis.Redis | None = None
        self._guard = threading.Lock()

    @property
    def client(self) -> redis.Redis:
        with self._guard:
            if self._client is None:
                try:
                    client = RedisHook(redis_conn_id=self.conn_id).get_conn()
                except Exception as error:
                    raise StateUnavailable(f"{self.name}: {type(error).__name__}: {error}") from None
                pool = getattr(client, "connection_pool", None)
                if pool is not None:  # not in cluster mode: bound every call, no silent client retries
                    pool.connection_kwargs.update(
                        socket_timeout=SOCKET_TIMEOUT_SECONDS,
                        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                        retry=Retry(NoBackoff(), 0),
                    )
                self._client = client
            return self._client

    def read(self, key: str) -> Record | None:
        try:
            return _decode(self.client.get(key))
        except redis.RedisError as error:
            raise self._unavailable(error) from None

    def write(self, key: str, record: Record, *, ttl: float, description: str) -> None:
        try:
            self.client.set(key, _encode(record), px=_ms(ttl))
        except redis.RedisError as error:
            raise self._unavailable(error) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete(key)
        except redis.RedisError as error:
            raise self._unavailable(error) from None

    def update(self, key: str, change: Change[T], *, ttl: float, deadline: float, description: str) -> T:
        def in_time() -> None:  # a Redis that answers slowly (each call within its timeout) is bounded too
            if time.monotonic() > deadline:
                raise LockBusy(f"{self.name}: {key} could not be changed by the time bound (slow replies)")

        try:
            with self.client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        in_time()
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        in_time()
                        changed, result = change(_decode(pipe.get(key)))
                        if changed is None:
                            pipe.unwatch()
                            return result
                        in_time()
                        pipe.multi()
                        pipe.set(key, _encode(changed), px=_ms(ttl))
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        if time.monotonic() > deadline:
                            raise LockBusy(f"{self.name}: {key} kept changing until the time bound") from None
        except redis.RedisError as error:
            raise self._unavailable(error) from None

    def _unavailable(self, error: Exception) -> StateUnavailable:
        return StateUnavailable(f"{self.name}: {type(error).__name__}: {error}")


def _encode(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"))


def _decode(raw: Any) -> Record | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # damaged (or nested too deep): as if missing, never silencing
        return None
    return record if isinstance(record, dict) else None


def _ms(ttl: float) -> int | None:
    return None if math.isinf(ttl) else max(1, int(ttl * 1000))
