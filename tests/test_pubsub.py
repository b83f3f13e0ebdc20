"""
Topic subscriptions with the default, in-process backend (issue 14): the
built-in C{rpc.subscribe}/C{rpc.unsubscribe} on the one request path (auth
gate, drain, batches, notifications), C{rpc.event} encoded once per publish,
the authorization hook, the per-connection and per-process bounds, the end
of subscriptions with the connection, and backpressure (a stalled subscriber
neither blocks others nor grows memory; it is dropped-and-counted, then
aborted).  All in memory: the test kit, StringTransport and a Clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python import usage

from jsonservice import CallContext, JSONService, Limits
from jsonservice import pubsub as pubsub_module
from jsonservice.codec import EncodeError
from jsonservice.errors import MessageTooLarge
from jsonservice.limits import MAX_EVENT_BYTES, MAX_TOPIC_LENGTH
from jsonservice.pubsub import InvalidTopic, LocalBackend, PubSub, check_topic, make_backend
from jsonservice.testing import ConnectedPair, MemoryServer

from .reliability_helpers import BufferedTransport, Wire, parse_replies


def event(topic: str, data: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "rpc.event", "params": {"topic": topic, "data": data}}


def events_of(pair: ConnectedPair) -> list[Any]:
    return [m for m in pair.sent_by_server if isinstance(m, dict) and m.get("method") == "rpc.event"]


def chat_service() -> JSONService:
    service = JSONService()

    @service.method(context=True)
    def say(ctx: CallContext, topic: str, text: str) -> Deferred[None]:
        return ctx.publish(topic, {"text": text})

    @service.method(context=True)
    def join(ctx: CallContext, topic: str) -> Deferred[None]:
        return ctx.subscribe(topic)

    @service.method(context=True)
    def login(ctx: CallContext, user: str) -> str:
        ctx.state["user"] = user
        return user

    return service


def error_of(pair: ConnectedPair, d: Deferred[Any]) -> Any:
    return pair.failure_of(d).value


# -- subscribing and receiving -------------------------------------------------


def test_subscribe_publish_unsubscribe() -> None:
    service = chat_service()
    server = MemoryServer(service)
    alice, bob, carol = server.connect(), server.connect(), server.connect()
    assert alice.result_of(alice.client.call("rpc.subscribe", topic="room.lobby")) is True
    assert bob.result_of(bob.client.call("rpc.subscribe", "room.lobby")) is True  # [T] form
    assert bob.result_of(bob.client.call("rpc.subscribe", "room.lobby")) is True  # twice: still one
    assert service.pubsub.subscribers("room.lobby") == 2
    assert carol.result_of(carol.client.call("say", "room.lobby", "hi")) is None
    assert events_of(alice) == events_of(bob) == [event("room.lobby", {"text": "hi"})]
    assert events_of(carol) == []
    # The exact bytes: a notification with no id, compact JSON.
    assert (
        b'{"jsonrpc":"2.0","method":"rpc.event","params":{"topic":"room.lobby","data":{"text":"hi"}}}\n'
        in (alice.raw_sent_by_server)
    )
    assert bob.result_of(bob.client.call("rpc.unsubscribe", topic="room.lobby")) is True
    assert bob.result_of(bob.client.call("rpc.unsubscribe", topic="room.lobby")) is False
    service.publish("room.lobby", [1, 2])
    server.flush()
    assert events_of(alice)[-1] == event("room.lobby", [1, 2])
    assert len(events_of(bob)) == 1
    assert (service.pubsub.published, service.pubsub.delivered) == (2, 3)


def test_a_handler_subscribes_its_caller_without_the_hook() -> None:
    service = chat_service()
    service.authorize_subscribe(lambda ctx, topic: False)
    server = MemoryServer(service)
    pair = server.connect()
    assert pair.result_of(pair.client.call("join", "news")) is None
    service.publish("news", 1)
    server.flush()
    assert events_of(pair) == [event("news", 1)]
    assert error_of(pair, pair.client.call("rpc.subscribe", "other")).code == -32004


def test_the_publisher_gets_its_own_event_before_the_reply() -> None:
    server = MemoryServer(chat_service())
    pair = server.connect()
    pair.result_of(pair.client.call("rpc.subscribe", "t"))
    pair.clear()
    pair.result_of(pair.client.call("say", "t", "me"))
    assert pair.sent_by_server == [event("t", {"text": "me"}), {"jsonrpc": "2.0", "result": None, "id": 2}]


def test_subscribe_as_a_notification_and_in_a_batch() -> None:
    service = chat_service()
    server = MemoryServer(service)
    pair = server.connect()
    pair.client_write(b'{"jsonrpc":"2.0","method":"rpc.subscribe","params":["a"]}\n')
    pair.client_write(
        b'[{"jsonrpc":"2.0","method":"rpc.subscribe","params":["b"],"id":1},'
        b'{"jsonrpc":"2.0","method":"rpc.subscribe","params":["bad topic"],"id":2}]\n'
    )
    server.flush()
    [batch] = [m for m in pair.sent_by_server if isinstance(m, list)]
    assert batch[0] == {"jsonrpc": "2.0", "result": True, "id": 1}
    assert batch[1]["error"]["code"] == -32602
    assert pair.server.subscriptions is not None
    assert pair.server.subscriptions.topics == {"a", "b"}


@pytest.mark.parametrize(
    "params",
    [None, [], ["a", "b"], {"name": "a"}, {"topic": "a", "extra": 1}, [["a"]], [1], [None]],
)
def test_subscribe_params_are_checked(params: Any) -> None:
    server = MemoryServer(chat_service())
    pair = server.connect()
    error = error_of(pair, pair.client.request("rpc.subscribe", params))
    assert error.code == -32602
    assert pair.server.subscriptions is None or not pair.server.subscriptions.topics


@pytest.mark.parametrize(
    "topic",
    ["", "x" * (MAX_TOPIC_LENGTH + 1), "a b", "new\nline", "é", "a*", "room#1", "\x00", "a\u2028b"],
)
def test_bad_topic_names_are_refused(topic: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        check_topic(topic)
    assert info.value.code == -32602
    assert len(str(info.value.data)) < 200  # a huge name is not echoed whole
    service = chat_service()
    with pytest.raises(InvalidTopic):
        service.publish(topic, 1)
    assert service.pubsub.published == 0


@pytest.mark.parametrize(
    "topic", ["a", "x" * MAX_TOPIC_LENGTH, "room.lobby", "user:42/inbox", "orders-eu_west"]
)
def test_good_topic_names(topic: str) -> None:
    assert check_topic(topic) == topic


def test_publish_refuses_what_is_not_json_or_too_large() -> None:
    service = JSONService()
    with pytest.raises(EncodeError):
        service.publish("t", {1, 2})
    with pytest.raises(EncodeError):
        service.publish("t", float("nan"))
    with pytest.raises(MessageTooLarge) as info:
        service.publish("t", "x" * MAX_EVENT_BYTES)
    assert info.value.data["max_event_bytes"] == MAX_EVENT_BYTES
    assert service.pubsub.published == 0


def test_each_event_is_encoded_once_for_all_subscribers(monkeypatch: pytest.MonkeyPatch) -> None:
    service = chat_service()
    server = MemoryServer(service)
    pairs = [server.connect() for _ in range(5)]
    for pair in pairs:
        pair.result_of(pair.client.call("rpc.subscribe", "fan"))
    encoded: list[bytes] = []
    real = pubsub_module.dumps_line

    def counting(value: Any) -> bytes:
        line = real(value)
        encoded.append(line)
        return line

    monkeypatch.setattr(pubsub_module, "dumps_line", counting)
    written: list[bytes] = []
    for pair in pairs:
        # (Watched at the transport: a compiled core's methods cannot be replaced.)
        transport = pair.server.transport
        monkeypatch.setattr(
            transport, "write", lambda data, w=written, real=transport.write: (w.append(data), real(data))
        )
    service.publish("fan", {"n": 1})
    assert len(encoded) == 1
    assert len(written) == 5
    assert written[0] == encoded[0]
    assert all(line is written[0] for line in written)  # one bytes object for all


# -- who may subscribe ------------------------------------------------------------


def test_unauthenticated_peers_cannot_subscribe() -> None:
    service = chat_service()
    server = MemoryServer(service, auth_token="s3cret")
    pair = server.connect()
    error = error_of(pair, pair.client.call("rpc.subscribe", "news"))
    assert error.code == -32004
    assert service.pubsub.subscriptions == 0
    assert pair.result_of(pair.client.call("rpc.authenticate", token="s3cret")) is True
    assert pair.result_of(pair.client.call("rpc.subscribe", "news")) is True


def test_the_hook_sees_the_call_context_and_decides() -> None:
    service = chat_service()
    seen: list[tuple[Any, ...]] = []

    @service.authorize_subscribe
    def may_subscribe(ctx: CallContext, topic: str) -> bool:
        seen.append((ctx.method, ctx.state.get("user"), ctx.peer.host, topic))
        return topic.startswith("public.") or topic == f"user.{ctx.state.get('user')}"

    server = MemoryServer(service)
    pair = server.connect()
    assert pair.result_of(pair.client.call("rpc.subscribe", "public.news")) is True
    error = error_of(pair, pair.client.call("rpc.subscribe", "user.bob"))
    assert (error.code, error.data) == (-32004, "not allowed to subscribe to 'user.bob'")
    pair.result_of(pair.client.call("login", "bob"))
    assert pair.result_of(pair.client.call("rpc.subscribe", "user.bob")) is True
    assert seen == [
        ("rpc.subscribe", None, "127.0.0.1", "public.news"),
        ("rpc.subscribe", None, "127.0.0.1", "user.bob"),
        ("rpc.subscribe", "bob", "127.0.0.1", "user.bob"),
    ]
    # Already subscribed: the hook is not asked again.
    pair.result_of(pair.client.call("rpc.subscribe", "user.bob"))
    assert len(seen) == 3


def test_the_hook_may_answer_later_or_refuse_with_its_own_error() -> None:
    from jsonservice import RPCError

    service = chat_service()
    verdicts: dict[str, Deferred[bool]] = {}

    @service.authorize_subscribe
    def check(ctx: CallContext, topic: str) -> Any:
        if topic == "secret":
            raise RPCError(4001, "needs a subscription plan", {"plan": "pro"})
        if topic.startswith("async"):
            return _async_verdict(topic)
        verdicts[topic] = Deferred()
        return verdicts[topic]

    server = MemoryServer(service)
    pair = server.connect()
    d = pair.client.call("rpc.subscribe", "later")
    server.flush()
    assert not d.called
    verdicts["later"].callback(True)
    server.flush()
    assert pair.result_of(d) is True
    assert error_of(pair, pair.client.call("rpc.subscribe", "secret")).to_dict() == {
        "code": 4001,
        "message": "needs a subscription plan",
        "data": {"plan": "pro"},
    }
    assert pair.result_of(pair.client.call("rpc.subscribe", "async.ok")) is True
    assert error_of(pair, pair.client.call("rpc.subscribe", "async.no")).code == -32004
    # Refused later, or the connection gone meanwhile: nothing is left subscribed.
    d = pair.client.call("rpc.subscribe", "slow")
    server.flush()
    pair.disconnect()
    verdicts["slow"].callback(True)
    assert service.pubsub.subscriptions == 0


async def _async_verdict(topic: str) -> bool:
    return topic == "async.ok"


def test_subscribe_while_draining_is_refused() -> None:
    server = MemoryServer(chat_service())
    pair = server.connect()
    pair.server.draining = True
    pair.server._update_gate()
    assert error_of(pair, pair.client.call("rpc.subscribe", "t")).code == -32800


def test_dispatch_without_a_connection() -> None:
    from jsonservice import InvalidRequest

    with pytest.raises(InvalidRequest):
        JSONService().dispatch("rpc.subscribe", ["t"])


# -- bounds ---------------------------------------------------------------------------


def test_subscriptions_per_connection_are_bounded() -> None:
    service = chat_service()
    server = MemoryServer(service, max_subscriptions=3)
    breaches: list[str] = []
    server.factory.add_observer(_Breaches(breaches))
    pair = server.connect()
    # One line asking for 50 topics: 3 are granted, the rest answered -32001.
    batch = b",".join(
        b'{"jsonrpc":"2.0","method":"rpc.subscribe","params":["t%d"],"id":%d}' % (i, i) for i in range(50)
    )
    pair.client_write(b"[" + batch + b"]\n")
    server.flush()
    [replies] = [m for m in pair.sent_by_server if isinstance(m, list)]
    assert [r.get("result") for r in replies[:3]] == [True, True, True]
    assert {r["error"]["code"] for r in replies[3:]} == {-32001}
    assert replies[3]["error"]["data"] == {"max_subscriptions": 3}
    assert service.pubsub.subscriptions == 3
    assert breaches.count("max_subscriptions") == 47
    # Leaving one makes room for another.
    pair.result_of(pair.client.call("rpc.unsubscribe", "t0"))
    assert pair.result_of(pair.client.call("rpc.subscribe", "t9")) is True


def test_topics_per_process_are_bounded() -> None:
    service = JSONService()
    service.pubsub.max_topics = 2
    server = MemoryServer(service)
    pair, other = server.connect(), server.connect()
    pair.result_of(pair.client.call("rpc.subscribe", "a"))
    pair.result_of(pair.client.call("rpc.subscribe", "b"))
    assert error_of(pair, pair.client.call("rpc.subscribe", "c")).data == {"max_topics": 2}
    assert other.result_of(other.client.call("rpc.subscribe", "a")) is True  # an existing topic
    pair.result_of(pair.client.call("rpc.unsubscribe", "b"))
    assert other.result_of(other.client.call("rpc.subscribe", "c")) is True


def test_limits_and_options() -> None:
    from jsonservice.tap import Options

    with pytest.raises(ValueError, match="max_subscriptions"):
        Limits(max_subscriptions=0)
    options = Options()
    options.parseOptions(["--max-subscriptions", "7", "--max-event-backlog", "4096"])
    assert options["limits"].max_subscriptions == 7
    assert options["limits"].max_event_backlog == 4096
    assert options["pubsub"] is None
    for bad in ("mqtt://x", "redis://", "redis://h:99999/0", "redis://h:1/x"):
        with pytest.raises(usage.UsageError, match="--pubsub"):
            Options().parseOptions(["--pubsub", bad])


# -- the end of a connection ----------------------------------------------------------


class RecordingBackend(LocalBackend):
    """The in-process backend, recording what the hub asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def subscribe(self, topic: str) -> None:
        self.calls.append(("subscribe", topic))

    def unsubscribe(self, topic: str) -> None:
        self.calls.append(("unsubscribe", topic))


