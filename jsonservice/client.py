"""
The client side: L{JSONClientFactory}, L{connect}, and
L{ReconnectingClient} (a Twisted service that keeps one connection up).

The client speaks the same L{JSONProtocol} as the server, so it can also
answer the server's calls when given a service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint

from .limits import Limits
from .protocol import JSONFactoryBase, JSONProtocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorTime

    from .service import JSONService

__all__ = ["JSONClientFactory", "ReconnectingClient", "connect"]

#: A client does not time out quiet connections unless asked to.
CLIENT_LIMITS = Limits(idle_timeout=0)


class JSONClientFactory(JSONFactoryBase):
    """
    The client factory: each connection is a L{JSONProtocol}.

    @param service: a L{JSONService} answering the server's calls and
        notifications (L{None}: this side serves nothing).
    @param clock: the reactor for timeouts (default: the global reactor).
    @param limits: a L{Limits} to start from (default: the server's
        defaults with no idle timeout); keyword arguments override it,
        e.g. C{call_timeout=5}.
    """

    def __init__(
        self,
        service: JSONService | None = None,
        *,
        clock: IReactorTime | None = None,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(service, clock=clock, limits=limits or CLIENT_LIMITS, **kwargs)


def _endpoint(reactor: Any, endpoint: IStreamClientEndpoint | str) -> IStreamClientEndpoint:
    if isinstance(endpoint, str):
        described: IStreamClientEndpoint = clientFromString(reactor, endpoint)
        return described
    if not IStreamClientEndpoint.providedBy(endpoint):
        raise TypeError(f"expected an endpoint or an endpoint description, not {endpoint!r}")
    return endpoint


def connect(
    reactor: Any,
    endpoint: IStreamClientEndpoint | str,
    service: JSONService | None = None,
    **limits: Any,
) -> Deferred[JSONProtocol]:
    """
    Connect to a JSON service.

        proto = await connect(reactor, "tcp:127.0.0.1:8080")
        print(await proto.call("echo", "hi"))

    @param reactor: the reactor (also the clock for timeouts).
    @param endpoint: an C{IStreamClientEndpoint} or a C{clientFromString}
        description such as C{"tcp:127.0.0.1:8080"} or C{"unix:/run/x.sock"}.
    @param service: answers the server's calls to this client, if any.
    @param limits: L{Limits} fields, e.g. C{call_timeout=5}.
    @return: a Deferred firing with the connected L{JSONProtocol}.
    """
    factory = JSONClientFactory(service, clock=reactor, **limits)
    connecting: Deferred[Any] = _endpoint(reactor, endpoint).connect(factory)
    return connecting


class ReconnectingClient(ClientService):
    """
    A client that keeps one connection up, reconnecting with backoff (a
    C{twisted.application.internet.ClientService}); start it as a service
    or with C{startService()}.

    While disconnected, L{call} and L{notify} wait for the next connection
    (up to the call's timeout) instead of failing; a call already sent when
    the connection drops fails with L{ConnectionClosed
    <jsonservice.protocol.ConnectionClosed>} and is not resent, since the
    server may have run it.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamClientEndpoint | str,
        service: JSONService | None = None,
        *,
        retry_policy: Callable[[int], float] | None = None,
        **limits: Any,
    ) -> None:
        self.factory = JSONClientFactory(service, clock=reactor, **limits)
        self._reactor = reactor
        super().__init__(
            _endpoint(reactor, endpoint),
            self.factory,
            retryPolicy=retry_policy,
            clock=reactor,
        )

    def protocol(self) -> Deferred[JSONProtocol]:
        """A Deferred firing with the current (or next) connection."""
        connected: Deferred[Any] = self.whenConnected()
        return connected

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Deferred[Any]:
        """L{JSONProtocol.call} on the current or next connection."""
        return self._when_connected(timeout).addCallback(
            lambda proto: proto.call(method, *args, timeout=timeout, **kwargs)
        )

    def notify(self, method: str, *args: Any, **kwargs: Any) -> Deferred[None]:
        """L{JSONProtocol.notify} on the current or next connection."""
        return self._when_connected(None).addCallback(lambda proto: proto.notify(method, *args, **kwargs))

    def send(self, message: Any, *, timeout: float | None = None) -> Deferred[Any]:
        """L{JSONProtocol.send} on the current or next connection."""
        return self._when_connected(timeout).addCallback(lambda proto: proto.send(message, timeout=timeout))

    def _when_connected(self, timeout: float | None) -> Deferred[JSONProtocol]:
        d: Deferred[Any] = self.whenConnected()
        seconds = self.factory.limits.call_timeout if timeout is None else timeout
        if seconds and not d.called:
            d.addTimeout(seconds, self._reactor)
        return d
