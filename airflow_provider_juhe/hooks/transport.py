"""
HTTP plumbing under the hook: a deadline for the whole call, whether the request started, and the
form body.

``requests`` (like urllib3) applies its read timeout to each socket read, so a server that trickles
one byte a second holds a call for as long as it likes. Here every read of the answer (status line,
headers, body) waits at most until the call's deadline. The connection also notes the moment its
first byte is written: a failure before it surely took no effect (DNS, refused, TLS handshake), a
failure after it may have.
"""

from __future__ import annotations

import errno
import http.client
import io
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


@dataclass
class Attempt:
    """One HTTP request of a call: its deadline (``time.monotonic``) and whether a byte of it left."""

    deadline: float
    started: bool = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_current = threading.local()
_DIGITS_AND_COMMAS = re.compile(r"[0-9,]*")


def failure_cause(error: BaseException, url: str, timeout: float, started: bool) -> str:
    """
    What a transport failure was, in words: ``connection refused by 127.0.0.1:8799``, ``DNS lookup
    failed for v.juhe.cn``, ``no complete answer from v.juhe.cn:443 within 10 s``; never a library's
    repr of its connection pool.

    :param started: a byte of the request had left (see :class:`Attempt`).
    """
    import requests
    import urllib3

    parsed = urlsplit(url)
    host = parsed.hostname or "?"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    where = f"{host}:{port}"
    chain = _causes(error)
    errnos = {getattr(cause, "errno", None) for cause in chain}
    if any(isinstance(cause, urllib3.exceptions.NameResolutionError) for cause in chain) or (
        not started and any(isinstance(cause, socket.gaierror) for cause in chain)
    ):
        return f"DNS lookup failed for {host}"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return f"connect timeout: {where} did not accept a connection within {timeout:g} s"
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS handshake with {where} failed ({_last_words(chain)})"
    if not started and errno.ECONNREFUSED in errnos:
        return f"connection refused by {where}"
    if not started and errnos & {errno.ENETUNREACH, errno.EHOSTUNREACH}:
        return f"{where} is unreachable (no route to it)"
    if isinstance(error, requests.exceptions.Timeout) or any(isinstance(c, TimeoutError) for c in chain):
        return f"no complete answer from {where} within {timeout:g} s"
    if started:
        return f"the connection to {where} was reset or dropped after the request was sent ({_last_words(chain)})"
    return f"could not connect to {where} ({_last_words(chain)})"


def _causes(error: BaseException) -> list[BaseException]:
    """The error, what it wraps (requests and urllib3 keep the cause in ``args`` or ``reason``)."""
    chain: list[BaseException] = []
    todo: list[Any] = [error]
    while todo and len(chain) < 10:
        item = todo.pop()
        if not isinstance(item, BaseException) or item in chain:
            continue
        chain.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args[:1]]
    return chain


def _last_words(chain: list[BaseException]) -> str:
    """The innermost cause's own words (``[Errno 104] Connection reset by peer``), short."""
    from airflow_provider_juhe.exceptions import shorten

    innermost = chain[-1]
    text = getattr(innermost, "strerror", None) or str(innermost) or type(innermost).__name__
    return shorten(text, 120)


def form_body(fields: Mapping[str, Any]) -> bytes:
    """
    ``urlencode(fields).encode()``, byte for byte. A list of numbers skips ``quote_plus``, which
    quotes byte by byte once a comma is in the text: a tenth of a 100-number call's CPU.
    """
    return "&".join(f"{_form_value(name)}={_form_value(value)}" for name, value in fields.items()).encode()


def _form_value(value: Any) -> str:
    if type(value) is str and _DIGITS_AND_COMMAS.fullmatch(value):
        return value.replace(",", "%2C")
    return quote_plus(value if isinstance(value, bytes) else str(value))  # as urlencode reads it


@contextmanager
def attempt(timeout: float) -> Iterator[Attempt]:
    """Run one request of this thread under a deadline ``timeout`` seconds from now."""
    state = Attempt(time.monotonic() + timeout)
    _current.attempt = state
    try:
        yield state
    finally:
        _current.attempt = None


def _attempt() -> Attempt | None:
    return getattr(_current, "attempt", None)


class _DeadlineReader(io.RawIOBase):
    """A socket's reads (its own ``SocketIO``), each waiting at most until the attempt's deadline."""

    def __init__(self, sock: socket.socket, state: Attempt) -> None:
        # The socket's own reader keeps the socket open while the answer is read, also after
        # http.client hands a "Connection: close" answer the connection and closes its end.
        self._raw = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._state = state

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._state.remaining()
        if remaining <= 0:
            raise TimeoutError("the call's deadline passed while reading the answer")
        self._sock.settimeout(remaining)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``http.client.HTTPResponse`` needs of a socket: ``makefile("rb")``, deadline-bound."""

    def __init__(self, sock: socket.socket, state: Attempt) -> None:
        self._sock = sock
        self._state = state

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._state))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        state = _attempt()
        # HTTPResponse only calls sock.makefile("rb"); typeshed asks for a whole socket.
        super().__init__(_DeadlineSocket(sock, state) if state else sock, *args, **kwargs)  # type: ignore[arg-type]


if TYPE_CHECKING:  # _Marking is a mixin for urllib3's connections
    _ConnectionBase = HTTPConnection
else:
    _ConnectionBase = object


class _Marking(_ConnectionBase):
    """Notes the first byte written; reads the answer under the deadline."""

    response_class: type[http.client.HTTPResponse] = _DeadlineResponse

    def send(self, data: Any) -> None:
        if self.sock is None:  # connect first: its failures took no effect
            self.connect()
        state = _attempt()
        if state is not None:
            state.started = True
        super().send(data)


class _HTTPConnection(_Marking, HTTPConnection):
    pass


class _HTTPSConnection(_Marking, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections honour :func:`attempt`'s deadline and mark the start."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
