"""
jsonservice: newline-delimited JSON and JSON-RPC 2.0 services for Twisted::

    from jsonservice import JSONService, JSONServerFactory

    service = JSONService()

    @service.method
    def subtract(minuend, subtrahend):
        return minuend - subtrahend

    serverFromString(reactor, "tcp:8080").listen(JSONServerFactory(service))

The public names are imported on first use, so the sans-IO layers
(L{jsonservice.codec}, L{jsonservice.jsonrpc}) can be used without
importing Twisted at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._mypyc import compiled
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
        Unauthorized,
    )
    from .limits import Limits
    from .protocol import CallTimeout, ConnectionClosed, JSONProtocol
    from .server import JSONServerFactory, JSONServerService
    from .service import CallContext, JSONService
    from .typed import ConversionError

__version__ = "0.1.0"

_WHERE = {
    "JSONClientFactory": "client",
    "ReconnectingClient": "client",
    "connect": "client",
    "BatchTooLarge": "errors",
    "InternalError": "errors",
    "InvalidParams": "errors",
    "InvalidRequest": "errors",
    "MessageTooLarge": "errors",
    "MethodNotFound": "errors",
    "ParseError": "errors",
    "RPCError": "errors",
    "RequestCancelled": "errors",
    "RequestTimeout": "errors",
    "ServerBusy": "errors",
    "Unauthorized": "errors",
    "Limits": "limits",
    "CallTimeout": "protocol",
    "ConnectionClosed": "protocol",
    "JSONProtocol": "protocol",
    "JSONServerFactory": "server",
    "JSONServerService": "server",
    "CallContext": "service",
    "JSONService": "service",
    "ConversionError": "typed",
    "compiled": "_mypyc",
}

__all__ = [
    "BatchTooLarge",
    "CallContext",
    "CallTimeout",
    "ConnectionClosed",
    "ConversionError",
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
    "Unauthorized",
    "__version__",
    "compiled",
    "connect",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'jsonservice' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
