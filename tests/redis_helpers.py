"""
Helpers of the Redis tests: an in-memory Redis that knows the commands the
backend uses (driven by iosim pumps and a Clock), and a real C{redis-server}
started on a free loopback port in a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, IOPump, connect

from jsonservice.resp import RespParser, encode_command

REDIS_SERVER = shutil.which("redis-server")


def resp(value: Any) -> bytes:
    """A reply in RESP2."""
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(resp(item) for item in value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, Exception):
        return b"-%s\r\n" % str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(value), value)


class FakeRedisConnection(Protocol):
    """One client connection of L{FakeRedis}."""

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.parser = RespParser()
        self.channels: set[bytes] = set()

    def dataReceived(self, data: bytes) -> None:
        for command in self.parser.feed(data):
            self.redis.commands.append(command)
            if self.redis.answering:
                self.handle(command)

    def handle(self, command: list[bytes]) -> None:
        name, *args = command
        name = name.upper()
        write = self.transport.write  # type: ignore[union-attr]
        if name == b"AUTH":
            good = args[-1] == self.redis.password
            write(resp(b"OK") if good else resp(Exception("WRONGPASS invalid password")))
        elif name == b"PING":
            write(resp([b"pong", b""]) if self.channels else b"+PONG\r\n")
        elif name == b"SUBSCRIBE":
            for channel in args:
                self.channels.add(channel)
                write(resp([b"subscribe", channel, len(self.channels)]))
        elif name == b"UNSUBSCRIBE":
            for channel in args:
                self.channels.discard(channel)
                write(resp([b"unsubscribe", channel, len(self.channels)]))
        elif name == b"PUBLISH":
            channel, message = args
            receivers = [c for c in self.redis.connections if channel in c.channels]
            for conn in receivers:
                conn.transport.write(resp([b"message", channel, message]))  # type: ignore[union-attr]
            write(resp(len(receivers)))
        else:
            write(resp(Exception(f"ERR unknown command {name!r}")))

    def connectionLost(self, reason: Any = None) -> None:
        if self in self.redis.connections:
            self.redis.connections.remove(self)


class FakeRedis:
    """
    A Redis in memory for the backend's tests: an endpoint (L{connect})
    that joins each client to a L{FakeRedisConnection} with an iosim pump.

    @ivar up: whether connecting succeeds.
    @ivar answering: whether commands are answered (a hung Redis when not).
    @ivar commands: every command received.
    @ivar attempts: connection attempts, with the clock's time.
    """

    def __init__(self, clock: Clock, password: bytes | None = None) -> None:
        self.clock = clock
        self.password = password
        self.up = True
        self.answering = True
        self.commands: list[list[bytes]] = []
        self.connections: list[FakeRedisConnection] = []
        self.pumps: list[IOPump] = []
        self.attempts: list[float] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts.append(self.clock.seconds())
        if not self.up:
            return fail(ConnectionRefusedError("fake redis is down"))
        client = factory.buildProtocol(None)
        server = FakeRedisConnection(self)
        self.connections.append(server)
        pump = connect(
            server,
            FakeTransport(server, True),  # type: ignore[no-untyped-call]
            client,
            FakeTransport(client, False),  # type: ignore[no-untyped-call]
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        return succeed(client)

    def flush(self) -> None:
        """Move every byte both ways until nothing moves."""
        for _ in range(100):
            moved = [pump.pump() for pump in self.pumps]  # every pump, each round
            if not any(moved):
                return

    def crash(self) -> None:
        """Drop every connection (and refuse new ones)."""
        self.up = False
        for conn in list(self.connections):
            conn.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()

    def publish(self, channel: bytes, message: bytes) -> None:
        """As another process would: PUBLISH through a client of its own."""
        for conn in self.connections:
            if channel in conn.channels:
                conn.transport.write(resp([b"message", channel, message]))  # type: ignore[union-attr]
        self.flush()

    @staticmethod
    def command(*args: bytes) -> bytes:
        return encode_command(*args)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real C{redis-server} on 127.0.0.1, no persistence, in C{directory}."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {(self.directory / 'redis.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(100).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
