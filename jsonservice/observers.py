"""
Watching requests: the L{RequestObserver} interface a factory's
connections report to (metrics, request logs), the outcome labels, and
L{RequestLog}, the observer behind C{--log-requests}.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING

from twisted.logger import Logger

from .errors import OUTCOMES, outcome_of

if TYPE_CHECKING:
    from .protocol import JSONProtocol

__all__ = ["OUTCOMES", "RequestLog", "RequestObserver", "outcome_of"]


class RequestObserver(typing.Protocol):
    """
    What a factory's observers implement to watch requests (metrics,
    request logs).  Installed with C{JSONFactoryBase.add_observer}; with
    none installed a request costs nothing extra.
    """

    def request_done(self, proto: JSONProtocol, method: str, outcome: str, seconds: float) -> None:
        """
        One request or plain message finished.

        @param method: the method name; C{"<message>"} for a plain message,
            C{"<unknown>"} for a method that does not exist.
        @param outcome: C{"ok"} or an L{OUTCOMES} value.
        @param seconds: how long its handler ran.
        """

    def limit_breached(self, proto: JSONProtocol | None, limit: str) -> None:
        """
        A limit of L{Limits} (named by its field, or C{"auth"} /
        C{"auth_timeout"}) was hit on C{proto} (L{None}: by the factory).
        """


class RequestLog:
    """
    Logs every request at info level: a L{RequestObserver
    <RequestObserver>} installed by C{log_requests=True}
    (C{--log-requests}).
    """

    def __init__(self) -> None:
        # An instance attribute: a Logger class attribute is a descriptor
        # that would replace the namespace with "jsonservice.server.RequestLog".
        self.log = Logger(namespace="jsonservice.requests", source=self)

    def request_done(self, proto: JSONProtocol, method: str, outcome: str, seconds: float) -> None:
        """Log one finished request."""
        self.log.info(
            "{peer} {method} {outcome} {ms:.3f}ms",
            peer=proto.peer,
            method=method,
            outcome=outcome,
            ms=seconds * 1000,
        )

    def limit_breached(self, proto: JSONProtocol | None, limit: str) -> None:
        """Log one limit breach."""
        self.log.info("{peer} hit limit {limit}", peer=proto.peer if proto else None, limit=limit)
