"""
The client side: L{JSONClientFactory}, L{connect}, and
L{ReconnectingClient} (a Twisted service that keeps one connection up).

The client speaks the same L{JSONProtocol} as the server, so it can also
answer the server's calls when given a service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.internet import ClientService
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from .factory import JSONFactoryBase
from .limits import Limits
from .protocol import AUTH_METHOD, CallTimeout, JSONProtocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorTime

    from .service import JSONService

__all__ = ["JSONClientFactory", "ReconnectingClient", "authenticate", "connect"]

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
    *,
    auth_token: str | None = None,
    **limits: Any,
) -> Deferred[JSONProtocol]:
    """
    Connect to a JSON service::

        proto = await connect(reactor, "tcp:127.0.0.1:8080")
        print(await proto.call("echo", "hi"))

    @param reactor: the reactor (also the clock for timeouts).
    @param endpoint: an C{IStreamClientEndpoint} or a C{clientFromString}
        description such as C{"tcp:127.0.0.1:8080"} or C{"unix:/run/x.sock"};
        or a WebSocket URL, C{"ws://127.0.0.1:8081/ws"} (C{wss://} for TLS),
        which needs the C{web} extra (autobahn).
    @param service: answers the server's calls to this client, if any.
    @param auth_token: for a server started with C{--auth-token-file}: the
        connection calls C{rpc.authenticate} with it before it is handed
        over (a wrong token fails the Deferred with L{Unauthorized
        <jsonservice.errors.Unauthorized>}).
    @param limits: L{Limits} fields, e.g. C{call_timeout=5}.
    @return: a Deferred firing with the connected L{JSONProtocol}.
    """
    factory = JSONClientFactory(service, clock=reactor, **limits)
    if isinstance(endpoint, str) and endpoint.startswith(("ws://", "wss://")):
        from .ws import connect_ws

        connecting: Deferred[Any] = connect_ws(reactor, endpoint, factory)
    else:
        connecting = _endpoint(reactor, endpoint).connect(factory)
    if auth_token is not None:
        connecting.addCallback(authenticate, auth_token)
    return connecting


def authenticate(proto: JSONProtocol, token: str) -> Deferred[JSONProtocol]:
    """
    Authenticate a connection (call C{rpc.authenticate} with C{token}).

    @return: a Deferred firing with C{proto} once the server accepted the
        token; on refusal the connection is closed and the Deferred fails.
    """

    def refused(failure: Any) -> Any:
        if proto.transport is not None:
            proto.transport.loseConnection()
        return failure

    done: Deferred[JSONProtocol] = proto.call(AUTH_METHOD, token=token).addCallbacks(lambda _: proto, refused)
    return done


class ReconnectingClient(ClientService):
    """
    A client that keeps one connection up, reconnecting with backoff (a
    C{twisted.application.internet.ClientService}); start it as a service
    or with C{startService()}.

    While disconnected, L{call}, L{notify} and L{send} wait for the next
    connection instead of failing.  The wait for a connection and the wait
    for the reply share the call's timeout (C{timeout=}, else the
    C{call_timeout} limit; 0: wait for ever); running out of it fails with
    L{CallTimeout <jsonservice.protocol.CallTimeout>}.  A call already sent
    when the connection drops fails with L{ConnectionClosed
    <jsonservice.protocol.ConnectionClosed>} and is not resent, since the
    server may have run it.  Once the service is stopped, they fail at once
    with C{CancelledError}.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamClientEndpoint | str,
        service: JSONService | None = None,
        *,
        retry_policy: Callable[[int], float] | None = None,
        auth_token: str | None = None,
        **limits: Any,
    ) -> None:
        """
        @param auth_token: authenticate each new connection with this token
            before handing it out (see L{connect}).
        """
        self.factory = JSONClientFactory(service, clock=reactor, **limits)
        self._reactor = reactor
        self._stopped = False
        super().__init__(
            _endpoint(reactor, endpoint),
            self.factory,
            retryPolicy=retry_policy,
            clock=reactor,
            prepareConnection=None if auth_token is None else (lambda proto: authenticate(proto, auth_token)),  # type: ignore[arg-type]
        )

    def startService(self) -> None:
        """Start connecting (and keep a connection up)."""
        self._stopped = False
        super().startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop: close the connection and stop reconnecting.  From now on
        L{call}, L{notify} and L{send} fail at once with C{CancelledError}.
        """
        self._stopped = True
        stopped: Deferred[None] = super().stopService()
        return stopped

    def protocol(self) -> Deferred[JSONProtocol]:
        """
        A Deferred firing with the current connection, or with the next one
        (on a later reactor turn, so its callbacks may use this client).
        """
        return self._connection()

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Deferred[Any]:
        """L{JSONProtocol.call} on the current or next connection."""
        return self._on_connection(
            timeout,
            f"call {method!r}",
            lambda proto, left: proto.call(method, *args, timeout=left, **kwargs),
        )

    def notify(self, method: str, *args: Any, **kwargs: Any) -> Deferred[None]:
        """L{JSONProtocol.notify} on the current or next connection."""
        return self._on_connection(
            None, f"notification {method!r}", lambda proto, left: proto.notify(method, *args, **kwargs)
        )

    def send(self, message: Any, *, timeout: float | None = None) -> Deferred[Any]:
        """L{JSONProtocol.send} on the current or next connection."""
        return self._on_connection(
            timeout, "plain message", lambda proto, left: proto.send(message, timeout=left)
        )

    def _on_connection(
        self, timeout: float | None, what: str, action: Callable[[JSONProtocol, float | None], Any]
    ) -> Deferred[Any]:
        """
        Run C{action(proto, timeout_left)} on the current or next connection.
        The wait for a connection and the wait for the reply share one
        timeout budget; running out of it is a L{CallTimeout}.
        """
        seconds = self.factory.limits.call_timeout if timeout is None else timeout
        connected = self._connection()
        if connected.called or not seconds:
            return connected.addCallback(action, timeout)
        deadline = self._reactor.seconds() + seconds

        def timed_out(result: Any, _: float) -> Any:
            if isinstance(result, Failure) and result.check(CancelledError):
                return Failure(CallTimeout(f"not connected within {seconds}s: did not send {what}"))
            return result

        connected.addTimeout(seconds, self._reactor, onTimeoutCancel=timed_out)
        # Never 0 (which means "no timeout"): the budget is nearly spent.
        return connected.addCallback(
            lambda proto: action(proto, max(deadline - self._reactor.seconds(), 1e-3))
        )

    def _connection(self) -> Deferred[JSONProtocol]:
        """
        The open connection now, or the next one on a later reactor turn.

        C{ClientService} fires its C{whenConnected} Deferreds from inside its
        state machine, which refuses re-entrant inputs (C{whenConnected},
        C{stopService}) with C{RuntimeError}: a caller awaiting the
        connection and then calling again would break it.  Handing over on
        the next turn avoids that.  Likewise a connection that is closing
        (we are inside its C{connectionLost}, before C{ClientService} hears
        of it) is not handed out: the next one is awaited.
        """
        if self._stopped:
            # Not whenConnected(): right after stopService() (still inside
            # ClientService's state machine) it would raise RuntimeError.
            return fail(CancelledError("the client is stopped"))
        waiting: Deferred[Any] = self.whenConnected()
        if waiting.called:
            now: list[Any] = []
            waiting.addBoth(now.append)
            current = now[0]
            if isinstance(current, JSONProtocol) and current._closed:
                return deferLater(self._reactor, 0, lambda: None).addCallback(lambda _: self._connection())
            return fail(current) if isinstance(current, Failure) else succeed(current)
        handed: Deferred[JSONProtocol] = Deferred(lambda _: waiting.cancel())

        def hand_over(result: Any) -> None:
            def deliver() -> None:
                if handed.called:
                    return
                if isinstance(result, Failure):
                    handed.errback(result)
                else:
                    handed.callback(result)

            self._reactor.callLater(0, deliver)

        waiting.addBoth(hand_over)
        return handed
