"""
L{JSONProtocol}: the C{LineReceiver} that speaks newline-delimited JSON and
JSON-RPC 2.0, used on both ends of a connection.

It is the thin Twisted adapter around the sans-IO
L{Connection<jsonservice.connection.Connection>}: it feeds it bytes and
writes the bytes it puts out, and owns what needs the reactor — Deferreds,
timers (request, idle, authentication), cancellation and flow control.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from .auth import AUTH_METHOD, AuthGate
from .calls import CANCEL_METHOD, Caller, CallTimeout, ConnectionClosed
from .connection import Connection, quote
from .errors import RequestCancelled, RPCError
from .flow import OutputWatch
from .host import TwistedHost
from .limits import Limits
from .observers import RequestObserver
from .service import JSONService

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from .factory import MemoryBudget
    from .pubsub import Subscriptions

__all__ = ["AUTH_METHOD", "CANCEL_METHOD", "CallTimeout", "ConnectionClosed", "JSONProtocol"]

_DEFAULT_LIMITS: Final = Limits()
_SHUTTING_DOWN: Final = "the server is shutting down"


@implementer(IHalfCloseableProtocol)
class JSONProtocol(Caller, LineReceiver):
    """
    Newline-delimited JSON and JSON-RPC 2.0 on one stream, both directions.

    As a server it answers requests with its C{service}; as a client it
    L{call<Caller.call>}s, L{notify<Caller.notify>}s and
    L{send<Caller.send>}s (see L{Caller}); a connection can do both at once.
    Build it with L{JSONServerFactory<jsonservice.server.JSONServerFactory>}
    or L{JSONClientFactory<jsonservice.client.JSONClientFactory>}, or
    directly.

    LineReceiver's contract holds: L{lineReceived} gets each line and
    L{valueReceived} each decoded value (override either, calling up, to
    see them first); C{sendLine}, C{MAX_LENGTH}, raw mode, and
    C{pauseProducing}/C{resumeProducing} (stop/resume delivering lines)
    work as documented there.  When the peer half-closes, everything it
    sent is answered before the connection closes.

    @ivar service: the L{JSONService} answering the peer (L{None}: this side
        serves nothing and answers requests with -32601).
    @ivar limits: the L{Limits} in force.
    @ivar state: per-connection state for handlers (see L{CallContext}).
    @ivar subscriptions: this connection's topic subscriptions
        (C{rpc.subscribe}), L{None} until the first; they end with it.
    """

    delimiter = b"\n"
    _log = Logger(namespace="jsonservice.protocol")
    #: Whether the server factory logs this connection's opening and
    #: closing (an HTTP request's exchange is not logged: the site logs it).
    log_connection = True
    #: Whether this connection counts toward C{max_connections} itself
    #: (L{False}: an HTTP request's, whose connection is counted).
    counted = True

    def __init__(
        self,
        service: JSONService | None = None,
        limits: Limits | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.service = service
        limits = limits or _DEFAULT_LIMITS
        declared = type(self).MAX_LENGTH
        if isinstance(declared, int) and declared != limits.max_line_length:
            # A subclass setting MAX_LENGTH, as LineReceiver's do, sets the limit.
            limits = dataclasses.replace(limits, max_line_length=declared)
        self.limits = limits
        self._clock = clock
        self.state: dict[str, Any] = {}
        self.subscriptions: Subscriptions | None = None
        self._core = core = Connection(service, TwistedHost(self), self, limits)
        self._framer = core.framer
        cls = type(self)
        if cls.lineReceived is not JSONProtocol.lineReceived:
            core.line_handler = self.lineReceived
        if cls.valueReceived is not JSONProtocol.valueReceived:
            core.value_handler = self.valueReceived
        self._watch = OutputWatch(self)
        self._closed = False
        self._when_closed: list[Deferred[None]] = []
        self._peer_checked = False
        self._read_pauses: set[str] = set()
        self._idle_timer: IDelayedCall | None = None
        self._auth_timer: IDelayedCall | None = None
        self._close_timer: IDelayedCall | None = None
        self._auth = AuthGate(None, self._authenticated, self._auth_failed)
        self._observers: tuple[RequestObserver, ...] = ()
        self._budget: MemoryBudget | None = None
        #: Default timeout for L{Caller.call} and L{Caller.send}, in seconds (0: none).
        self.call_timeout = limits.call_timeout
        #: Set by L{drain}: new requests are answered -32800.
        self.draining = False
        #: Bytes of a message still arriving that a message-framed transport
        #: (a WebSocket) holds for this connection: counted in L{held_bytes}.
        self.partial_bytes = 0
        self.opened_at = 0.0

    # -- state --------------------------------------------------------------

    @property
    def MAX_LENGTH(self) -> int:
        """
        The longest line accepted, in bytes (LineReceiver's name for the
        C{max_line_length} limit); setting it changes the limit of this
        connection from its next line on.
        """
        return self._core.framer.max_line_length

    @MAX_LENGTH.setter
    def MAX_LENGTH(self, value: int) -> None:
        self._core.framer.max_line_length = value

    @property
    def clock(self) -> IReactorTime:
        """The clock used for timeouts (the global reactor unless given)."""
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    @property
    def peer(self) -> IAddress:
        """The peer's address."""
        return self.transport.getPeer()  # type: ignore[union-attr]

    @property
    def in_flight(self) -> int:
        """The peer's requests and plain messages accepted here and not yet answered."""
        return self._core.in_flight

    @property
    def pending(self) -> int:
        """How many of this side's calls and plain messages await a reply."""
        return len(self._core.calls) + len(self._core.plain_waiters)

    @property
    def authenticated(self) -> bool:
        """Whether the peer has authenticated (always, when no token is required)."""
        return self._auth.authenticated

    @property
    def requests_received(self) -> int:
        """Requests and plain messages handled so far."""
        return self._core.requests_received

    @property
    def bytes_received(self) -> int:
        """Bytes received from the peer so far."""
        return self._core.bytes_in

    @property
    def bytes_sent(self) -> int:
        """Bytes written to the peer so far."""
        return self._core.bytes_out

    @property
    def held_bytes(self) -> int:
        """Input buffered and replies held back on this connection (server-wide budget)."""
        return self._core.held_bytes + self._watch.unsent + self.partial_bytes

    # -- connection life ------------------------------------------------------

    def connectionMade(self) -> None:
        """Start the timers, watch the output, join the factory."""
        self._watch.register()
        #: The clock's time, looked up once (stamped at every read with a message).
        self._now = self.clock.seconds
        self.opened_at = self._core.active_at = self._now()
        if self.limits.idle_timeout:
            self._core.stamp = self._now  # the core stamps each message in and out
            self._idle_timer = self.clock.callLater(self.limits.idle_timeout, self._check_idle)
        factory: Any = getattr(self, "factory", None)
        if hasattr(factory, "connection_made"):
            self._observers = tuple(factory.observers)
            if self._observers:
                self._core.observe = self._observe
            if getattr(factory, "auth_token", None) is not None:
                self._auth = AuthGate(factory.auth_token, self._authenticated, self._auth_failed)
                self._auth_timer = self.clock.callLater(self.limits.auth_timeout, self._auth_too_late)
            self._budget = getattr(factory, "budget", None)
        self._core.specials[AUTH_METHOD] = self._auth.authenticate
        self._update_gate()
        if factory is not None and hasattr(factory, "connection_made"):
            factory.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        """Feed the connection core (LineReceiver's raw mode still works)."""
        if not self.line_mode:
            self.rawDataReceived(data)  # type: ignore[no-untyped-call]
            return
        if not self._peer_checked:
            # Checked at the first data, not at connectionMade: a haproxy:
            # listener learns the peer from the PROXY header only then.
            self._peer_checked = True
            if not _plausible_peer(self.transport.getPeer()):  # type: ignore[union-attr]
                self._log.warn(
                    "Closing a connection whose peer address is not an address: {peer}",
                    peer=quote(self.transport.getPeer()),  # type: ignore[union-attr]
                )
                self.transport.abortConnection()  # type: ignore[union-attr]
                return
        framer = self._framer
        self._core.receive_data(data)
        if not self.line_mode:
            # A handler switched to raw mode: the rest of this read is raw.
            rest = self._core.take_unread()
            if rest:
                self.rawDataReceived(rest)  # type: ignore[no-untyped-call]
            return
        budget = self._budget
        if budget is not None and (framer.buffered or self in budget.charged or self._core.held_bytes):
            budget.charge(self)

    def message_received(self, data: bytes, length: int | None = None) -> None:
        """
        One whole message from a transport that frames messages itself (a
        WebSocket message, an HTTP request body; see
        L{jsonservice.ws} and L{jsonservice.web}): handled exactly as one
        line would be, through the same connection core.

        @param length: the message's full length when only its start,
            C{data}, was kept (past C{max_line_length}: answered -32002).
        """
        if self._closed:
            return
        self.partial_bytes = 0
        self._core.receive_message(data, length)
        budget = self._budget
        if budget is not None and (self._core.held_bytes or self in budget.charged):
            budget.charge(self)

    def readConnectionLost(self) -> None:
        """The peer half-closed: answer everything it sent, then close."""
        self._core.receive_eof()

    def writeConnectionLost(self) -> None:
        """This side never half-closes its output; nothing to do."""

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Fail everything this side waits for with L{ConnectionClosed} and
        cancel the peer's handlers still running (their replies could not
        be sent).
        """
        if self._closed:
            return
        if self.line_mode:
            self._core.deliver_unterminated()  # a classic peer's last reply
        self._closed = True
        self._watch.unregister()
        if self.subscriptions is not None:
            self.subscriptions.close()
        for timer in (self._idle_timer, self._auth_timer, self._close_timer):
            if timer is not None and timer.active():
                timer.cancel()
        why = str(reason.value)
        for waiter in self._core.connection_lost():
            what = f"call {waiter.method!r}" if waiter.method else "plain message"
            waiter.reject(ConnectionClosed(f"connection closed before the reply to {what}: {why}"))
        factory = getattr(self, "factory", None)
        if factory is not None and hasattr(factory, "connection_lost"):
            factory.connection_lost(self)
        waiting, self._when_closed = self._when_closed, []
        for closed in waiting:
            closed.callback(None)

    def when_closed(self) -> Deferred[None]:
        """
        A Deferred that fires (with L{None}) once the connection is closed,
        at once if it is already: for what a handler keeps per connection
        (timers, resources) to be let go with it.
        """
        closed: Deferred[None] = Deferred()
        if self._closed:
            closed.callback(None)
        else:
            self._when_closed.append(closed)
        return closed

    def _close(self) -> None:
        """
        Close once written output is flushed.  The close always completes:
        the output watch steps aside first (a paused producer would
        otherwise take the place of the close in Twisted's C{doWrite}), and
        a peer that never reads what is left is cut off after the
        write-stall timeout.
        """
        if self._closed or self.transport is None or self._close_timer is not None:
            return
        self._watch.unregister()
        self.transport.loseConnection()
        stall = self.limits.write_stall_timeout
        if stall and not self._closed:
            self._close_timer = self.clock.callLater(stall, self._abort)

    def _abort(self) -> None:
        self._close_timer = None
        if not self._closed and self.transport is not None:
            self._breached("write_stall_timeout")
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _check_idle(self) -> None:
        idle = self.limits.idle_timeout
        quiet = self.clock.seconds() - self._core.active_at
        core = self._core
        if core.busy or self.pending or quiet < idle:
            self._idle_timer = self.clock.callLater(idle - quiet if quiet < idle else idle, self._check_idle)
            return
        # Let the reactor read what already arrived (a stalled process
        # resumed with SIGCONT runs its timers before its reads) first.
        last_active = core.active_at
        self._idle_timer = self.clock.callLater(min(1.0, idle / 10), self._idle_confirmed, last_active)

    def _idle_confirmed(self, last_active: float) -> None:
        if self._core.active_at != last_active or self._core.busy or self.pending:
            self._idle_timer = self.clock.callLater(self.limits.idle_timeout, self._check_idle)
            return
        self._idle_timer = None
        self._breached("idle_timeout")
        self._log.info(
            "Closing connection from {peer} idle for {idle}s", peer=self.peer, idle=self.limits.idle_timeout
        )
        self._close()

    # -- LineReceiver's contract ------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        """
        Decode one line (blank lines are ignored) and handle its value; a
        line that is not strict JSON is answered -32700.
        """
        self._core.handle_line(line)

    def valueReceived(self, value: Any) -> None:
        """
        Handle one decoded JSON value: a request, notification, response,
        batch or plain message.  Override to see every value first.
        """
        self._core.handle_value(value)

    def sendLine(self, line: bytes) -> None:
        """Write one line, in order with the replies being written."""
        self._core.write(line + self.delimiter)

    def setRawMode(self) -> None:
        """Deliver what follows to C{rawDataReceived} (LineReceiver's contract)."""
        super().setRawMode()  # type: ignore[no-untyped-call]
        self._core.hold("raw")

    def setLineMode(self, extra: bytes = b"") -> None:
        """Back to lines; C{extra} is handled as received data."""
        self._core.release("raw")
        super().setLineMode(extra)  # type: ignore[no-untyped-call]

    def lineLengthExceeded(self, line: bytes) -> None:
        """Lines over C{MAX_LENGTH} are answered -32002 by the core and skipped."""

    def clearLineBuffer(self) -> bytes:
        """Clear and return the unfinished line (LineReceiver's contract)."""
        return self._core.framer.take_partial()

    @property
    def paused(self) -> bool:
        """Whether lines are not being delivered now (paused, at a cap, or output backed up)."""
        return bool(self._core.holds)

    @paused.setter
    def paused(self, value: bool) -> None:
        """LineReceiver's own writes are ignored: the core keeps the state."""

    def pauseProducing(self) -> None:
        """Stop delivering lines (and reading) until L{resumeProducing}."""
        self._core.hold("paused")
        self._pause_reading("paused", True)

    def resumeProducing(self) -> None:
        """Deliver lines again, starting with those that arrived meanwhile."""
        self._pause_reading("paused", False)
        self._core.release("paused")

    def stopProducing(self) -> None:
        """The transport is going away; C{connectionLost} cleans up."""

    def _pause_reading(self, reason: str, pause: bool) -> None:
        pauses = self._read_pauses
        was = bool(pauses)
        if pause:
            pauses.add(reason)
        else:
            pauses.discard(reason)
        transport: Any = self.transport
        if transport is None or self._closed or was == bool(pauses):
            return
        if pauses:
            transport.pauseProducing()
        else:
            transport.resumeProducing()

    # -- authentication, drain, observers ---------------------------------------

    def _update_gate(self) -> None:
        self._core.gate = self._gate if (self.draining or not self._auth.authenticated) else None

    def _gate(self, method: str | None) -> Any:
        if self.draining and method != CANCEL_METHOD:
            return _draining
        return self._auth.responder_for(method)

    def _authenticated(self) -> None:
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        self._update_gate()

    def _auth_failed(self) -> None:
        self._log.warn("Wrong or missing token from {peer}: closing", peer=self.peer)
        self._breached("auth")
        self._core.close_input()

    def _auth_too_late(self) -> None:
        self._auth_timer = None
        if not self._auth.authenticated:
            self._log.warn(
                "No authentication from {peer} within {seconds}s: closing",
                peer=self.peer,
                seconds=self.limits.auth_timeout,
            )
            self._breached("auth_timeout")
            self._core.close_input()

    def drain(self) -> None:
        """
        Begin a graceful close: requests from now on are answered -32800;
        the connection closes (after flushing) once no handler is running.
        """
        self.draining = True
        self._update_gate()
        self._core.finish()

    def cancel_running(self, error: RPCError) -> int:
        """
        Cancel every handler still running for the peer, answering each
        with C{error} (used when a server shuts down).

        @return: how many were cancelled.
        """
        return self._core.cancel_all(error)

    def _observe(self, method: str, outcome: str, seconds: float) -> None:
        for observer in self._observers:
            observer.request_done(self, method, outcome, seconds)

    def _breached(self, limit: str) -> None:
        for observer in self._observers:
            observer.limit_breached(self, limit)

    def _cancel_at_peer(self, id_: Any) -> None:
        if not self._closed and self.transport is not None:
            self.notify(CANCEL_METHOD, id=id_)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} in_flight={self.in_flight} pending={self.pending}>"


def _draining(params: Any, id_: Any, owner: Any) -> Any:
    raise RequestCancelled(data=_SHUTTING_DOWN)


def _plausible_peer(peer: Any) -> bool:
    """
    Whether a peer address is an IP address and a port in range (a
    C{haproxy:} listener takes both from the PROXY header, unchecked).
    """
    host = getattr(peer, "host", None)
    if not isinstance(host, str):
        return True  # UNIX sockets and the like: nothing to check
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    port = getattr(peer, "port", 0)
    return isinstance(port, int) and 0 <= port <= 65535
