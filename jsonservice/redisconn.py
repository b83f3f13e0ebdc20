"""
The Twisted side of the Redis backend's connections: L{RedisProtocol}
(commands answered in order, pub/sub pushes, the reply timeout and the
keep-alive) and the link that keeps one connection up, reconnecting with
backoff.  The backend (L{RedisBackend<jsonservice.redis.RedisBackend>})
decides what to send; these only carry it.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .limits import REDIS_TIMEOUT
from .pubsub import PubSubUnavailable
from .resp import RedisError, RespParser, encode_command

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint

    from .redis import RedisBackend

__all__ = ["KEEPALIVE", "RETRY_FACTOR", "RETRY_INITIAL", "RETRY_MAX", "RedisProtocol"]

#: Keep-alive: a connection quiet this long is sent a C{PING}.
KEEPALIVE: Final = 3 * REDIS_TIMEOUT
#: Reconnection backoff: first delay, factor, ceiling (seconds); jitter up to a quarter more.
RETRY_INITIAL: Final = 0.1
RETRY_FACTOR: Final = 2.0
RETRY_MAX: Final = 5.0

#: The two roles of a process's connections.
PUBLISHER: Final = "publisher"
SUBSCRIBER: Final = "subscriber"

_log = Logger(namespace="jsonservice.redis")


class RedisProtocol(Protocol):
    """
    One connection to Redis: commands answered in order (each a Deferred),
    and, on the subscribing connection, the C{message} pushes handed to
    the backend.  Quiet connections are pinged; a Redis that leaves a
    command unanswered for C{timeout} seconds is disconnected.
    """

    def __init__(self, backend: RedisBackend, role: str, link: Link | None = None) -> None:
        self.backend = backend
        self.role = role
        self.link = link
        self._parser = RespParser()
        self._waiting: deque[tuple[Deferred[Any], int]] = deque()
        self._timer: IDelayedCall | None = None
        # Replies so far, and at the last look of the timer: a count, not a
        # timer reset per reply (the hot path of a publisher).
        self._replies = 0
        self._replies_seen = 0
        self._keepalive: IDelayedCall | None = None
        self.closed = False

    def connectionMade(self) -> None:
        """Start the keep-alive timer."""
        self._quiet()

    def dataReceived(self, data: bytes) -> None:
        """Parse replies; a stream that is not RESP drops the connection."""
        try:
            replies = self._parser.feed(data)
        except RedisError as exc:
            _log.warn("Dropping the connection to Redis at {url}: {error}", url=self.backend.url, error=exc)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        for reply in replies:
            self._reply(reply)
        if replies:
            self._quiet()

    def _reply(self, reply: Any) -> None:
        if reply.__class__ is list and reply and self.role == SUBSCRIBER:
            kind = reply[0]
            if kind == b"message" and len(reply) == 3:
                self.backend._message(reply[1], reply[2])
                return
            if kind == b"subscribe" and len(reply) == 3:
                self.backend._confirmed(reply[1])
                return
            if kind == b"unsubscribe":
                return
        if not self._waiting:
            _log.warn("Unexpected reply from Redis at {url}: {reply!r}", url=self.backend.url, reply=reply)
            return
        waiter, size = self._waiting.popleft()
        self.backend.backlog -= size
        self._replies += 1
        if not self._waiting:
            self._stop_timer()  # nothing waits: the next command starts a full timeout
        if isinstance(reply, RedisError):
            waiter.errback(reply)
        else:
            waiter.callback(reply)

    def command(self, *args: bytes, size: int = 0) -> Deferred[Any]:
        """Send a command; the Deferred fires with its reply (or a L{RedisError})."""
        if self.closed:
            return fail(PubSubUnavailable(data=f"lost the connection to Redis at {self.backend.url}"))
        waiter: Deferred[Any] = Deferred()
        self._waiting.append((waiter, size))
        self.backend.backlog += size
        if self._timer is None:
            self._replies_seen = self._replies
            self._timer = self.backend.clock.callLater(self.backend.timeout, self._check_progress)
        self.transport.write(encode_command(*args))  # type: ignore[union-attr]
        return waiter

    def send(self, *args: bytes) -> None:
        """Send a command whose answer is a push (SUBSCRIBE, UNSUBSCRIBE)."""
        if not self.closed:
            self.transport.write(encode_command(*args))  # type: ignore[union-attr]

    def _quiet(self) -> None:
        """Ping after L{KEEPALIVE} seconds without a reply (a peer that vanished)."""
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.reset(KEEPALIVE)
        elif not self.closed:
            self._keepalive = self.backend.clock.callLater(KEEPALIVE, self._ping)

    def _ping(self) -> None:
        self._keepalive = None
        self.command(b"PING").addErrback(lambda _: None)

    def _check_progress(self) -> None:
        """
        Every C{timeout} seconds while commands wait: no reply at all since
        the last look means Redis is not answering (a command waits at most
        twice the timeout, the oldest exactly the timeout when nothing moves).
        """
        self._timer = None
        if not self._waiting or self.closed:
            return
        if self._replies != self._replies_seen:
            self._replies_seen = self._replies
            self._timer = self.backend.clock.callLater(self.backend.timeout, self._check_progress)
            return
        _log.warn(
            "Redis at {url} did not answer within {timeout}s: reconnecting",
            url=self.backend.url,
            timeout=self.backend.timeout,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """Fail the commands waiting; tell the backend and the link (which reconnects)."""
        self.closed = True
        self._stop_timer()
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
        waiting, self._waiting = self._waiting, deque()
        error = PubSubUnavailable(data=f"lost the connection to Redis at {self.backend.url}")
        for waiter, size in waiting:
            self.backend.backlog -= size
            waiter.errback(error)
        self.backend._lost(self, reason)
        if self.link is not None:
            self.link.lost(self)


class Link(Factory):
    """
    Keeps one connection (a role) up: connects, prepares it through the
    backend, and after a failure or a loss connects again with backoff (the
    count of failures resets only once a connection is ready).
    """

    noisy = False

    def __init__(self, backend: RedisBackend, role: str, endpoint: IStreamClientEndpoint) -> None:
        self.backend = backend
        self.role = role
        self.endpoint = endpoint
        self.failures = 0
        self.proto: RedisProtocol | None = None
        self._connecting: Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._stopped: Deferred[None] | None = None
        self.stopping = False

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        """A connection for this link's role."""
        return RedisProtocol(self.backend, self.role, self)

    def connect(self) -> None:
        """Make the connection (again)."""
        self._retry = None
        if self.stopping:
            return
        connecting = self._connecting = self.endpoint.connect(self)
        connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, proto: RedisProtocol) -> None:
        self._connecting = None
        self.proto = proto
        if self.stopping:
            proto.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.backend._prepare(proto, self.role).addCallbacks(self._ready, lambda _: None)

    def _ready(self, _: Any) -> None:
        self.failures = 0

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        if self.stopping or failure.check(CancelledError):
            return
        self.backend.last_error = failure.getErrorMessage()
        self._again()

    def lost(self, proto: RedisProtocol) -> None:
        """C{proto}'s connection is gone: connect again (unless stopping)."""
        if proto is self.proto:
            self.proto = None
        if self.stopping:
            if self._stopped is not None and not self._stopped.called:
                self._stopped.callback(None)
            return
        self._again()

    def _again(self) -> None:
        initial, longest = self.backend.retry
        delay = min(initial * RETRY_FACTOR**self.failures, longest)
        self.failures += 1
        # Jitter: the processes that lost the same Redis do not all come back at once.
        self._retry = self.backend.clock.callLater(delay * (1 + random.random() / 4), self.connect)

    def stop(self) -> Deferred[None]:
        """Stop connecting; close the connection; fires once it is closed."""
        self.stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        proto = self.proto
        if proto is None or proto.closed:
            return succeed(None)
        self._stopped = Deferred()
        proto.transport.loseConnection()  # type: ignore[union-attr]
        return self._stopped