def test_subscriptions_end_with_the_connection() -> None:
    backend = RecordingBackend()
    service = JSONService(pubsub=backend)
    server = MemoryServer(service)
    a, b = server.connect(), server.connect()
    for topic in ("x", "y"):
        a.result_of(a.client.call("rpc.subscribe", topic))
    b.result_of(b.client.call("rpc.subscribe", "x"))
    # Every join asks the backend (Redis subscribes each channel once, and
    # makes a joiner wait for its confirmation); leaving tells it only when
    # the last local subscriber of a topic is gone.
    assert backend.calls == [("subscribe", "x"), ("subscribe", "y"), ("subscribe", "x")]
    backend.calls.clear()
    a.disconnect()
    assert backend.calls == [("unsubscribe", "y")]
    assert (service.pubsub.subscriptions, service.pubsub.topics) == (1, 1)
    b.disconnect()
    assert backend.calls == [("unsubscribe", "y"), ("unsubscribe", "x")]
    assert service.pubsub.subscriptions == service.pubsub.topics == 0
    assert service.publish("x", 1).called  # nobody left: nothing written


def test_a_handler_subscribing_after_its_connection_closed_leaves_nothing() -> None:
    service = JSONService()
    later: Deferred[None] = Deferred()

    @service.method(context=True)
    def join_later(ctx: CallContext) -> None:
        # Subscribes once something else is ready, after the reply (and the close).
        later.addCallback(lambda _: ctx.subscribe("late"))

    server = MemoryServer(service)
    pair = server.connect()
    pair.client.call("join_later")
    server.flush()
    pair.disconnect()
    later.callback(None)
    assert service.pubsub.subscriptions == service.pubsub.topics == 0


