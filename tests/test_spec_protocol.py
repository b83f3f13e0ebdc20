"""
Every example of the JSON-RPC 2.0 specification (section 7), sent through
a real L{JSONProtocol} serving the spec's methods, must get the spec's
answer.  The examples are data in L{spec_examples}; here they go through
framing, dispatch, batching and reply writing.

The spec allows a batch response in any order, so batches are compared as
multisets; the spec's error objects have no C{data}, so ours are compared
without it (and checked to be informative when present).
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import orjson
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from jsonservice import JSONService
from jsonservice.protocol import JSONProtocol

try:
    from tests.memory_helpers import connected_pair, parse_lines, server_on_string_transport
    from tests.spec_examples import EXAMPLE_METHODS, EXAMPLES, NO_RESPONSE, SpecExample, without_error_data
except ImportError:  # pragma: no cover - tests/ on sys.path (rootdir import mode)
    from memory_helpers import connected_pair, parse_lines, server_on_string_transport
    from spec_examples import EXAMPLE_METHODS, EXAMPLES, NO_RESPONSE, SpecExample, without_error_data


def spec_service() -> JSONService:
    """A service implementing the methods the spec's examples call (synchronously)."""
    service = JSONService()
    for name, func in EXAMPLE_METHODS.items():
        service.add_method(name, func)
    return service


def async_spec_service(clock: Clock, rng: random.Random) -> JSONService:
    """The same methods, each finishing after a random delay on C{clock}."""
    service = JSONService()

    def delayed(func: Any) -> Any:
        def handler(*args: Any, **kwargs: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            clock.callLater(rng.uniform(0, 1), lambda: d.callback(func(*args, **kwargs)))
            return d

        # Keep the signature so params are still checked before the call.
        handler.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
        return handler

    for name, func in EXAMPLE_METHODS.items():
        service.add_method(name, delayed(func))
    return service


def canonical(response: Any) -> Any:
    """A response without error data; a batch as a sorted list (a multiset)."""
    response = without_error_data(response)
    if isinstance(response, list):
        return sorted(orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in response)
    return response


def as_key(response: Any) -> bytes:
    """A hashable, order-insensitive (for batches) form of a response."""
    value = canonical(response)
    if isinstance(value, list):
        return b"[" + b",".join(value) + b"]"
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def check_reply(example: SpecExample, written: bytes) -> None:
    replies = parse_lines(written)
    if example.response is NO_RESPONSE:
        assert replies == [], f"{example.name}: the spec says nothing is returned"
        return
    assert len(replies) == 1, f"{example.name}: one line expected, got {replies!r}"
    [reply] = replies
    assert type(reply) is type(example.response), example.name
    assert canonical(reply) == canonical(example.response), example.name
    # Where we add error data, it is there to help: never empty.
    for item in reply if isinstance(reply, list) else [reply]:
        if "error" in item and "data" in item["error"]:
            assert item["error"]["data"] not in (None, "", {}, []), example.name


def test_examples_present() -> None:
    names = {example.name for example in EXAMPLES}
    assert len(EXAMPLES) >= 14
    assert {"positional_1", "named_1", "batch", "batch_all_notifications", "empty_array"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_on_fresh_connection(example: SpecExample) -> None:
    proto, transport, _ = server_on_string_transport(spec_service())
    proto.dataReceived(example.request)
    check_reply(example, transport.value())
    assert len(transport.writes) <= 1
    assert not transport.disconnecting


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_unterminated(example: SpecExample) -> None:
    """Sent the classic way, without the newline: the same answer."""
    proto, transport, clock = server_on_string_transport(spec_service())
    proto.dataReceived(example.request.rstrip(b"\n"))
    clock.advance(1)
    if example.name == "batch_invalid_json":
        # Its brackets never balance, so the framer cannot tell it is over:
        # the peer half-closing (or a newline) ends it.
        assert transport.value() == b""
        proto.readConnectionLost()
    check_reply(example, transport.value())


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_then_half_close(example: SpecExample) -> None:
    """A peer that shuts down its sending side after the request gets the same answer, then the close."""
    proto, transport, _ = server_on_string_transport(spec_service())
    proto.dataReceived(example.request)
    proto.readConnectionLost()
    check_reply(example, transport.value())
    assert transport.disconnecting


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_byte_by_byte(example: SpecExample) -> None:
    proto, transport, clock = server_on_string_transport(spec_service())
    for i in range(len(example.request)):
        proto.dataReceived(example.request[i : i + 1])
    clock.advance(1)
    check_reply(example, transport.value())


def test_all_examples_on_one_connection() -> None:
    """In sequence on one connection: errors (parse errors included) never end it."""
    proto, transport, _ = server_on_string_transport(spec_service())
    for example in EXAMPLES:
        proto.dataReceived(example.request)
        check_reply(example, transport.value())
        transport.clear()
    assert not transport.disconnecting


def test_all_examples_in_one_chunk() -> None:
    """Pipelined in one chunk: the replies come in one write, in order."""
    proto, transport, _ = server_on_string_transport(spec_service())
    proto.dataReceived(b"".join(example.request for example in EXAMPLES))
    assert len(transport.writes) == 1
    replies = parse_lines(transport.value())
    expected = [e.response for e in EXAMPLES if e.response is not NO_RESPONSE]
    assert [canonical(r) for r in replies] == [canonical(e) for e in expected]


@pytest.mark.parametrize("seed", range(3))
def test_all_examples_with_async_handlers(seed: int) -> None:
    """
    The methods finish out of order, after random delays: the same
    answers (batches assembled once every item is done).
    """
    clock = Clock()
    rng = random.Random(seed)
    proto, transport, _ = server_on_string_transport(async_spec_service(clock, rng), clock)
    proto.dataReceived(b"".join(example.request for example in EXAMPLES))
    clock.advance(2)
    replies = parse_lines(transport.value())
    expected = [e.response for e in EXAMPLES if e.response is not NO_RESPONSE]
    # Replies come as handlers finish: compare the whole set.
    assert sorted(map(as_key, replies)) == sorted(map(as_key, expected))
    # The synchronous parse and request errors were not held behind the handlers.
    assert replies[0]["error"]["code"] in (-32601, -32700, -32600)
    assert proto.in_flight == 0


def test_spec_calls_from_a_client() -> None:
    """The positional and named subtract calls, made by a JSONProtocol client."""
    pair = connected_pair(spec_service())
    results: list[Any] = []
    client: JSONProtocol = pair.client
    client.call("subtract", 42, 23).addCallback(results.append)
    client.call("subtract", 23, 42).addCallback(results.append)
    client.call("subtract", subtrahend=23, minuend=42).addCallback(results.append)
    client.call("subtract", minuend=42, subtrahend=23).addCallback(results.append)
    client.call("sum", 1, 2, 4).addCallback(results.append)
    client.call("get_data").addCallback(results.append)
    client.notify("update", 1, 2, 3, 4, 5)
    client.notify("foobar")
    pair.flush()
    assert results == [19, -19, 19, 19, 7, ["hello", 5]]
    assert client.pending == 0
