"""
The Redis backend (issue 14): the RESP parser and URL (pure), the backend
against an in-memory Redis on a Clock (reconnection with backoff, restored
subscriptions, publish failing at once while down, the reply timeout, the
publish backlog bound, payloads that are not ours), and against a real
C{redis-server} (skipped with a reason where there is none): two services in
this process, then real C{twistd} processes — a subscriber on one and a
publisher on the other, the same under C{--workers 2}, and Redis stopped and
restarted mid-stream.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from jsonservice import JSONServerFactory, JSONService
from jsonservice.limits import REDIS_TIMEOUT
from jsonservice.pubsub import PubSubUnavailable
from jsonservice.redis import RETRY_INITIAL, RedisAddress, RedisBackend, parse_redis_url
from jsonservice.redisconn import RETRY_MAX
from jsonservice.resp import RedisError, RespParser, encode_command
from jsonservice.testing import MemoryServer

from .ops_helpers import TWISTD, LineClient, kill, proc_children, start_twistd, wait_for, wait_port
from .redis_helpers import REDIS_SERVER, FakeRedis, RedisServer

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="no redis-server on PATH (apt-get install redis-server; .ci/run tries)"
)
needs_twistd = pytest.mark.skipif(not TWISTD.exists(), reason=f"no twistd next to {sys.executable}")

# -- RESP ------------------------------------------------------------------------

REPLIES = (
    b"+OK\r\n-ERR wrong\r\n:42\r\n:-1\r\n$5\r\nhe\r\nl\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
    b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\n{}\n\n\r\n*2\r\n*1\r\n:1\r\n+x\r\n"
)


def expected_replies(replies: list[Any]) -> None:
    assert replies[0] == b"OK"
    assert isinstance(replies[1], RedisError)
    assert str(replies[1]) == "ERR wrong"
    message = [b"message", b"ch", b"{}\n\n"]
    assert replies[2:] == [42, -1, b"he\r\nl", b"", None, None, [], message, [[1], b"x"]]


def test_resp_parses_every_kind_of_reply() -> None:
    expected_replies(RespParser().feed(REPLIES))


def test_resp_parses_however_the_bytes_are_split() -> None:
    for size in (1, 2, 3, 7):
        parser = RespParser()
        replies: list[Any] = []
        for start in range(0, len(REPLIES), size):
            replies += parser.feed(REPLIES[start : start + size])
        expected_replies(replies)


def test_resp_waits_for_a_big_bulk_without_parsing_it_again() -> None:
    parser = RespParser()
    assert parser.feed(b"$100000\r\n") == []
    calls = 0
    real = parser._parse

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args)

    parser._parse = counting  # type: ignore[method-assign]
    for _ in range(99):
        assert parser.feed(b"x" * 1000) == []
    assert calls == 0  # trickled bytes are not re-parsed: linear
    assert parser.feed(b"x" * 1000 + b"\r\n") == [b"x" * 100000]


@pytest.mark.parametrize(
    "data",
    [
        b"?what\r\n",
        b"$10000000000\r\n",
        b":12x\r\n",
        b"$2\r\nabcd\r\n",
        b"x" * 70000,
        b"*1\r\n" * 9 + b":1\r\n",
    ],
)
def test_resp_refuses_what_is_not_resp(data: bytes) -> None:
    with pytest.raises(RedisError):
        RespParser().feed(data)


def test_encode_command() -> None:
    expected = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n"
    assert encode_command(b"PUBLISH", b"ch", b"a\r\nb") == expected


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress("127.0.0.1", 6379, 0)),
        ("redis://redis.internal", RedisAddress("redis.internal", 6379, 0)),
        ("redis://:p%40ss@h:7000/3", RedisAddress("h", 7000, 3, None, "p@ss")),
        ("redis://app:pw@h/1", RedisAddress("h", 6379, 1, "app", "pw")),
        ("redis://[::1]:6380/2", RedisAddress("::1", 6380, 2)),
    ],
)
def test_redis_urls(url: str, address: RedisAddress) -> None:
    assert parse_redis_url(url) == address
    assert "p@ss" not in address.url
    assert "pw" not in address.url


@pytest.mark.parametrize(
    "url",
    ["http://h:1/0", "redis://", "redis://h:0x/0", "redis://h:1/db", "redis://h:1/0?x=1", "redis://h:70000"],
)
def test_bad_redis_urls(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_redis_url(url)


# -- the backend against an in-memory Redis ----------------------------------------


class Setup:
    """A service with a Redis backend on a fake Redis, all on one Clock."""

    def __init__(self, password: bytes | None = None, url: str = "redis://fake:6379/0", **kw: Any) -> None:
        self.clock = Clock()
        self.redis = FakeRedis(self.clock, password)
        self.backend = RedisBackend(url, endpoint=self.redis, **kw)  # type: ignore[arg-type]
        self.service = JSONService(pubsub=self.backend)
        self.server = MemoryServer(self.service, clock=self.clock)
        self.service.pubsub.start(self.clock)
        self.flush()

    def flush(self) -> None:
        for _ in range(5):
            self.redis.flush()
            self.server.flush()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.flush()


def events(pair: Any) -> list[Any]:
    sent = pair.sent_by_server
    return [m["params"] for m in sent if isinstance(m, dict) and m.get("method") == "rpc.event"]


def test_events_go_through_redis_once_encoded() -> None:
    setup = Setup()
    assert setup.backend.connected
    a, b = setup.server.connect(), setup.server.connect()
    d = a.client.call("rpc.subscribe", "news")
    setup.server.flush()
    assert not d.called  # waits for Redis to confirm the subscription
    setup.flush()
    assert a.result_of(d) is True
    b.result_of(b.client.call("rpc.subscribe", "news"))
    published = setup.service.publish("news", {"n": 1})
    assert setup.service.pubsub.delivered == 0  # not delivered locally: through Redis only
    setup.flush()
    assert published.called
    assert events(a) == events(b) == [{"topic": "news", "data": {"n": 1}}]
    [publish] = [c for c in setup.redis.commands if c[0] == b"PUBLISH"]
    assert publish == [
        b"PUBLISH",
        b"jsonservice:0:news",
        b'{"jsonrpc":"2.0","method":"rpc.event","params":{"topic":"news","data":{"n":1}}}\n',
    ]
    # One channel subscription per process, not per subscriber; left with the last one.
    subscribes = [c for c in setup.redis.commands if c[0] == b"SUBSCRIBE"]
    assert subscribes == [[b"SUBSCRIBE", b"jsonservice:0:news"]]
    a.disconnect()
    setup.flush()
    assert not [c for c in setup.redis.commands if c[0] == b"UNSUBSCRIBE"]
    b.disconnect()
    setup.flush()
    assert [c for c in setup.redis.commands if c[0] == b"UNSUBSCRIBE"] == [
        [b"UNSUBSCRIBE", b"jsonservice:0:news"]
    ]


def test_the_database_number_separates_channels() -> None:
    setup = Setup(url="redis://fake:6379/7")
    pair = setup.server.connect()
    pair.client.call("rpc.subscribe", "t")
    setup.flush()
    setup.redis.publish(b"jsonservice:0:t", b'{"jsonrpc":"2.0","method":"rpc.event","params":{}}\n')
    setup.redis.publish(b"jsonservice:7:t", b'{"jsonrpc":"2.0","method":"rpc.event","params":{"n":7}}\n')
    setup.flush()
    assert events(pair) == [{"n": 7}]


def test_only_whole_event_lines_from_redis_reach_clients() -> None:
    setup = Setup()
    pair = setup.server.connect()
    pair.client.call("rpc.subscribe", "t")
    setup.flush()
    for bad in (
        b'{"jsonrpc":"2.0","method":"rpc.event","params":1}\n{"jsonrpc":"2.0","method":"evil"}\n',
        b'{"jsonrpc":"2.0","method":"rpc.event","params":1}',
        b'{"jsonrpc":"2.0","method":"evil"}\n',
    ):
        setup.redis.publish(b"jsonservice:0:t", bad)
    setup.flush()
    assert pair.sent_by_server[1:] == []
    assert setup.backend.dropped_messages == 3


def test_redis_down_publish_fails_at_once_requests_go_on_and_it_comes_back() -> None:
    setup = Setup()
    pair = setup.server.connect()

    @setup.service.method
    def shout(text: str) -> Deferred[None]:
        return setup.service.publish("t", text)

    pair.client.call("rpc.subscribe", "t")
    setup.flush()
    setup.redis.crash()
    assert not setup.backend.connected
    d = setup.service.publish("t", "lost")
    failure = pair.failure_of(d, PubSubUnavailable)
    assert failure.value.code == -32001
    assert "unreachable" in failure.value.data
    # The handler returning that Deferred: the client gets -32001, and requests go on.
    error = pair.failure_of(pair.client.call("shout", "hello")).value
    assert error.code == -32001
    assert pair.result_of(pair.client.call("rpc.ping")) == "pong"
    # Subscribing still works meanwhile: it takes effect once Redis is back.
    assert pair.result_of(pair.client.call("rpc.subscribe", "later")) is True
    # Reconnection with backoff (two connections): quick at first, then every ~5 s at most.
    down_at = setup.clock.seconds()
    setup.redis.attempts.clear()
    for _ in range(600):
        setup.clock.advance(0.05)
    attempts = [t - down_at for t in setup.redis.attempts]
    assert len([t for t in attempts if t < 1]) >= 4
    assert 2 <= len([t for t in attempts if t >= 20]) <= 6
    # Redis is back: both connections return, every subscription is restored.
    setup.redis.up = True
    setup.redis.commands.clear()
    # The next attempt is at most RETRY_MAX plus a quarter of jitter away.
    setup.advance(RETRY_MAX * 1.25 + 0.1)
    assert setup.backend.connected
    [subscribe] = [c for c in setup.redis.commands if c[0] == b"SUBSCRIBE"]
    assert sorted(subscribe[1:]) == [b"jsonservice:0:later", b"jsonservice:0:t"]
    d = pair.client.call("shout", "again")
    setup.flush()
    assert pair.result_of(d) is None
    assert events(pair) == [{"topic": "t", "data": "again"}]


def test_a_redis_that_stops_answering_is_dropped_and_reconnected() -> None:
    setup = Setup()
    setup.redis.answering = False
    d = setup.service.publish("t", 1)
    setup.advance(REDIS_TIMEOUT - 0.1)
    assert not d.called
    attempts = len(setup.redis.attempts)
    setup.advance(0.1)
    setup.server.connect().failure_of(d, PubSubUnavailable)
    assert not setup.backend.connected
    setup.redis.answering = True
    setup.advance(RETRY_INITIAL * 4)
    assert len(setup.redis.attempts) > attempts
    assert setup.backend.connected


def test_unanswered_publishes_are_bounded() -> None:
    setup = Setup(max_backlog=10_000)
    setup.redis.answering = False
    waiting = [setup.service.publish("t", "x" * 900) for _ in range(10)]
    assert setup.backend.backlog < 10_000
    over = setup.service.publish("t", "x" * 900)
    failure = setup.server.connect().failure_of(over, PubSubUnavailable)
    assert "max 10000" in failure.value.data
    assert not any(d.called for d in waiting)
    setup.advance(REDIS_TIMEOUT)  # timed out: all fail, the backlog is empty again
    assert all(d.called for d in waiting)
    for d in waiting:
        d.addErrback(lambda f: f.trap(PubSubUnavailable))
    assert setup.backend.backlog == 0


def test_quiet_connections_are_pinged() -> None:
    setup = Setup()
    setup.redis.commands.clear()
    setup.advance(3 * REDIS_TIMEOUT)
    assert [c[0] for c in setup.redis.commands] == [b"PING", b"PING"]
    assert setup.backend.connected


def test_password_is_sent_and_a_wrong_one_is_reported() -> None:
    setup = Setup(password=b"s3cret", url="redis://:s3cret@fake:6379/0")
    assert setup.backend.connected
    assert [b"AUTH", b"s3cret"] in setup.redis.commands
    wrong = Setup(password=b"s3cret", url="redis://:nope@fake:6379/0")
    assert not wrong.backend.connected
    assert "WRONGPASS" in wrong.backend.last_error
    assert "nope" not in repr(wrong.backend)
    failure = wrong.server.connect().failure_of(wrong.service.publish("t", 1), PubSubUnavailable)
    assert "WRONGPASS" in failure.value.data


def test_stop_stops_reconnecting() -> None:
    setup = Setup()
    stopped = setup.service.pubsub.stop()
    setup.flush()
    assert stopped.called
    attempts = len(setup.redis.attempts)
    setup.advance(60)
    assert len(setup.redis.attempts) == attempts
    assert not setup.clock.getDelayedCalls()


# -- a real redis-server -------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server on PATH (apt-get install redis-server; .ci/run tries)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def within(d: Deferred[Any], reactor: Any, seconds: float = 10) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


@needs_redis
@pytest_twisted.ensureDeferred
async def test_two_services_share_events_through_redis(redis_server: RedisServer, reactor: Any) -> None:
    """Two instances in one process: each its own service and backend, one Redis."""
    from jsonservice.testing import listen_loopback

    heard: list[Any] = []
    got: Deferred[None] = Deferred()
    listener = JSONService()

    @listener.on_event
    def on_event(topic: str, data: Any) -> None:
        heard.append((topic, data))
        if not got.called:
            got.callback(None)

    services = [JSONService(), JSONService()]
    servers = [listen_loopback(JSONServerFactory(s, pubsub=redis_server.url), reactor) for s in services]
    try:
        first = await within(servers[0].connect(listener), reactor)
        second = await within(servers[1].connect(), reactor)
        for _ in range(100):  # both backends connected
            if all(s.pubsub.backend.connected for s in services):  # type: ignore[attr-defined]
                break
            await deferLater(reactor, 0.05, lambda: None)
        assert await within(first.call("rpc.subscribe", "across"), reactor) is True
        await within(services[1].publish("across", {"from": "second"}), reactor)
        await within(got, reactor)
        assert heard == [("across", {"from": "second"})]
        assert await within(second.call("rpc.ping"), reactor) == "pong"
    finally:
        for server in servers:
            await server.close()


SERVICE = """
import os

