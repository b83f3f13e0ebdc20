"""
The Redis pub/sub backend (C{--pubsub redis://host:port/db}): events cross
C{--workers} and instances through Redis, the fan-out engine deployments
already run.

It speaks the few commands it needs (C{AUTH}, C{PUBLISH}, C{SUBSCRIBE},
C{UNSUBSCRIBE}, C{PING}) in RESP2 over two connections per process, one
that publishes and one that subscribes, each made again after a loss with
exponential backoff and jitter (L{RETRY_INITIAL} doubling up to L{RETRY_MAX}).

  - An event is published as its encoded C{rpc.event} line: every process
    with subscribers receives those bytes and writes them as they are.
  - Redis channels are named C{jsonservice:DB:TOPIC}: Redis pub/sub ignores
    the database number, so it goes into the name to keep apart deployments
    that share one Redis through different numbers.
  - A process subscribes to a channel while it has a local subscriber of
    the topic, and again to all of them after each reconnection.
  - While Redis is unreachable, C{publish} fails at once with
    L{PubSubUnavailable<jsonservice.pubsub.PubSubUnavailable>} (-32001;
    nothing is buffered); requests go on being served;
    C{rpc.subscribe} still succeeds and takes effect once Redis is back.
    Events published meanwhile are lost (Redis pub/sub is at-most-once).
  - Unanswered C{PUBLISH} bytes are bounded (L{REDIS_PUBLISH_BACKLOG}); a
    Redis that stops answering for L{REDIS_TIMEOUT} seconds is disconnected
    and reconnected.

Why not a Redis client library: the Twisted one, txredisapi, imports and
schedules on the global reactor (no C{Clock} in tests), queues commands
without bound while disconnected, does not restore subscriptions after a
reconnection and has no type hints; this module is the part of it this
backend needs.  (Twisted's C{ClientService} is not used either: a
connection its C{prepareConnection} rejects is left open, and its closing
later raises inside the service's state machine.)
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from .limits import REDIS_PUBLISH_BACKLOG, REDIS_TIMEOUT
from .pubsub import PubSubUnavailable
from .redisconn import PUBLISHER, RETRY_INITIAL, RETRY_MAX, SUBSCRIBER, Link, RedisProtocol
from .resp import RedisError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

    from .pubsub import PubSub

__all__ = ["RETRY_INITIAL", "RETRY_MAX", "RedisAddress", "RedisBackend", "RedisError", "parse_redis_url"]

#: Channels per SUBSCRIBE command when restoring them after a reconnection.
SUBSCRIBE_CHUNK: Final = 1000


_log = Logger(namespace="jsonservice.redis")


@dataclasses.dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, from C{redis://[[user]:password@]host[:port][/db]}."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """The URL, without the password (for logs and errors)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Parse C{redis://[[user]:password@]host[:port][/db]}.

    @raise ValueError: another scheme, no host, a bad port or db number.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"expected redis://host:port/db, not {url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r}: the port is a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{url!r}: the database is a number, as in redis://127.0.0.1:6379/0")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment expected")
    return RedisAddress(
        parts.hostname,
        port,
        int(path or 0),
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
    )