def test_backends_from_specs() -> None:
    assert isinstance(make_backend(None), LocalBackend)
    assert isinstance(make_backend("local"), LocalBackend)
    backend = RecordingBackend()
    assert make_backend(backend) is backend
    hub = PubSub()
    hub.use("redis://127.0.0.1:6379/2")
    assert hub.backend.description == "redis://127.0.0.1:6379/2"
    hub.use("redis://127.0.0.1:6379/2")  # the same again: kept
    hub._starts = 1
    with pytest.raises(ValueError, match="already publishes"):
        hub.use("redis://127.0.0.1:6379/3")


# -- backpressure -------------------------------------------------------------------


class UnsentTransport(BufferedTransport):
    """A L{BufferedTransport} that also tells how much is unsent, as Twisted's TCP one does."""

    offset = 0
    _tempDataLen = 0

    @property
    def dataBuffer(self) -> bytes:
        return self.io.getvalue()


class _Breaches:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def request_done(self, *args: Any) -> None:
        pass

    def limit_breached(self, proto: Any, limit: str) -> None:
        self.into.append(limit)


def subscriber(service: JSONService, **limits: Any) -> Wire:
    wire = Wire(service, UnsentTransport(), **limits)
    breaches: list[str] = []
    wire.breaches = breaches  # type: ignore[attr-defined]
    wire.proto._observers = (_Breaches(breaches),)
    assert wire.exchange(b'{"jsonrpc":"2.0","method":"rpc.subscribe","params":["feed"],"id":1}\n') == [
        {"jsonrpc": "2.0", "result": True, "id": 1}
    ]
    return wire


