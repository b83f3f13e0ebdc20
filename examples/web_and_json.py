"""
A JSON service next to a twisted.web site, on one reactor, sharing state.

The JSON-RPC side takes notes (C{add_note(text)}, C{notes()}); the web side
shows them (C{GET /} is a page, C{GET /notes} is the list as JSON) and also
serves the JSON-RPC service itself at C{POST /rpc}, mounted in the same site
(L{jsonservice.web.JSONResource}, sharing the line listener's factory: one
set of limits, one drain).  Both listen on any Twisted endpoint; run it with

    python examples/web_and_json.py [JSON_ENDPOINT] [WEB_ENDPOINT]

(defaults C{tcp:8080:interface=127.0.0.1} and C{tcp:8000:interface=127.0.0.1}),
or put L{make_service} in a C{.tac} file for C{twistd -ny}.
"""

from __future__ import annotations

import html
import json
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from jsonservice import JSONServerFactory, JSONServerService, JSONService
from jsonservice.web import JSONResource, harden_site

JSON_ENDPOINT = "tcp:8080:interface=127.0.0.1"
WEB_ENDPOINT = "tcp:8000:interface=127.0.0.1"


class Notes:
    """The state both sides share: a list of notes."""

    def __init__(self) -> None:
        self.items: list[str] = []


def make_json_service(notes: Notes) -> JSONService:
    """The JSON-RPC side: C{add_note(text)} and C{notes()}."""
    service = JSONService()

    @service.method
    def add_note(text: str) -> int:
        """Store a note; return how many there are."""
        notes.items.append(str(text))
        return len(notes.items)

    @service.method("notes")
    def list_notes() -> list[str]:
        """Every note, oldest first."""
        return list(notes.items)

    return service


class NotesPage(Resource):
    """C{/}: the notes as an HTML list."""

    isLeaf = True

    def __init__(self, notes: Notes) -> None:
        super().__init__()
        self.notes = notes

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        items = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes.items)
        return f"<!doctype html><title>Notes</title><h1>Notes</h1><ul>{items}</ul>".encode()


class NotesJSON(Resource):
    """C{/notes}: the notes as a JSON array."""

    isLeaf = True

    def __init__(self, notes: Notes) -> None:
        super().__init__()
        self.notes = notes

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.notes.items).encode()


def make_site(notes: Notes, factory: JSONServerFactory) -> Site:
    """The web side: C{/}, C{/notes}, and the JSON-RPC service at C{POST /rpc}."""
    root = Resource()
    page = NotesPage(notes)
    root.putChild(b"", page)
    root.putChild(b"notes", NotesJSON(notes))
    root.putChild(b"rpc", JSONResource(factory))
    # Request bodies bounded by the factory's max_line_length, slow requests cut off.
    return harden_site(Site(root), factory)


def make_factories(notes: Notes | None = None) -> tuple[JSONServerFactory, Site]:
    """The JSON server factory and the web site, over the same notes."""
    notes = notes if notes is not None else Notes()
    factory = JSONServerFactory(make_json_service(notes))
    return factory, make_site(notes, factory)


def listen(
    reactor: Any, json_endpoint: str = JSON_ENDPOINT, web_endpoint: str = WEB_ENDPOINT
) -> Deferred[Any]:
    """
    Start both on C{reactor}.

    @return: a Deferred firing with the two listening ports (JSON, web).
    """
    factory, site = make_factories()
    return gatherResults(
        [
            serverFromString(reactor, json_endpoint).listen(factory),
            serverFromString(reactor, web_endpoint).listen(site),
        ]
    )


def make_service(
    reactor: Any, json_endpoint: str = JSON_ENDPOINT, web_endpoint: str = WEB_ENDPOINT
) -> MultiService:
    """
    Both as one Twisted service (for a C{.tac} file): stopping it stops
    listening, then drains the JSON connections gracefully.
    """
    factory, site = make_factories()
    top = MultiService()
    JSONServerService(factory).setServiceParent(top)  # stopped last: after the ports close
    StreamServerEndpointService(serverFromString(reactor, json_endpoint), factory).setServiceParent(top)
    StreamServerEndpointService(serverFromString(reactor, web_endpoint), site).setServiceParent(top)
    return top


def main(
    reactor: Any, json_endpoint: str = JSON_ENDPOINT, web_endpoint: str = WEB_ENDPOINT
) -> Deferred[None]:
    """Serve both until interrupted."""
    d = listen(reactor, json_endpoint, web_endpoint)

    def serving(ports: list[Any]) -> Deferred[None]:
        json_port, web_port = (port.getHost() for port in ports)
        print(f"JSON on {json_port.host}:{json_port.port}, web on http://{web_port.host}:{web_port.port}/")
        return Deferred()  # forever

    return d.addCallback(serving)


if __name__ == "__main__":
    from twisted.internet.task import react

    react(main, sys.argv[1:])
