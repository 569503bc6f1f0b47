"""JuheSandbox: a Juhe-compatible HTTP server on 127.0.0.1 for local DAG runs and tests."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from airflow_provider_juhe.sandbox.state import Fault, Reply, SandboxState, messages_for


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Juhe's servers do
    # Buffer each response into one write and send it at once: with Nagle's algorithm and delayed
    # ACKs, headers and body in separate segments cost a pooled client ~40 ms per call.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve(time.monotonic(), body=b"")

    def do_POST(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:  # the client (or stop()) cut the request short: nothing arrived
            self.close_connection = True
            return
        self._serve(arrived, body)

    def _serve(self, arrived: float, body: bytes) -> None:
        if not self.server.begin_call():  # stop() has begun: a stopped sandbox acts on nothing more
            self.close_connection = True
            return
        try:
            self._answer(arrived, body)
        finally:
            self.server.end_call()

    def _answer(self, arrived: float, body: bytes) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        reply = self.server.state.handle(url.path, self.command, params, url.query)
        # Latency is the response time a remote API would show: the sandbox's own work counts in it.
        wait = reply.delay - (time.monotonic() - arrived)
        if wait > 0:
            time.sleep(wait)
        if reply.drop or reply.reset:
            self.close_connection = True
            if reply.reset:  # SO_LINGER 0: close() sends a TCP reset instead of a FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.html is not None:
            payload, content_type = reply.html.encode(), "text/html; charset=utf-8"
        elif reply.raw is not None:
            payload, content_type = reply.raw, "application/json"
        else:
            payload, content_type = json.dumps(reply.body, ensure_ascii=False).encode(), "application/json"
        try:
            if reply.trickle or reply.filler:
                self._stream(reply, payload, content_type)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a deadline, a read bound): nothing to do
            self.close_connection = True

    def _stream(self, reply: Reply, payload: bytes, content_type: str) -> None:
        """A trickled answer (a byte every ``trickle`` seconds) or one padded with ``filler`` bytes."""
        self.close_connection = True  # the end of the body is the end of the connection
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        if reply.trickle:
            for byte in range(len(payload)):
                self.wfile.write(payload[byte : byte + 1])
                self.wfile.flush()
                time.sleep(reply.trickle)
            return
        self.wfile.write(payload)
        chunk = b" " * 65536  # JSON allows trailing white space: only the size is wrong
        for _ in range(reply.filler // len(chunk)):
            self.wfile.write(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and the demo print what matters


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        self.state = state
        self._stopping = False
        self._calls = 0  # calls being answered
        self._open: set[socket.socket] = set()
        self._lock = threading.Condition()
        super().__init__(address, _Handler)

    def begin_call(self) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._calls += 1
            return True

    def end_call(self) -> None:
        with self._lock:
            self._calls -= 1
            self._lock.notify_all()

    def stop_calls(self, wait: float) -> None:
        """Take no new call, end every connection, and wait up to ``wait`` s for calls being answered."""
        with self._lock:
            self._stopping = True
        self.close_connections()
        with self._lock:
            self._lock.wait_for(lambda: self._calls == 0, timeout=wait)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open connection: a stopped sandbox answers nobody, pooled clients included."""
        with self._lock:
            open_now = list(self._open)
        for connection in open_now:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up is no error
            super().handle_error(request, client_address)