def test_a_stalled_subscriber_drops_events_and_is_aborted_others_are_served() -> None:
    service = JSONService()
    limits = {"max_event_backlog": 200_000, "max_unsent": 1_000_000, "write_stall_timeout": 30}
    stalled, healthy = subscriber(service, **limits), subscriber(service, **limits)
    payload = "x" * 1000
    read = []
    for n in range(1000):  # ~1 MB of events, five times the backlog
        d = service.publish("feed", [n, payload])
        assert d.called  # the publisher never waits
        read.append(healthy.transport.peer_reads())  # type: ignore[attr-defined]
    transport: UnsentTransport = stalled.transport  # type: ignore[assignment]
    # Memory stays bounded: the stalled connection holds at most the backlog.
    assert transport.most_unsent <= 200_000
    subs = stalled.proto.subscriptions
    assert subs is not None
    assert 790 <= subs.dropped <= 900
    assert service.pubsub.dropped == subs.dropped
    assert service.pubsub.delivered == 2000 - subs.dropped
    assert stalled.breaches.count("max_event_backlog") == 1  # type: ignore[attr-defined]
    # The healthy subscriber got every event, in order.
    assert [m["params"]["data"][0] for m in parse_replies(b"".join(read))] == list(range(1000))
    # Still stalled after the write-stall timeout: aborted.
    stalled.clock.advance(29)
    assert not transport.aborted
    stalled.clock.advance(1)
    assert transport.aborted


