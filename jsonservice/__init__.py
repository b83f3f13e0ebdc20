"""
jsonservice: newline-delimited JSON and JSON-RPC 2.0 services for Twisted.

    from jsonservice import JSONService, JSONServerFactory

    service = JSONService()

    @service.method
    def subtract(minuend, subtrahend):
        return minuend - subtrahend

    serverFromString(reactor, "tcp:8080").listen(JSONServerFactory(service))
"""

from .client import JSONClientFactory, ReconnectingClient, connect
from .errors import (
    BatchTooLarge,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    RequestCancelled,
    RequestTimeout,
    RPCError,
    ServerBusy,
)
from .limits import Limits
from .protocol import CallTimeout, ConnectionClosed, JSONProtocol
from .server import JSONServerFactory, JSONServerService
from .service import CallContext, JSONService

__version__ = "0.1.0"

__all__ = [
    "BatchTooLarge",
    "CallContext",
    "CallTimeout",
    "ConnectionClosed",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "JSONClientFactory",
    "JSONProtocol",
    "JSONServerFactory",
    "JSONServerService",
    "JSONService",
    "Limits",
    "MessageTooLarge",
    "MethodNotFound",
    "ParseError",
    "RPCError",
    "ReconnectingClient",
    "RequestCancelled",
    "RequestTimeout",
    "ServerBusy",
    "__version__",
    "connect",
]
