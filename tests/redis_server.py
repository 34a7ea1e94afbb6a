"""A real Redis server for the tests: the one CI started (ADWS_TEST_REDIS_URL), else our own.

Nothing is mocked: the Redis state store is tested against `redis-server` itself. Tests share one server
and each gets its own key prefix, deleted afterwards key by key (never FLUSHDB: the server may hold data
that is not ours). Tests that restart or kill a server start a private one (`RedisServer.start`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_TEST_URL = "ADWS_TEST_REDIS_URL"
START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    """True when something on 127.0.0.1:port answers a Redis PING (a server wanting a password says so)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a free loopback port, with its files in `directory`."""

    def __init__(self, directory: Path, port: int, args: tuple[str, ...]) -> None:
        self.directory, self.port, self.args = directory, port, args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, directory: Path, *args: str) -> RedisServer:
        """Start a server; `args` are extra redis-server options (e.g. "--appendonly", "yes")."""
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not on PATH and ADWS_TEST_REDIS_URL is not set")
        directory.mkdir(parents=True, exist_ok=True)
        server = cls(directory, free_port(), args)
        server.run()
        return server

    def run(self) -> None:
        """(Re)start the process on the same port and directory; returns once it answers."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a live Redis server shared by the session's tests."""
    given = os.environ.get(ENV_TEST_URL)
    if given:
        yield given
        return
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


def new_prefix() -> str:
    return f"adws-test:{uuid.uuid4().hex}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys under `prefix` (ours), key by key: never FLUSHDB on a server others may use."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards (and nothing else)."""
    prefix = new_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)