def test_a_subscriber_that_catches_up_gets_events_again() -> None:
    service = JSONService()
    wire = subscriber(service, max_event_backlog=10_000, max_unsent=100_000, write_stall_timeout=30)
    transport: UnsentTransport = wire.transport  # type: ignore[assignment]
    transport.bufferSize = 1000  # the high-water mark, below the backlog
    for n in range(100):
        service.publish("feed", ["y" * 200, n])
    received = [m["params"]["data"][1] for m in wire.replies()]  # peer_reads: drained
    transport.producer.resumeProducing()  # type: ignore[union-attr]
    assert received == list(range(len(received)))
    assert 30 <= len(received) < 40  # ~10 kB of ~280-byte events
    wire.clock.advance(29)
    service.publish("feed", ["late", 100])
    assert [m["params"]["data"] for m in wire.replies()] == [["late", 100]]
    wire.clock.advance(10)
    assert not transport.aborted  # draining cancelled the stall timer
    assert wire.breaches.count("max_event_backlog") == 1  # type: ignore[attr-defined]


def test_a_backlog_below_the_transports_mark_does_not_abort_a_reader() -> None:
    """
    Events dropped below the transport's high-water mark (no pause, so no
    resumeProducing later): a subscriber that then reads is not aborted.
    """
    service = JSONService()
    wire = subscriber(service, max_event_backlog=1000, write_stall_timeout=30)
    for n in range(20):
        service.publish("feed", ["v" * 100, n])
    assert service.pubsub.dropped > 0
    assert not wire.proto._watch.backed_up  # 64 KiB mark not reached
    assert len(wire.replies()) < 20  # the peer reads what came
    wire.clock.advance(31)
    assert not wire.transport.aborted  # type: ignore[attr-defined]
    service.publish("feed", ["after", 20])
    assert [m["params"]["data"] for m in wire.replies()] == [["after", 20]]
    # Caught up before the timer: it is cancelled.
    for n in range(20):
        service.publish("feed", ["w" * 100, n])
    wire.replies()
    service.publish("feed", ["again", 21])
    assert not wire.clock.getDelayedCalls() or all(
        call.func.__name__ != "_stalled" for call in wire.clock.getDelayedCalls()
    )