class RedisBackend:
    """
    Events through Redis pub/sub (see the module docstring for the rules).

    @ivar address: where Redis is.
    @ivar backlog: bytes of C{PUBLISH} commands awaiting Redis's reply.
    @ivar connects: successful connections made so far (both roles).
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint: IStreamClientEndpoint | None = None,
        timeout: float = REDIS_TIMEOUT,
        retry: tuple[float, float] = (RETRY_INITIAL, RETRY_MAX),
        max_backlog: int = REDIS_PUBLISH_BACKLOG,
    ) -> None:
        """
        @param url: C{redis://[[user]:password@]host[:port][/db]}.
        @param endpoint: connect through this endpoint instead of TCP to
            the URL's host and port (tests, UNIX sockets).
        @param timeout: seconds to connect and to wait for a reply.
        @param retry: the first and the longest delay between reconnection attempts.
        @param max_backlog: bound on L{backlog}, past which C{publish} fails.
        @raise ValueError: a bad URL.
        """
        self.address = parse_redis_url(url)
        self.url = self.address.url
        self.description = self.url
        self.timeout = timeout
        self.max_backlog = max_backlog
        self._endpoint = endpoint
        self.retry = retry
        self._prefix = b"jsonservice:%d:" % self.address.db
        self._hub: PubSub | None = None
        self._clock: IReactorTime | None = None
        self._links: list[Link] = []
        # Wanted channels; a list holds the Deferreds awaiting Redis's confirmation.
        self._channels: dict[bytes, list[Deferred[None]] | None] = {}
        self._publisher: RedisProtocol | None = None
        self._subscriber: RedisProtocol | None = None
        self.backlog = 0
        self.connects = 0
        self.last_error = "not connected yet"
        self.dropped_messages = 0

    @property
    def clock(self) -> IReactorTime:
        """The reactor given to L{start}."""
        assert self._clock is not None, "RedisBackend.start() first"
        return self._clock

    @property
    def connected(self) -> bool:
        """Whether both connections are up (publishing and subscribing work)."""
        return self._publisher is not None and self._subscriber is not None

    def channel(self, topic: str) -> bytes:
        """The Redis channel of C{topic}."""
        return self._prefix + topic.encode("ascii")

    def attach(self, hub: PubSub) -> None:
        """Deliver the events Redis sends to C{hub}."""
        self._hub = hub

    def start(self, reactor: IReactorTime) -> None:
        """Connect both connections (and keep reconnecting) using C{reactor}."""
        if self._links:
            return
        self._clock = reactor
        endpoint = self._endpoint
        if endpoint is None:
            from twisted.internet.endpoints import HostnameEndpoint

            endpoint = HostnameEndpoint(reactor, self.address.host, self.address.port, timeout=self.timeout)
        self._links = [Link(self, role, endpoint) for role in (PUBLISHER, SUBSCRIBER)]
        for link in self._links:
            link.connect()
        _log.info("Publishing events through Redis at {url}", url=self.url)

    def stop(self) -> Deferred[None]:
        """Disconnect, and stop reconnecting."""
        links, self._links = self._links, []
        self._release_waiters()
        return gatherResults([link.stop() for link in links]).addCallback(lambda _: None)

    # -- publishing and subscribing -------------------------------------------

    def publish(self, topic: str, line: bytes) -> Deferred[None]:
        """PUBLISH the event line; fails at once while Redis is down or backlogged."""
        publisher = self._publisher
        if publisher is None:
            return fail(PubSubUnavailable(data=f"Redis at {self.url} is unreachable ({self.last_error})"))
        if self.backlog + len(line) > self.max_backlog:
            return fail(
                PubSubUnavailable(
                    data=f"{self.backlog} bytes of events await Redis at {self.url} (max {self.max_backlog})"
                )
            )
        d = publisher.command(b"PUBLISH", self.channel(topic), line, size=len(line))
        return d.addCallbacks(_nothing, self._publish_failed)

    def _publish_failed(self, failure: Failure) -> Failure:
        if failure.check(RedisError):
            return Failure(PubSubUnavailable(data=f"Redis at {self.url}: {failure.value}"))
        return failure

    def subscribe(self, topic: str) -> Deferred[None] | None:
        """Subscribe to the topic's channel (once per process); fires once Redis confirms."""
        channel = self.channel(topic)
        subscriber = self._subscriber
        if channel in self._channels:
            waiters = self._channels[channel]
            if waiters is None:
                return None
            d: Deferred[None] = Deferred()
            waiters.append(d)
            return d
        if subscriber is None:
            # Taken into account at the next (re)connection.
            self._channels[channel] = None
            return None
        d = Deferred()
        self._channels[channel] = [d]
        subscriber.send(b"SUBSCRIBE", channel)
        return d

    def unsubscribe(self, topic: str) -> None:
        """No local subscriber left: leave the channel."""
        channel = self.channel(topic)
        if channel not in self._channels:
            return
        waiters = self._channels.pop(channel)
        for waiter in waiters or ():
            waiter.callback(None)
        if self._subscriber is not None:
            self._subscriber.send(b"UNSUBSCRIBE", channel)

    # -- what the connections report ----------------------------------------

    def _prepare(self, proto: RedisProtocol, role: str) -> Deferred[Any]:
        """A new connection: authenticate, (re)subscribe, then check it answers."""
        steps: list[Deferred[Any]] = []
        address = self.address
        if address.password is not None:
            credentials = [address.password.encode()]
            if address.username:
                credentials.insert(0, address.username.encode())
            steps.append(proto.command(b"AUTH", *credentials))
        sent = list(self._channels) if role == SUBSCRIBER else []
        for start in range(0, len(sent), SUBSCRIBE_CHUNK):
            proto.send(b"SUBSCRIBE", *sent[start : start + SUBSCRIBE_CHUNK])
        # Answered after everything before it: the connection is usable.
        steps.append(proto.command(b"PING"))

        def ready(_: Any) -> None:
            if proto.closed:
                raise PubSubUnavailable(data="lost the connection while preparing it")
            self.connects += 1
            if role == PUBLISHER:
                self._publisher = proto
            else:
                self._subscriber = proto
                # Topics joined or left while this connection was being prepared.
                before = set(sent)
                joined = [channel for channel in self._channels if channel not in before]
                left = [channel for channel in sent if channel not in self._channels]
                if joined:
                    proto.send(b"SUBSCRIBE", *joined)
                if left:
                    proto.send(b"UNSUBSCRIBE", *left)
            if self.connected:
                _log.info("Connected to Redis at {url}", url=self.url)

        def refused(failure: Failure) -> Failure:
            failure = _first_error(failure)
            self.last_error = failure.getErrorMessage()
            _log.warn("Redis at {url} refused the connection: {error}", url=self.url, error=self.last_error)
            if not proto.closed and proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]
            return failure

        return gatherResults(steps, consumeErrors=True).addCallbacks(ready, refused)

    def _lost(self, proto: RedisProtocol, reason: Failure) -> None:
        was_up = self.connected
        if proto is self._publisher:
            self._publisher = None
        elif proto is self._subscriber:
            self._subscriber = None
            self._release_waiters()
        else:
            return
        self.last_error = f"connection lost: {reason.getErrorMessage()}"
        if was_up and self._links:
            _log.warn(
                "Lost the connection to Redis at {url} ({error}): publishing fails until it is back;"
                " reconnecting",
                url=self.url,
                error=reason.getErrorMessage(),
            )

    def _release_waiters(self) -> None:
        """
        Subscriptions awaiting confirmation stand anyway (restored at the
        next connection): let their callers go on.
        """
        for channel, waiters in list(self._channels.items()):
            if waiters:
                self._channels[channel] = None
                for waiter in waiters:
                    waiter.callback(None)

    def _confirmed(self, channel: bytes) -> None:
        waiters = self._channels.get(channel)
        if waiters:
            self._channels[channel] = None
            for waiter in waiters:
                waiter.callback(None)

    def _message(self, channel: bytes, payload: bytes) -> None:
        prefix = self._prefix
        hub = self._hub
        # Only whole rpc.event lines from our channels are written to clients
        # as they are: one line, newline-terminated, nothing smuggled after it.
        if (
            hub is None
            or not channel.startswith(prefix)
            or not payload.startswith(b'{"jsonrpc":"2.0","method":"rpc.event"')
            or payload.find(b"\n") != len(payload) - 1
        ):
            self.dropped_messages += 1
            return
        hub.deliver(channel[len(prefix) :].decode("ascii", "replace"), payload)

    def __repr__(self) -> str:
        state = "connected" if self.connected else self.last_error
        return f"<RedisBackend {self.url} {state}>"


def _nothing(_: Any) -> None:
    return None


def _first_error(failure: Failure) -> Failure:
    """The failure inside C{gatherResults}' C{FirstError}."""
    sub = getattr(failure.value, "subFailure", None)
    return sub if isinstance(sub, Failure) else failure
