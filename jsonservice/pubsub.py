"""
Topic subscriptions: the built-in methods C{rpc.subscribe} and
C{rpc.unsubscribe}, C{rpc.event} notifications, and
L{JSONService.publish<jsonservice.service.JSONService.publish>}.

A service owns one L{PubSub} hub.  Its subscribers are connections; its
L{Backend} carries each event from C{publish} to every process that has
subscribers of the topic: L{LocalBackend} (the default) delivers in this
process, L{RedisBackend<jsonservice.redis.RedisBackend>} through Redis
pub/sub, so that events cross C{--workers} and instances.

An event is encoded once per publish, as the whole notification line::

    {"jsonrpc":"2.0","method":"rpc.event","params":{"topic":"news","data":...}}

and that one C{bytes} is written to every subscriber (and, with Redis, is
the message Redis carries): nothing is encoded per subscriber.

Backpressure: an event is never queued without bound.  A subscriber whose
unsent output would go over the C{max_event_backlog} limit (and never over
C{max_unsent}) with it does not get it: the event is dropped for that
connection and counted (L{PubSub.dropped}, C{Subscriptions.dropped}, the
metrics); if its output stays stalled for the
C{write_stall_timeout}, the connection is aborted.  Publishers and other
subscribers never wait for a slow one.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from .codec import dumps_line
from .errors import InvalidParams, InvalidRequest, MessageTooLarge, ServerBusy, Unauthorized
from .limits import MAX_EVENT_BYTES, MAX_TOPIC_LENGTH, MAX_TOPICS, TOPIC_CHARACTERS
from .replies import quote

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from .protocol import JSONProtocol
    from .service import CallContext

__all__ = [
    "EVENT_METHOD",
    "SUBSCRIBE_METHOD",
    "UNSUBSCRIBE_METHOD",
    "Backend",
    "InvalidTopic",
    "LocalBackend",
    "PubSub",
    "PubSubUnavailable",
    "Subscriptions",
    "check_topic",
    "event_line",
    "make_backend",
]

#: The built-in method that subscribes the calling connection to a topic:
#: C{{"jsonrpc": "2.0", "method": "rpc.subscribe", "params": {"topic": "news"}, "id": 1}}
#: (or C{"params": ["news"]}); answers C{true}.
SUBSCRIBE_METHOD: Final = "rpc.subscribe"
#: The built-in method that ends one subscription; answers whether there was one.
UNSUBSCRIBE_METHOD: Final = "rpc.unsubscribe"
#: The notification each subscriber gets:
#: C{{"jsonrpc": "2.0", "method": "rpc.event", "params": {"topic": T, "data": D}}}.
EVENT_METHOD: Final = "rpc.event"

_TOPIC: Final = re.compile(rf"[A-Za-z0-9{re.escape(TOPIC_CHARACTERS)}]{{1,{MAX_TOPIC_LENGTH}}}\Z")

#: What an authorization hook is: C{check(ctx, topic)} returns L{True} to
#: allow (anything else refuses with -32004), a L{Deferred} or coroutine of
#: that, or raises an L{RPCError<jsonservice.errors.RPCError>} to refuse with it.
SubscribeCheck = Callable[["CallContext", str], Any]

_log = Logger(namespace="jsonservice.pubsub")


class PubSubUnavailable(ServerBusy):
    """
    C{publish} could not hand the event to its backend: Redis is down or
    unreachable, or too many events await its reply (-32001 Server busy, as
    any limit of the server; C{data} says which).  The event is not delivered.
    """


class InvalidTopic(InvalidParams):
    """A topic name that is not a string of 1 to L{MAX_TOPIC_LENGTH} allowed characters (-32602)."""


def check_topic(topic: object) -> str:
    """
    Return C{topic} if it is a valid topic name: 1 to L{MAX_TOPIC_LENGTH}
    ASCII letters, digits and L{TOPIC_CHARACTERS}.

    @raise InvalidTopic: it is not; C{data} says why.
    """
    if not isinstance(topic, str):
        raise InvalidTopic(data=f"a topic is a string, not {type(topic).__name__}")
    if _TOPIC.match(topic):
        return topic
    if not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(data=f"a topic is 1 to {MAX_TOPIC_LENGTH} characters long, not {len(topic)}")
    raise InvalidTopic(
        data=f"a topic is made of ASCII letters, digits and {TOPIC_CHARACTERS!r}: {quote(topic, 60)}"
    )


def event_line(topic: str, data: Any) -> bytes:
    """
    The C{rpc.event} notification line for C{data} on C{topic}, encoded once.

    @raise EncodeError: C{data} is not JSON-serializable.
    @raise MessageTooLarge: the line is over L{MAX_EVENT_BYTES}.
    """
    encoded = dumps_line({"jsonrpc": "2.0", "method": EVENT_METHOD, "params": {"topic": topic, "data": data}})
    # An exact-size copy: an orjson output holds ~4 KiB of heap while it lives
    # (DESIGN §8), and events live on in the buffers of slow subscribers and in
    # the Redis backlog; retaining the outputs themselves is also ~5x slower.
    line = bytes(memoryview(encoded))
    if len(line) > MAX_EVENT_BYTES:
        raise MessageTooLarge(data={"max_event_bytes": MAX_EVENT_BYTES, "size": len(line)})
    return line


class Backend(typing.Protocol):
    """
    What carries events from C{publish} to the processes with subscribers:
    L{LocalBackend} or L{RedisBackend<jsonservice.redis.RedisBackend>}.
    """

    #: Where events go, for logs and errors (no password in it).
    description: str

    def attach(self, hub: PubSub) -> None:
        """Deliver received events to C{hub} (L{PubSub.deliver})."""

    def start(self, reactor: IReactorTime) -> None:
        """Connect (if there is anything to connect to)."""

    def stop(self) -> Deferred[None]:
        """Disconnect; fires once done."""

    def publish(self, topic: str, line: bytes) -> Deferred[None]:
        """
        Carry the encoded event C{line} to every subscriber of C{topic}.
        Fails with L{PubSubUnavailable}
        when it cannot.
        """

    def subscribe(self, topic: str) -> Deferred[None] | None:
        """
        This process wants the events of C{topic} (called for every new
        local subscriber; idempotent).  L{None} when done at once, else a
        Deferred firing once it is in effect.
        """

    def unsubscribe(self, topic: str) -> None:
        """This process has no subscriber of C{topic} any more."""


class LocalBackend:
    """The default backend: events reach the subscribers of this process only; no setup."""

    description = "in-process"

    def __init__(self) -> None:
        self._hub: PubSub | None = None

    def attach(self, hub: PubSub) -> None:
        """Deliver to C{hub}."""
        self._hub = hub

    def start(self, reactor: IReactorTime) -> None:
        """Nothing to connect."""

    def stop(self) -> Deferred[None]:
        """Nothing to disconnect."""
        return succeed(None)

    def publish(self, topic: str, line: bytes) -> Deferred[None]:
        """Deliver at once, in this process."""
        if self._hub is not None:
            self._hub.deliver(topic, line)
        return succeed(None)

    def subscribe(self, topic: str) -> None:
        """Nothing to do: every local subscriber is reached."""

    def unsubscribe(self, topic: str) -> None:
        """Nothing to do."""


def make_backend(spec: Backend | str | None) -> Backend:
    """
    A backend from what C{--pubsub} or a C{pubsub=} argument gives: L{None}
    or C{"local"} for L{LocalBackend}, C{"redis://host:port/db"} for
    L{RedisBackend<jsonservice.redis.RedisBackend>}, or a backend as is.

    @raise ValueError: an unknown scheme or a bad Redis URL.
    """
    if spec is None or spec == "local":
        return LocalBackend()
    if isinstance(spec, str):
        if spec.startswith("redis://"):
            from .redis import RedisBackend

            return RedisBackend(spec)
        raise ValueError(f"expected 'local' or redis://host:port/db, not {quote(spec, 60)}")
    return spec


class Subscriptions:
    """
    One connection's subscriptions (L{JSONProtocol.subscriptions
    <jsonservice.protocol.JSONProtocol.subscriptions>}); they end with it.

    @ivar topics: the topics subscribed to.
    @ivar dropped: events not sent to this connection because its output
        was backed up past C{max_event_backlog}.
    """

    __slots__ = ("closed", "dropped", "hub", "lagging", "proto", "topics")

    def __init__(self, hub: PubSub, proto: JSONProtocol) -> None:
        self.hub = hub
        self.proto = proto
        self.topics: set[str] = set()
        self.dropped = 0
        self.lagging = False
        self.closed = False

    def close(self) -> None:
        """The connection is gone: leave every topic."""
        self.closed = True
        for topic in list(self.topics):
            self.hub._leave(self, topic)

    def __repr__(self) -> str:
        return f"<Subscriptions {len(self.topics)} topic(s), {self.dropped} dropped>"


class PubSub:
    """
    A service's topics: who subscribes to what in this process, the
    authorization hook, and the backend that carries events.

    @ivar backend: the L{Backend} in use.
    @ivar check: the authorization hook (see L{SubscribeCheck}), or L{None}: any
        connection that may call methods may subscribe to any topic.
    @ivar published: events published from this process.
    @ivar delivered: events written to subscribers of this process.
    @ivar dropped: events not written to a subscriber whose output was backed up.
    """

    def __init__(self, backend: Backend | str | None = None, *, max_topics: int = MAX_TOPICS) -> None:
        """
        @param backend: see L{make_backend}.
        @param max_topics: distinct topics with subscribers in this process;
            a subscription to one more gets -32001.
        """
        self.max_topics = max_topics
        self._topics: dict[str, dict[Subscriptions, None]] = {}
        self.check: SubscribeCheck | None = None
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self._starts = 0
        self.backend: Backend = make_backend(backend)
        self.backend.attach(self)

    # -- configuration -----------------------------------------------------

    def use(self, backend: Backend | str) -> None:
        """
        Carry events through C{backend} from now on (before any start; see
        L{make_backend}).  Giving again the Redis URL already in use is a no-op.

        @raise ValueError: already started with another backend.
        """
        if isinstance(backend, str) and backend == self.backend.description:
            return
        if self._starts:
            raise ValueError(f"this service already publishes through {self.backend.description}")
        self.backend = make_backend(backend)
        self.backend.attach(self)

    def start(self, reactor: IReactorTime) -> None:
        """Start the backend (counted: each L{start} needs a L{stop})."""
        self._starts += 1
        if self._starts == 1:
            self.backend.start(reactor)

    def stop(self) -> Deferred[None]:
        """Stop the backend once every L{start} has had its L{stop}."""
        if self._starts == 0:
            return succeed(None)
        self._starts -= 1
        return self.backend.stop() if self._starts == 0 else succeed(None)

    @property
    def topics(self) -> int:
        """Topics with at least one subscriber in this process."""
        return len(self._topics)

    @property
    def subscriptions(self) -> int:
        """Subscriptions in this process (a connection and a topic each)."""
        return sum(len(members) for members in self._topics.values())

    def subscribers(self, topic: str) -> int:
        """How many connections of this process subscribe to C{topic}."""
        return len(self._topics.get(topic, ()))

    # -- publishing ---------------------------------------------------------

    def publish(self, topic: str, data: Any) -> Deferred[None]:
        """
        Send C{data} to every subscriber of C{topic}, in every process the
        backend reaches.  The event is encoded here, once.

        @return: a Deferred that fires once the backend took the event (at
            once in process), or fails with L{PubSubUnavailable} (Redis down
            or backlogged).
        @raise InvalidTopic: C{topic} is not a valid topic name.
        @raise EncodeError: C{data} is not JSON-serializable.
        @raise MessageTooLarge: the event is over L{MAX_EVENT_BYTES}.
        """
        line = event_line(check_topic(topic), data)
        self.published += 1
        return self.backend.publish(topic, line)

    def deliver(self, topic: str, line: bytes) -> int:
        """
        Write the event C{line} to every subscriber of C{topic} in this
        process, dropping it (and counting) for those backed up.

        @return: how many it was written to.
        """
        members = self._topics.get(topic)
        if not members:
            return 0
        size = len(line)
        sent = dropped = 0
        # A copy: a write may end in a close that unsubscribes.
        for subs in list(members):
            proto = subs.proto
            watch = proto._watch
            if not watch.room_for(size, proto.limits.max_event_backlog):
                dropped += 1
                subs.dropped += 1
                if not subs.lagging:
                    # Counted once per episode: a storm would flood the request log.
                    subs.lagging = True
                    proto._breached("max_event_backlog")
                watch.lagging()
                continue
            if subs.lagging:
                subs.lagging = False
                watch.caught_up()
            proto._core.write(line)
            sent += 1
        self.delivered += sent
        self.dropped += dropped
        return sent

    # -- subscribing ----------------------------------------------------------

    def subscribe(self, proto: JSONProtocol, topic: str) -> Deferred[None]:
        """
        Subscribe connection C{proto} to C{topic}, as a handler decides
        (no authorization hook; the C{max_subscriptions} limit applies).

        @raise InvalidTopic: not a valid topic name.
        @raise ServerBusy: the connection or the process has too many.
        """
        result = self._join(self._subscriptions(proto), check_topic(topic))
        return result if isinstance(result, Deferred) else succeed(None)

    def unsubscribe(self, proto: JSONProtocol, topic: str) -> bool:
        """End C{proto}'s subscription to C{topic}; whether there was one."""
        subs = proto.subscriptions
        if subs is None or topic not in subs.topics:
            return False
        self._leave(subs, topic)
        return True

    def subscribe_responder(self, params: Any, id_: Any, owner: Any) -> Any:
        """The responder of C{rpc.subscribe} (on the one request path, behind the auth gate)."""
        topic = _topic_param(params, SUBSCRIBE_METHOD)
        proto = _connection(owner)
        subs = self._subscriptions(proto)
        if topic in subs.topics:
            return True
        self._check_room(subs)
        check = self.check
        if check is None:
            return self._joined(subs, topic)
        from .service import CallContext

        verdict = check(CallContext(proto, id_, SUBSCRIBE_METHOD), topic)
        if verdict.__class__ is CoroutineType:
            verdict = Deferred.fromCoroutine(verdict)
        if isinstance(verdict, Deferred):
            return verdict.addCallback(self._allowed, subs, topic)
        return self._allowed(verdict, subs, topic)

    def unsubscribe_responder(self, params: Any, id_: Any, owner: Any) -> bool:
        """The responder of C{rpc.unsubscribe}: whether there was such a subscription."""
        topic = _topic_param(params, UNSUBSCRIBE_METHOD)
        return self.unsubscribe(_connection(owner), topic)

    def _subscriptions(self, proto: JSONProtocol) -> Subscriptions:
        subs = proto.subscriptions
        if subs is None:
            subs = proto.subscriptions = Subscriptions(self, proto)
        return subs

    def _allowed(self, verdict: Any, subs: Subscriptions, topic: str) -> Any:
        if verdict is not True:
            raise Unauthorized(data=f"not allowed to subscribe to {quote(topic, 60)}")
        if subs.closed or topic in subs.topics:
            return True  # gone meanwhile (nobody reads the reply), or subscribed twice at once
        self._check_room(subs)
        return self._joined(subs, topic)

    def _joined(self, subs: Subscriptions, topic: str) -> Any:
        pending = self._join(subs, topic)
        return True if pending is None else pending.addCallback(lambda _: True)

    def _check_room(self, subs: Subscriptions) -> None:
        limit = subs.proto.limits.max_subscriptions
        if len(subs.topics) >= limit:
            subs.proto._breached("max_subscriptions")
            raise ServerBusy(data={"max_subscriptions": limit})

    def _join(self, subs: Subscriptions, topic: str) -> Deferred[None] | None:
        if subs.proto._closed:
            # A handler that subscribes after its connection closed: nothing
            # would ever end that subscription.
            subs.closed = True
            return None
        if topic in subs.topics:
            return None
        self._check_room(subs)
        members = self._topics.get(topic)
        if members is None:
            if len(self._topics) >= self.max_topics:
                subs.proto._breached("max_topics")
                raise ServerBusy(data={"max_topics": self.max_topics})
            members = self._topics[topic] = {}
        members[subs] = None
        subs.topics.add(topic)
        return self.backend.subscribe(topic)

    def _leave(self, subs: Subscriptions, topic: str) -> None:
        subs.topics.discard(topic)
        members = self._topics.get(topic)
        if members is None:
            return
        members.pop(subs, None)
        if not members:
            del self._topics[topic]
            self.backend.unsubscribe(topic)

    def __repr__(self) -> str:
        return f"<PubSub {self.backend.description}: {self.topics} topic(s)>"


def _topic_param(params: Any, method: str) -> str:
    """The topic of C{{"topic": T}} or C{[T]}, checked."""
    if params.__class__ is dict and len(params) == 1 and "topic" in params:
        return check_topic(params["topic"])
    if params.__class__ is list and len(params) == 1:
        return check_topic(params[0])
    raise InvalidParams(data=f'{method} takes {{"topic": TOPIC}} or [TOPIC]')


def _connection(owner: Any) -> JSONProtocol:
    if owner is None or not hasattr(owner, "subscriptions"):
        raise InvalidRequest(data="subscriptions need a connection")
    return owner  # type: ignore[no-any-return]