def test_a_publish_storm_from_a_client_with_a_stalled_subscriber() -> None:
    """5,000 pipelined publishing requests: all answered, the stalled subscriber stays bounded."""
    service = chat_service()
    stalled = subscriber(service, max_event_backlog=100_000, write_stall_timeout=30)
    publisher = Wire(service)
    request = b'{"jsonrpc":"2.0","method":"say","params":["feed","%s"],"id":%d}\n'
    publisher.feed(b"".join(request % (b"x" * 1000, n) for n in range(5000)))
    replies = publisher.replies()
    assert [r["id"] for r in replies] == list(range(5000))
    assert all(r["result"] is None for r in replies)
    assert stalled.transport.most_unsent <= 100_000  # type: ignore[attr-defined]
    assert service.pubsub.dropped >= 4900
    stalled.clock.advance(30)
    assert stalled.transport.aborted  # type: ignore[attr-defined]


def test_events_never_push_output_past_max_unsent() -> None:
    service = JSONService()
    wire = subscriber(service, max_event_backlog=10**9, max_unsent=50_000)
    for _ in range(200):
        service.publish("feed", "z" * 1000)
    assert wire.transport.most_unsent <= 50_000  # type: ignore[attr-defined]


def test_a_transport_that_cannot_tell_its_backlog_gets_no_events_while_backed_up() -> None:
    service = JSONService()
    wire = Wire(service, BufferedTransport())
    wire.exchange(b'{"jsonrpc":"2.0","method":"rpc.subscribe","params":["feed"],"id":1}\n')
    for _ in range(200):
        service.publish("feed", "w" * 1000)
    assert wire.transport.most_unsent < 2**16 + 2000  # type: ignore[attr-defined]
    assert service.pubsub.dropped > 100