class JuheSandbox:
    """
    A Juhe-compatible server answering submitTpl, send, mobileGroup and myTemplates like the real API.

    Use it as a context manager; it listens on a free port of 127.0.0.1 unless ``port`` is given::

        with JuheSandbox(appkey="KEY", approve_after=1) as sandbox:
            ...  # point a juhe_sms connection at sandbox.url
            sandbox.messages()

    :param appkey: the only key it accepts (others get 10001).
    :param host: address to listen on.
    :param port: port to listen on; 0 picks a free one.
    :param approve_after: seconds a submitted template stays in review before it is decided.
    :param forbidden_words: a template containing one of these is rejected by the review.
    :param latency: each call's response time in seconds, from its arrival to its answer (the
        sandbox's own work included, as with a remote API); with ``latency_sigma``, its mean.
    :param latency_sigma: spread of the response times: each one drawn from a lognormal distribution
        whose mean is ``latency`` and whose log has this standard deviation (0.3: most calls within
        about 0.5x to 1.8x the mean, as a loaded remote API answers). 0 (the default): every call takes
        ``latency``.
    :param seed: seed for fraction-based fault injection and the latency draws.
    """

    def __init__(
        self,
        appkey: str = "sandbox-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        approve_after: float = 0.0,
        forbidden_words: tuple[str, ...] = ("赌博", "贷款秒批"),
        latency: float = 0.0,
        latency_sigma: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.state = SandboxState(
            appkey=appkey,
            approve_after=approve_after,
            forbidden_words=tuple(forbidden_words),
            latency=latency,
            latency_sigma=latency_sigma,
            seed=seed,
        )
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> JuheSandbox:
        self._server = _Server(self._address, self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="juhe-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            # A call being answered ends (its connection cut) before stop() returns: whatever the
            # sandbox acted on is in messages() by then, and nothing after.
            self._server.stop_calls(wait=5.0)
            self._server.server_close()
            self._server = None

    def __enter__(self) -> JuheSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, for a connection's host field: ``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # getsockname() of an AF_INET socket: typeshed also allows bytes
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def connection_json(self) -> str:
        """The value for ``AIRFLOW_CONN_<ID>`` that points a ``juhe_sms`` connection here."""
        return json.dumps({"conn_type": "juhe_sms", "host": self.url, "password": self.state.appkey})

    def messages(self, start: int = 0) -> list[dict[str, Any]]:
        """
        Every accepted send: ``{"sid", "mobiles", "tpl_id", "text", "fee", "at"}`` (``at``: epoch seconds).

        :param start: skip the first ``start`` messages (a follower reads only what is new).
        """
        with self.state._lock:
            return messages_for(self.state.sent[start:])

    def calls(self) -> list[dict[str, Any]]:
        """Every request received: ``{"path", "method", "query", "params"}`` (the key left out)."""
        with self.state._lock:
            return [dict(call) for call in self.state.calls]

    def add_template(self, content: str, signature: str = "沙箱", state: int = 3, operation: int = 0) -> int:
        """Create a template directly (approved by default); returns its id."""
        return self.state.add_template(content, signature, state, operation)

    def set_template_state(self, tpl_id: int, state: int) -> None:
        """Force a template's review state (0 unreviewed, 1 rejected, 2 reviewing, 3 approved)."""
        self.state.set_template_state(tpl_id, state)

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        fraction: float | None = None,
        error_code: int = 228807,
        seconds: float = 0.0,
        path: str | None = None,
        after: int = 0,
        size: int = 0,
        shape: str = "not_json",
        status: int = 200,
        sigma: float = 0.0,
    ) -> None:
        """
        Make the next ``times`` calls (``None``: every call), or a ``fraction`` of calls, misbehave.

        :param kind: refusing the call: ``"error"`` (answer ``error_code``), ``"html_502"`` (an HTML Bad
            Gateway page, padded to ``size`` bytes if given). Carrying the call out, then spoiling the
            answer: ``"latency"`` (wait ``seconds`` more; with ``sigma``, a lognormal draw around
            ``seconds``, as ``latency_sigma``), ``"drop"`` (close the connection without answering),
            ``"reset"`` (a TCP reset instead of the answer), ``"trickle"`` (the answer one
            byte every ``seconds``), ``"oversized"`` (the answer padded to ``size`` bytes, default 100 MB,
            with HTTP ``status``), ``"unknown_code"`` (``error_code`` if set, else 229999: a code the vendor doc does not list), or
            ``"malformed"`` (the answer mangled to ``shape``, one of ``MALFORMED_SHAPES``).
        :param path: only calls whose path ends with this, e.g. ``"send.php"``.
        :param after: let this many matching calls through first (``after=2``: the third send fails).
        """
        self.state.inject(
            Fault(kind, times, fraction, error_code, seconds, path, after, size, shape, status, sigma)
        )

    def port_number(self, number: str, carrier: str) -> None:
        """Move a number to another carrier (携号转网): mobileGroup answers ``carrier`` for it from now on."""
        self.state.port_number(number, carrier)

    def clear_faults(self) -> None:
        self.state.clear_faults()
