"""
The pages of the C{--http} site besides the JSON-RPC endpoints: the
OpenRPC document and the explorer's files (package data: no network, no
build step).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Final

from twisted.web.resource import Resource

from .codec import dumps
from .errors import Unauthorized
from .jsonrpc import error_reply

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .server import JSONServerFactory
    from .service import JSONService

__all__ = ["EXPLORER_FILES", "ExplorerPage", "NoContent", "OpenRPCDocument"]

_JSON: Final = b"application/json"


def _authorized(request: Request, expected: bytes | None) -> bool:
    from .web import bearer_token, token_ok

    return token_ok(expected, bearer_token(request))


class OpenRPCDocument(Resource):
    """C{GET}: the service's OpenRPC document (what C{rpc.discover} answers)."""

    isLeaf = True

    def __init__(self, factory: JSONServerFactory) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.factory = factory

    def render_GET(self, request: Request) -> bytes:
        """The document, as C{application/json}; 401 without the token, when one is set."""
        request.setHeader(b"content-type", _JSON)
        if not _authorized(request, self.factory.auth_token):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b"Bearer")
            return dumps(error_reply(None, Unauthorized(data="Authorization: Bearer TOKEN")))
        service: JSONService = self.factory.service  # type: ignore[assignment]
        return dumps(service._document())


#: The explorer's files, served from the package (no network, no build step).
EXPLORER_FILES: Final = {
    b"": ("index.html", b"text/html; charset=utf-8"),
    b"explorer.js": ("explorer.js", b"text/javascript; charset=utf-8"),
    b"explorer.css": ("explorer.css", b"text/css; charset=utf-8"),
}


class ExplorerPage(Resource):
    """C{GET}: one of the explorer page's files (package data)."""

    isLeaf = True

    def __init__(self, name: str, content_type: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body = (resources.files("jsonservice") / "explorer" / name).read_bytes()
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        """The file, with headers that keep it to this origin."""
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", b"default-src 'self'; connect-src 'self'")
        request.setHeader(b"cache-control", b"no-cache")
        return self.body


class NoContent(Resource):
    """C{GET}: 204, nothing (C{/favicon.ico}: browsers ask for it; a 404 would be logged)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render_GET(self, request: Request) -> bytes:
        """No content."""
        request.setResponseCode(204)
        return b""