def test_metrics_count_events() -> None:
    pytest.importorskip("prometheus_client")
    from jsonservice.metrics import PrometheusMetrics

    service = chat_service()
    server = MemoryServer(service)
    metrics = PrometheusMetrics()
    metrics.watch(server.factory)
    pair = server.connect()
    pair.result_of(pair.client.call("rpc.subscribe", "m"))
    pair.result_of(pair.client.call("say", "m", "one"))
    service.pubsub.dropped = 4  # as if a slow subscriber had missed four
    text = metrics.render().decode()
    for line in (
        "jsonservice_events_published_total 1.0",
        "jsonservice_events_delivered_total 1.0",
        "jsonservice_events_dropped_total 4.0",
        "jsonservice_subscriptions 1.0",
        "jsonservice_topics 1.0",
        "jsonservice_pubsub_up 1.0",
        'jsonservice_requests_total{method="rpc.subscribe",outcome="ok"} 1.0',
    ):
        assert line in text, line


def test_publish_from_a_timer_with_no_connection() -> None:
    service = JSONService()
    clock = Clock()
    clock.callLater(1, service.publish, "tick", 1)
    clock.advance(1)
    assert service.pubsub.published == 1
    assert service.publish("tick", 2).called


def test_workers_without_redis_are_warned_about() -> None:
    from twisted.logger import globalLogPublisher

    from jsonservice.tap import Options, makeService

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        workers = ["--workers", "2", "--port", "0"]
        for args in (workers, [*workers, "--pubsub", "local"]):
            options = Options()
            options.parseOptions(args)
            makeService(options)
        options = Options()
        options.parseOptions(["--workers", "2", "--port", "0", "--pubsub", "redis://127.0.0.1:1/0"])
        makeService(options)
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if "without --pubsub redis" in str(e.get("log_format", ""))]
    assert len(warnings) == 2


# -- the command line ------------------------------------------------------------------

CLI_SERVICE = """
from jsonservice import JSONService

service = JSONService()


@service.method
def post(topic, text):
    return service.publish(topic, {"text": text})
"""


def test_cli_subscribe_prints_each_event(service_module: Any, free_port: Any) -> None:
    """`jsonservice subscribe TOPIC --count N`: one JSON line per event, then exit 0."""
    import subprocess
    import sys
    from pathlib import Path

    from .ops_helpers import LineClient, kill, start_twistd, twistd_env, wait_port

    cwd = service_module(CLI_SERVICE, name="clisvc")
    port = free_port()
    server = start_twistd(cwd, ["--port", str(port), "--service", "clisvc:service"])
    cli = None
    try:
        wait_port(port, server)
        script = Path(sys.executable).parent / "jsonservice"
        cli = subprocess.Popen(
            [str(script), "subscribe", "--connect", f"tcp:127.0.0.1:{port}", "a.b", "c", "--count", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=twistd_env(),
        )
        assert cli.stderr is not None
        assert cli.stderr.readline() == b"subscribed to a.b, c\n"
        publisher = LineClient("127.0.0.1", port)
        for topic, text in (("a.b", "one"), ("other", "not this"), ("c", "two")):
            assert publisher.call("post", topic, text) is None
        publisher.close()
        out, _ = cli.communicate(timeout=10)
        assert cli.returncode == 0
        assert out.decode().splitlines() == [
            '{"topic":"a.b","data":{"text":"one"}}',
            '{"topic":"c","data":{"text":"two"}}',
        ]
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.wait()
        kill(server)
