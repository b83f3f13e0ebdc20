"""
The token gate: with a token required, a connection is served nothing but
C{rpc.authenticate} and C{rpc.ping} until it presents the token, and a
wrong token ends the connection before anything else on it is read.

L{AuthGate} is Twisted-free: it plugs into the connection core as a gate
(a responder put in front of each request) and a special method.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Final

from .errors import Unauthorized

__all__ = ["AUTH_METHOD", "PING_METHOD", "AuthGate"]

#: The method a connection calls first when the server requires a token:
#: C{{"jsonrpc": "2.0", "method": "rpc.authenticate", "params": {"token": "..."}, "id": 1}}.
AUTH_METHOD: Final = "rpc.authenticate"
#: Served before authentication too: a health check that tells nothing but "up".
PING_METHOD: Final = "rpc.ping"

_NOT_YET: Final = f"authenticate first: call {AUTH_METHOD} with the token"


def _token_of(params: Any) -> bytes:
    token = params.get("token") if params.__class__ is dict else (params[0] if params else None)
    return token.encode("utf-8", "surrogatepass") if isinstance(token, str) else b""


class AuthGate:
    """
    One connection's authentication state.

    @ivar authenticated: whether the peer presented the token (always
        L{True} when no token is required).
    """

    def __init__(
        self, token: bytes | None, on_success: Callable[[], None], on_failure: Callable[[], None]
    ) -> None:
        """
        @param token: the token required (L{None}: none, and
            C{rpc.authenticate} answers L{True} to anything).
        @param on_success: called once the right token arrived.
        @param on_failure: called on a wrong or missing token, after which
            nothing more is read (the host closes the connection).
        """
        self._token = token
        self._on_success = on_success
        self._on_failure = on_failure
        self.authenticated = token is None

    def responder_for(self, method: str | None) -> Callable[[Any, Any, Any], Any] | None:
        """
        The gate: before authentication every request (C{method}) and plain
        message (L{None}) but C{rpc.authenticate} and C{rpc.ping} is answered
        -32004; L{None} lets it through.
        """
        if self.authenticated or method in (PING_METHOD, AUTH_METHOD):
            return None
        return self._unauthorized

    @staticmethod
    def _unauthorized(params: Any, id_: Any, owner: Any) -> Any:
        raise Unauthorized(data=_NOT_YET)

    def authenticate(self, params: Any, id_: Any, owner: Any) -> bool:
        """
        The C{rpc.authenticate} responder: the token is compared in constant
        time, before and after authentication alike.

        @raise Unauthorized: wrong or missing token (the connection then closes).
        """
        if self._token is None:
            return True
        given = _token_of(params)
        if given and hmac.compare_digest(given, self._token):
            if not self.authenticated:
                self.authenticated = True
                self._on_success()
            return True
        self.authenticated = False
        self._on_failure()
        raise Unauthorized(data="wrong token")
