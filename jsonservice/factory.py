"""
L{JSONFactoryBase}: what the server and client factories share — a service,
limits, a clock, request observers and the set of open connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Factory

from .limits import Limits
from .observers import RequestObserver
from .protocol import JSONProtocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IReactorTime

    from .service import JSONService

__all__ = ["JSONFactoryBase"]


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
        self.closed_bytes_received += proto.bytes_received
        self.closed_bytes_sent += proto.bytes_sent
