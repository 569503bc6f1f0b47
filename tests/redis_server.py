"""A throwaway redis-server for tests: a free port on 127.0.0.1, nothing written to disk."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

#: Set by CI (.ci/run): a missing redis-server fails the Redis tests instead of skipping them.
REQUIRE = "JUHE_REQUIRE_REDIS"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server --port P --save '' --appendonly no``, started and stopped by the test."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (Debian: apt-get install redis-server)"
            if os.environ.get(REQUIRE) == "1":
                pytest.fail(f"{message}; {REQUIRE}=1 requires it")
            pytest.skip(message)
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="juhe-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def connection_json(self) -> str:
        return f'{{"conn_type": "redis", "host": "127.0.0.1", "port": {self.port}, "extra": {{"db": 0}}}}'

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen(
            [*argv, "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, as a crashed Redis would be."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class SlowProxy:
    """A TCP proxy on 127.0.0.1 in front of ``port`` that holds every reply ``delay`` seconds: a slow Redis."""

    def __init__(self, port: int, delay: float) -> None:
        self.target, self.delay = port, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def connection_json(self) -> str:
        return f'{{"conn_type": "redis", "host": "127.0.0.1", "port": {self.port}, "extra": {{"db": 0}}}}'

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.delay), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
