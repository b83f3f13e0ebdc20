"""
L{JSONFactoryBase}: what the server and client factories share — a service,
limits, a clock, request observers and the set of open connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Factory

from .limits import Limits
from .observers import RequestObserver
from .protocol import JSONProtocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from .service import JSONService

__all__ = ["JSONFactoryBase", "MemoryBudget"]

#: A paused connection reads again once the total is below this share of the budget.
RESUME_AT = 0.8
#: Over budget, a connection holding less than this may still grow (one request line at a time).
GROWTH_FLOOR = 4096
#: While connections are paused, charges are recomputed this often (seconds):
#: output drains without telling anyone.
RECHECK_EVERY = 1.0


class MemoryBudget:
    """
    The server-wide bound on bytes held by a factory's connections (input
    buffered, replies held back, output not yet sent): past C{limit}, every
    connection that grows past L{GROWTH_FLOOR} is paused, so the heavy
    readers stop first while light ones are still served, and all paused ones read again
    once the total falls below L{RESUME_AT} of the limit.

    @ivar total: bytes held over all connections, as last charged.
    """

    def __init__(self, limit: int, clock: Callable[[], IReactorTime]) -> None:
        self.limit = limit
        self.total = 0
        self._clock = clock
        #: What each connection holding anything was last charged.
        self.charged: dict[JSONProtocol, int] = {}
        self.paused: set[JSONProtocol] = set()
        self._recheck: IDelayedCall | None = None

    def charge(self, proto: JSONProtocol) -> None:
        """Account what C{proto} holds now; pause or resume readers."""
        held = 0 if proto._closed else proto.held_bytes
        charged = self.charged
        before = charged.get(proto, 0)
        if not held and not before:
            return  # the common case: nothing held before or after
        self.total += held - before
        if held:
            charged[proto] = held
        else:
            charged.pop(proto, None)
        if self.total > self.limit:
            # Over budget: whoever grows past a small floor stops reading;
            # light readers (a request line at a time) go on being served.
            if held > before and held > GROWTH_FLOOR and proto not in self.paused:
                self.paused.add(proto)
                proto._pause_reading("budget", True)
                proto._breached("max_buffered")
                if self._recheck is None:
                    self._recheck = self._clock().callLater(RECHECK_EVERY, self._recount)
        elif self.paused and self.total < self.limit * RESUME_AT:
            self._resume_all()

    def forget(self, proto: JSONProtocol) -> None:
        """C{proto} closed."""
        self.total -= self.charged.pop(proto, 0)
        self.paused.discard(proto)
        if self.paused and self.total < self.limit * RESUME_AT:
            self._resume_all()

    def _resume_all(self) -> None:
        paused = sorted(self.paused, key=lambda p: self.charged.get(p, 0))
        self.paused.clear()
        if self._recheck is not None and self._recheck.active():
            self._recheck.cancel()
        self._recheck = None
        for proto in paused:  # lightest first
            proto._pause_reading("budget", False)

    def _recount(self) -> None:
        self._recheck = None
        self.total = 0
        for proto in list(self.charged):
            held = 0 if proto._closed else proto.held_bytes
            self.charged[proto] = held
            self.total += held
        if self.paused and self.total < self.limit * RESUME_AT:
            self._resume_all()
        elif self.paused:
            self._recheck = self._clock().callLater(RECHECK_EVERY, self._recount)


class JSONFactoryBase(Factory):
    """
    What the server and client factories share: a service, limits, a clock,
    and the set of open connections.

    @ivar service: the L{JSONService} each connection answers with.
    @ivar limits: the L{Limits} each connection gets.
    @ivar connections: the open L{JSONProtocol}s.
    """

    protocol = JSONProtocol

    def __init__(
        self,
        service: JSONService | None = None,
        *,
        clock: IReactorTime | None = None,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> None:
        self.service = service
        self.limits = Limits.from_kwargs(limits, **kwargs)
        self.clock = clock
        self.connections: set[JSONProtocol] = set()
        #: Watchers of every request (metrics, request logs).
        self.observers: list[RequestObserver] = []
        #: The token connections must present first (L{None}: no authentication).
        self.auth_token: bytes | None = None
        #: Totals for metrics: connections accepted, bytes of closed ones.
        self.connections_opened = 0
        self.closed_bytes_received = 0
        self.closed_bytes_sent = 0
        #: The server-wide bound on bytes held (the C{max_buffered} limit).
        self.budget = MemoryBudget(self.limits.max_buffered, self._reactor)

    def _reactor(self) -> IReactorTime:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor
        return self.clock

    def add_observer(self, observer: RequestObserver) -> None:
        """Watch the requests of connections made from now on."""
        self.observers.append(observer)

    def buildProtocol(self, addr: IAddress | None) -> JSONProtocol | None:
        """Build a L{JSONProtocol} with this factory's service and limits."""
        proto = self.protocol(self.service, self.limits, self.clock)
        proto.factory = self
        return proto

    def connection_made(self, proto: JSONProtocol) -> None:
        """Called by each connection once it is up."""
        self.connections.add(proto)
        self.connections_opened += 1

    def connection_lost(self, proto: JSONProtocol) -> None:
        """Called by each connection once it is gone."""
        self.connections.discard(proto)
        self.budget.forget(proto)
        self.closed_bytes_received += proto.bytes_received
        self.closed_bytes_sent += proto.bytes_sent