from jsonservice import JSONService

service = JSONService()


@service.method
def pid():
    return os.getpid()


@service.method
def say(topic, text):
    "Publish; the reply waits for Redis to take the event (or fails with -32001)."
    return service.publish(topic, {"text": text, "pid": os.getpid()})
"""


def next_event(client: LineClient) -> dict[str, Any]:
    message = client.receive()
    assert message.get("method") == "rpc.event", message
    return message["params"]  # type: ignore[no-any-return]


def say(client: LineClient, topic: str, text: str) -> dict[str, Any]:
    client.send("say", topic, text)
    return client.receive()


@needs_redis
@needs_twistd
def test_twistd_instances_share_events_and_survive_a_redis_restart(
    redis_server: RedisServer, service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    """A subscriber on one twistd, a publisher on another; Redis stopped and restarted mid-stream."""
    started = time.monotonic()
    cwd = service_module(SERVICE, name="pubsvc")
    ports = [free_port(), free_port()]
    procs = [
        start_twistd(cwd, ["--port", str(port), "--service", "pubsvc:service", "--pubsub", redis_server.url],
                     f"twistd{index}.log")
        for index, port in enumerate(ports)
    ]  # fmt: skip
    clients: list[LineClient] = []
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_port(port, proc)
        for index in range(2):
            log = cwd / f"twistd{index}.log"
            wait_for(lambda log=log: "Connected to Redis" in log.read_text(), "Redis", 10)
        subscriber, publisher = LineClient("127.0.0.1", ports[0]), LineClient("127.0.0.1", ports[1])
        clients += [subscriber, publisher]
        assert subscriber.call("rpc.subscribe", "room.1") is True
        assert say(publisher, "room.1", "one")["result"] is None
        assert next_event(subscriber) == {"topic": "room.1", "data": {"text": "one", "pid": procs[1].pid}}

        # Redis goes away: publishing fails at once and clearly; requests are still served.
        redis_server.stop()
        wait_for(lambda: "Lost the connection to Redis" in (cwd / "twistd1.log").read_text(), "the loss", 10)
        reply = say(publisher, "room.1", "lost")
        assert reply["error"]["code"] == -32001, reply
        assert "unreachable" in reply["error"]["data"]
        assert publisher.call("pid") == procs[1].pid
        assert subscriber.call("rpc.subscribe", "room.2") is True  # takes effect once Redis is back

        # Redis is back on the same port: both reconnect, subscriptions are restored.
        redis_server.start()

        def published() -> bool:
            return "result" in say(publisher, "room.2", "back")

        wait_for(published, "publishing to work again", 10)
        first_log = cwd / "twistd0.log"
        wait_for(lambda: "Connected to Redis" in first_log.read_text().split("Lost")[-1], "sub", 10)
        assert say(publisher, "room.1", "after")["result"] is None
        seen = [next_event(subscriber) for _ in range(2)]
        assert {"topic": "room.1", "data": {"text": "after", "pid": procs[1].pid}} in seen
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) in (0, -signal.SIGTERM)
        for index in range(2):
            assert "Traceback" not in (cwd / f"twistd{index}.log").read_text()
        assert time.monotonic() - started < 30
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            kill(proc)


@needs_redis
@needs_twistd
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_share_events_through_redis(
    redis_server: RedisServer, service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    """twistd --workers 2 --pubsub redis://: published through one worker, received through the other."""
    cwd = service_module(SERVICE, name="wpubsvc")
    port = free_port()
    args = ["--workers", "2", "--port", str(port), "--service", "wpubsvc:service"]
    args += ["--pubsub", redis_server.url]
    proc = start_twistd(cwd, [*args, "--shutdown-grace", "2"])
    log = cwd / "twistd.log"
    clients: list[LineClient] = []
    try:
        wait_for(lambda: log.read_text().count("Connected to Redis") >= 2, "2 workers on Redis", 20)
        wait_port(port, proc)
        by_pid: dict[int, LineClient] = {}
        for _ in range(40):
            client = LineClient("127.0.0.1", port)
            clients.append(client)
            by_pid.setdefault(client.call("pid"), client)
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2, "every connection went to one worker"
        assert set(by_pid) == proc_children(proc.pid)
        (_, subscriber), (pub_pid, publisher) = sorted(by_pid.items())
        assert subscriber.call("rpc.subscribe", "w") is True
        assert say(publisher, "w", "across workers")["result"] is None
        assert next_event(subscriber) == {"topic": "w", "data": {"text": "across workers", "pid": pub_pid}}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) in (0, -signal.SIGTERM)
        assert "Traceback" not in log.read_text()
    finally:
        for client in clients:
            client.close()
        kill(proc)
