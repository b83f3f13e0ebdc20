"""
pytest fixtures for testing code built on jsonservice.

Installing jsonservice registers this module as a pytest plugin (the
C{jsonservice} entry point of group C{pytest11}), so the fixtures below are
there in every test; C{-p no:jsonservice} turns it off.  Importing it costs
nothing: it imports neither Twisted's reactor nor the rest of jsonservice
until a fixture is used.

In memory (no reactor, no ports; works with or without pytest-twisted):

B{C{jsonservice_pair}} is L{jsonservice.testing.connected_pair}, the
factory of in-memory client/server pairs on a
L{Clock<twisted.internet.task.Clock>}::

    def test_echo(jsonservice_pair):
        pair = jsonservice_pair(make_my_service())
        assert pair.result_of(pair.client.call("echo", 1)) == 1

Over real loopback TCP with the global reactor (these need pytest-twisted):

B{C{jsonservice_service}} is the L{JSONService<jsonservice.service.JSONService>}
the two fixtures below serve when not told otherwise: the built-in demo
(C{echo}, C{ping}, a greeting for plain messages).  Override it in a
C{conftest.py}, a test module or a test class to serve yours.

B{C{jsonservice_server}} is a factory: C{jsonservice_server(service=None,
**limits)} listens on an ephemeral 127.0.0.1 port at once and returns a
L{LoopbackServer<jsonservice.testing.LoopbackServer>} with C{.port},
C{.endpoint} (a client description such as C{"tcp:127.0.0.1:43210"}),
C{.factory} and C{.connect(service=None, **limits)} (a Deferred firing with
a connected client L{JSONProtocol<jsonservice.protocol.JSONProtocol>}).
C{service} may also be a ready
L{JSONServerFactory<jsonservice.server.JSONServerFactory>}.  At teardown
every server it started is closed, with its clients, and the fixture waits
(at most 5 s) until every connection and port is really gone, so the
reactor is left clean::

    @pytest_twisted.ensureDeferred
    async def test_two_clients(jsonservice_server):
        server = jsonservice_server(make_my_service(), request_timeout=1)
        alice, bob = await server.connect(), await server.connect()
        assert await alice.call("ping") == "pong"

B{C{jsonservice_client}} is a client
L{JSONProtocol<jsonservice.protocol.JSONProtocol>} already connected to a
fresh C{jsonservice_server()} serving C{jsonservice_service}; it is closed
at teardown::

    @pytest.fixture
    def jsonservice_service():
        return make_my_service()

    @pytest_twisted.ensureDeferred
    async def test_ping(jsonservice_client):
        assert await jsonservice_client.call("ping") == "pong"

Asynchronous test functions need pytest-twisted's
C{@pytest_twisted.ensureDeferred} (or C{inlineCallbacks}); give what you
await a timeout (C{d.addTimeout(5, reactor)}), since pytest-twisted has no
hang protection of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .protocol import JSONProtocol
    from .service import JSONService
    from .testing import ConnectedPair, LoopbackServer

__all__ = ["jsonservice_client", "jsonservice_pair", "jsonservice_server", "jsonservice_service"]

#: Seconds the loopback fixtures wait for a connection to be made, or for
#: everything to close at teardown, before failing the test.
TIMEOUT = 5.0


def _blockon(request: pytest.FixtureRequest, what: str) -> Callable[[Any], Any]:
    """pytest-twisted's C{blockon}, or a clear failure without pytest-twisted."""
    if not request.config.pluginmanager.hasplugin("twisted"):
        pytest.fail(f"the {what} fixture needs pytest-twisted (pip install pytest-twisted)", pytrace=False)
    # (imported by name: pytest-twisted has no type information)
    blockon: Callable[[Any], Any] = importlib.import_module("pytest_twisted").blockon
    return blockon


@pytest.fixture
def jsonservice_pair() -> Callable[..., ConnectedPair]:
    """
    L{jsonservice.testing.connected_pair}: C{jsonservice_pair(service,
    client_service=None, clock=None, **limits)} returns an in-memory
    L{ConnectedPair<jsonservice.testing.ConnectedPair>}.
    """
    from .testing import connected_pair

    return connected_pair


@pytest.fixture
def jsonservice_service() -> JSONService:
    """
    The service C{jsonservice_server()} and C{jsonservice_client} serve by
    default: a fresh demo service.  Override this fixture to serve yours.
    """
    from .demo import make_demo_service

    return make_demo_service()


@pytest.fixture
def jsonservice_server(
    request: pytest.FixtureRequest, jsonservice_service: JSONService
) -> Iterator[Callable[..., LoopbackServer]]:
    """
    A factory of servers on ephemeral 127.0.0.1 ports of the global
    reactor: C{jsonservice_server(service=None, **limits)} returns a
    listening L{LoopbackServer<jsonservice.testing.LoopbackServer>}
    (C{service} defaults to the C{jsonservice_service} fixture).  All of
    them, and their clients, are closed at teardown.
    """
    blockon = _blockon(request, "jsonservice_server")
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList

    from .testing import listen_loopback

    servers: list[LoopbackServer] = []

    def start(service: JSONService | None = None, **limits: Any) -> LoopbackServer:
        served = jsonservice_service if service is None else service
        server = listen_loopback(served, reactor, **limits)
        servers.append(server)
        return server

    yield start
    if servers:
        closing = DeferredList([server.close(TIMEOUT) for server in servers], consumeErrors=True)
        for ok, outcome in blockon(closing):
            if not ok:
                outcome.raiseException()


@pytest.fixture
def jsonservice_client(
    request: pytest.FixtureRequest, jsonservice_server: Callable[..., LoopbackServer]
) -> JSONProtocol:
    """
    A client L{JSONProtocol<jsonservice.protocol.JSONProtocol>} connected
    over loopback to a new server serving the C{jsonservice_service}
    fixture; it is closed (with the server) at teardown.
    """
    blockon = _blockon(request, "jsonservice_client")
    server = jsonservice_server()
    client: JSONProtocol = blockon(server.connect(timeout=TIMEOUT))
    return client
