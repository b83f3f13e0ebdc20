"""
L{HTTPClient}: calls, notifications and plain messages to a service served
over HTTP (L{jsonservice.web}), one C{POST} each, with the C{call},
C{request}, C{notify} and C{send} of a L{JSONProtocol} — except that each
returns a Deferred, a notification's firing once the server took it (204).
The command line's C{--connect http://...} uses it.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from .codec import dumps, loads
from .errors import ParseError, RPCError
from .jsonrpc import make_params, notification, request

__all__ = ["HTTPClient", "HTTPError", "ReplyTooLarge"]

#: The largest reply body L{HTTPClient} takes by default: the line
#: protocol's C{max_line_length}.
MAX_REPLY = 1 << 20


class HTTPError(Exception):
    """The server answered with something that is not a JSON-RPC reply (a 404 page, say)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: not a JSON reply: {body[:200]!r}")
        self.status = status
        self.body = body


class ReplyTooLarge(HTTPError):
    """The reply's body is longer than the client takes (C{max_reply}): not read further."""

    def __init__(self, status: int, limit: int) -> None:
        Exception.__init__(self, f"HTTP {status}: the reply is longer than {limit} bytes (max_reply)")
        self.status = status
        self.body = b""


class _Body(Protocol):
    """Collects a response body up to a limit; past it, stops the transfer and fails."""

    def __init__(self, status: int, limit: int, done: Deferred[bytes]) -> None:
        self._status = status
        self._limit = limit
        self._done: Deferred[bytes] | None = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done is None:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._parts = []
            self.transport.stopProducing()  # type: ignore[union-attr]
            self._fail(Failure(ReplyTooLarge(self._status, self._limit)))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            done.callback(b"".join(self._parts))
        else:
            done.errback(reason)

    def _fail(self, failure: Failure) -> None:
        done, self._done = self._done, None
        if done is not None:
            done.errback(failure)


def _read_body(response: Any, limit: int) -> Deferred[bytes]:
    """The body of C{response}, failing with L{ReplyTooLarge} past C{limit} bytes."""
    done: Deferred[bytes] = Deferred(lambda _: body.transport.stopProducing())  # type: ignore[union-attr]
    body = _Body(response.code, limit, done)
    response.deliverBody(body)
    if response.length is not UNKNOWN_LENGTH and response.length > limit:
        # Announced too long: not read at all.
        body.transport.stopProducing()  # type: ignore[union-attr]
        body._fail(Failure(ReplyTooLarge(response.code, limit)))
    return done


class HTTPClient:
    """
    A JSON-RPC client over HTTP: C{HTTPClient(reactor, "http://127.0.0.1:8081/rpc")}.
    Connections are kept alive and reused; L{close} closes them.
    """

    def __init__(
        self,
        reactor: Any,
        url: str,
        *,
        auth_token: str | None = None,
        call_timeout: float = 0.0,
        max_reply: int = MAX_REPLY,
    ) -> None:
        """
        @param url: the resource's URL (C{http://} or C{https://}, the
            latter needs the C{tls} extra).
        @param auth_token: sent as C{Authorization: Bearer TOKEN}.
        @param call_timeout: default seconds to wait for a reply (0: forever).
        @param max_reply: the longest reply body taken, in bytes; a longer
            one is not read further and fails the call with L{ReplyTooLarge}.
        """
        self.max_reply = max_reply
        self._reactor = reactor
        self.url = url.encode("ascii")
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._agent = Agent(reactor, pool=self._pool)
        headers = {b"content-type": [b"application/json"]}
        if auth_token is not None:
            headers[b"authorization"] = [b"Bearer " + auth_token.encode("utf-8")]
        self._headers = headers
        self.call_timeout = call_timeout
        self._next_id = 1

    def post(self, body: bytes, timeout: float | None = None) -> Deferred[tuple[int, bytes]]:
        """POST C{body}; fires with the status and the response body."""
        d = self._agent.request(b"POST", self.url, Headers(self._headers), FileBodyProducer(BytesIO(body)))

        def read(response: Any) -> Deferred[tuple[int, bytes]]:
            return _read_body(response, self.max_reply).addCallback(lambda data: (response.code, data))

        answered: Deferred[tuple[int, bytes]] = d.addCallback(read)
        seconds = self.call_timeout if timeout is None else timeout
        if seconds:
            answered.addTimeout(seconds, self._reactor)
        return answered

    def _reply(self, answer: tuple[int, bytes]) -> Any:
        status, body = answer
        if status == 204:
            return None
        try:
            return loads(body)
        except ParseError:
            raise HTTPError(status, body) from None

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Deferred[Any]:
        """Call C{method} with positional C{args} or named C{kwargs}; fires with the result."""
        return self.request(method, make_params(args, kwargs), timeout=timeout)

    def request(
        self, method: str, params: list[Any] | dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """Like L{call}, with the params as one list or dict; fails with the L{RPCError} answered."""
        id_ = self._next_id
        self._next_id += 1

        def result(answer: tuple[int, bytes]) -> Any:
            reply = self._reply(answer)
            if isinstance(reply, dict) and "error" in reply and isinstance(reply["error"], dict):
                raise RPCError.from_dict(reply["error"])
            if not isinstance(reply, dict) or "result" not in reply:
                raise HTTPError(answer[0], answer[1])
            return reply["result"]

        return self.post(dumps(request(method, params, id_)), timeout).addCallback(result)

    def notify(self, method: str, *args: Any, **kwargs: Any) -> Deferred[None]:
        """Send a notification; fires once the server took it."""
        return self.notify_params(method, make_params(args, kwargs))

    def notify_params(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> Deferred[None]:
        """Like L{notify}, with the params as one list or dict."""

        def taken(answer: tuple[int, bytes]) -> None:
            reply = self._reply(answer)
            if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
                raise RPCError.from_dict(reply["error"])  # e.g. -32004: not even taken

        return self.post(dumps(notification(method, params))).addCallback(taken)

    def send(self, message: Any, *, timeout: float | None = None) -> Deferred[Any]:
        """Send a plain JSON message; fires with the plain reply (L{None}: none)."""

        def reply(answer: tuple[int, bytes]) -> Any:
            value = self._reply(answer)
            if (
                isinstance(value, dict)
                and value.get("jsonrpc") == "2.0"
                and isinstance(value.get("error"), dict)
            ):
                raise RPCError.from_dict(value["error"])
            return value

        return self.post(dumps(message), timeout).addCallback(reply)

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections."""
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed
