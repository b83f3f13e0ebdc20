"""
The test kit under trial: C{python -m twisted.trial tests.test_trial_kit}
(pytest runs these too).

They are L{SynchronousTestCase}s on purpose: L{jsonservice.testing}'s
in-memory pair needs no reactor, and a reactor-spinning trial C{TestCase}
mixed with pytest-twisted tests in one pytest session can leave the reactor
dirty (DESIGN §8).
"""

# These are trial tests: trial's own assertions are the point here.
# ruff: noqa: PT009, PT027

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jsonservice import CallContext, ConnectionClosed, JSONService, RequestTimeout, RPCError
from jsonservice.testing import MemoryServer, connected_pair


def make_service() -> JSONService:
    """A small service: arithmetic, a handler that never ends, a call back."""
    service = JSONService()

    @service.method
    def add(*numbers: int) -> int:
        return sum(numbers)

    @service.method
    def forever() -> Deferred[None]:
        return Deferred()

    @service.method(context=True)
    def greet_back(ctx: CallContext, name: str) -> Deferred[Any]:
        return ctx.call("greet", name)

    return service


class ConnectedPairTests(SynchronousTestCase):
    """L{connected_pair} with trial's own assertions."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.pair = connected_pair(make_service(), clock=self.clock, request_timeout=10)

    def test_call(self) -> None:
        """trial's C{successResultOf} works once the pair is flushed."""
        d = self.pair.client.call("add", 1, 2, 3)
        self.assertNoResult(d)
        self.pair.flush()
        self.assertEqual(self.successResultOf(d), 6)
        self.assertEqual(
            self.pair.sent_by_client,
            [{"jsonrpc": "2.0", "method": "add", "params": [1, 2, 3], "id": 1}],
        )
        self.assertEqual(self.pair.sent_by_server, [{"jsonrpc": "2.0", "result": 6, "id": 1}])

    def test_result_of(self) -> None:
        """The pair's own C{result_of} flushes first."""
        self.assertEqual(self.pair.result_of(self.pair.client.call("add")), 0)

    def test_timeout_on_the_given_clock(self) -> None:
        d = self.pair.client.call("forever")
        self.pair.flush()
        self.clock.advance(9)
        self.pair.flush()
        self.assertNoResult(d)
        self.pair.advance(1)
        self.failureResultOf(d, RequestTimeout)

    def test_error_code(self) -> None:
        failure = self.pair.failure_of(self.pair.client.call("nothing"), RPCError)
        self.assertEqual(failure.value.code, -32601)  # type: ignore[attr-defined]

    def test_call_back_to_the_client(self) -> None:
        client_service = JSONService()
        client_service.add_method("greet", lambda name: f"hello {name}")
        pair = connected_pair(make_service(), client_service)
        self.assertEqual(pair.result_of(pair.client.call("greet_back", "trial")), "hello trial")

    def test_disconnect(self) -> None:
        d = self.pair.client.call("forever")
        self.pair.disconnect()
        self.failureResultOf(d, ConnectionClosed)
        self.assertFalse(self.pair.connected)

    def test_not_fired(self) -> None:
        d = self.pair.client.call("forever")
        self.assertRaises(AssertionError, self.pair.result_of, d)


class MemoryServerTests(SynchronousTestCase):
    """Several in-memory clients of one server factory."""

    def test_two_clients(self) -> None:
        server = MemoryServer(make_service())
        first, second = server.connect(), server.connect()
        self.assertEqual(len(server.factory.connections), 2)
        d1 = first.client.call("add", 1)
        d2 = second.client.call("add", 2)
        server.flush()
        self.assertEqual((self.successResultOf(d1), self.successResultOf(d2)), (1, 2))
        first.disconnect()
        self.assertEqual(server.factory.connections, {second.server})
