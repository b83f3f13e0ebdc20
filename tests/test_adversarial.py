"""
The adversarial suite (issue 5 item 5): hostile or broken input and peers.

Every case checks three things: the clear error the sender gets, that the
connection (or server) is still serving, and that nothing else was lost —
a good request sent on the same connection before and after the bad input
is answered, whether they arrive in separate reads or in the same read.

Everything runs in memory (L{StringTransport} + L{Clock}) except the
slowloris case, which needs real loopback sockets.
"""

from __future__ import annotations

import gc
import json
import re
import resource
import tracemalloc
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

import jsonservice
from jsonservice import JSONServerFactory

try:
    from tests.reliability_helpers import (
        CapturedLog,
        Wire,
        good_request,
        good_result,
        hostile_service,
    )
except ImportError:  # run from inside tests/
    from reliability_helpers import (  # type: ignore[no-redef]
        CapturedLog,
        Wire,
        good_request,
        good_result,
        hostile_service,
    )

MiB = 1024 * 1024
BEFORE, AFTER = good_request("before"), good_request("after")


def error_of(reply: dict[str, Any], code: int, id: Any = None) -> Any:
    """Assert C{reply} is a JSON-RPC error with C{code} and C{id}; return its data."""
    assert reply.get("jsonrpc") == "2.0", reply
    assert "result" not in reply, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str)
    assert reply["error"]["message"]
    assert reply["id"] == id, reply
    return reply["error"].get("data")


def sandwich(bad: bytes, **limits: Any) -> tuple[list[Any], list[Any]]:
    """
    Send a good request, C{bad}, and a good request: once as three reads,
    once as one read, each on a fresh connection.  Check both good requests
    were answered around whatever C{bad} got, the same way both times, and
    that the connection still serves; return (replies to C{bad} from the
    separate reads, from the single read).
    """
    results = []
    for chunks in ((BEFORE, bad, AFTER), (BEFORE + bad + AFTER,)):
        wire = Wire(hostile_service(), **limits)
        replies = wire.exchange(*chunks)
        assert replies[0] == good_result("before"), replies[:1]
        assert replies[-1] == good_result("after"), replies[-1:]
        assert not wire.transport.disconnecting
        assert wire.exchange(good_request("still")) == [good_result("still")]
        results.append(replies[1:-1])
    separate, joined = results
    assert _without_error_ids(separate) == _without_error_ids(joined)
    return separate, joined


def _without_error_ids(replies: list[Any]) -> list[Any]:
    """C{replies} with every C{error.data.error_id} (fresh each time) masked."""
    text = json.dumps(replies)
    return json.loads(re.sub(r'"error_id": "[0-9a-f]+"', '"error_id": "*"', text))


def one_error(bad: bytes, code: int, id: Any = None, **limits: Any) -> Any:
    """L{sandwich}, expecting exactly one error reply to C{bad}; return its data."""
    replies, _ = sandwich(bad, **limits)
    assert len(replies) == 1, replies
    return error_of(replies[0], code, id)


# -- encoding: UTF-8, surrogates, NaN ----------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"\xff\xfe\n", id="not-utf8"),
        pytest.param(b'"\xc3\x28"\n', id="bad-continuation"),
        pytest.param(b'"\xc0\xaf"\n', id="overlong"),
        pytest.param(b'"\xe2\x82"\n', id="truncated-sequence"),
        pytest.param(b'"\xf8\x88\x80\x80\x80"\n', id="five-byte"),
        pytest.param(b'{"jsonrpc":"2.0","method":"echo","params":["\xfe"],"id":7}\n', id="in-request"),
        pytest.param(b'{"jsonrpc":"2.0","method":"echo","params":["\xfe"],"id":7}\r\n', id="in-request-crlf"),
        pytest.param(
            b'{"jsonrpc":"2.0","method":"echo","params":["\xfe", 18446744073709551616],"id":7}\n',
            id="in-request-big-int-decoder",
        ),
    ],
)
def test_invalid_utf8_is_a_parse_error(bad: bytes) -> None:
    data = one_error(bad, -32700)
    assert isinstance(data, str)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b'"\xed\xa0\x80"\n', id="raw-high"),
        pytest.param(b'"\xed\xbf\xbf"\n', id="raw-low"),
        pytest.param(b'"\\ud800"\n', id="escaped-high"),
        pytest.param(b'"\\udc00"\n', id="escaped-low"),
        pytest.param(b'"\\ud800x"\n', id="escaped-high-then-char"),
        pytest.param(b'"\\udc00\\ud800"\n', id="escaped-reversed-pair"),
        pytest.param(b'{"\\ud800":1}\n', id="escaped-in-key"),
        pytest.param(b'{"jsonrpc":"2.0","method":"echo","params":["\\ud800"],"id":7}\n', id="in-request"),
        pytest.param(
            b'{"jsonrpc":"2.0","method":"echo","params":["\\ud800", 18446744073709551616],"id":7}\n',
            id="in-request-big-int-decoder",
        ),
    ],
)
def test_lone_surrogates_are_a_parse_error(bad: bytes) -> None:
    one_error(bad, -32700)


def test_a_valid_surrogate_pair_is_fine() -> None:
    """The control case: an escaped pair is one character, echoed as UTF-8."""
    wire = Wire(hostile_service())
    reply = wire.exchange(b'{"jsonrpc":"2.0","method":"echo","params":["\\ud83d\\ude00"],"id":1}\n')
    assert reply == [{"jsonrpc": "2.0", "result": "\U0001f600", "id": 1}]


@pytest.mark.parametrize(
    "literal",
    [b"NaN", b"-NaN", b"nan", b"Infinity", b"-Infinity", b"inf", b"1e400", b"-1e400"],
)
@pytest.mark.parametrize("where", ["bare", "in-request", "in-request-big-int-decoder"])
def test_nan_and_infinity_are_a_parse_error(literal: bytes, where: str) -> None:
    if where == "bare":
        bad = b"[" + literal + b"]\n"
    elif where == "in-request":
        bad = b'{"jsonrpc":"2.0","method":"echo","params":[' + literal + b'],"id":7}\n'
    else:
        bad = b'{"jsonrpc":"2.0","method":"echo","params":[' + literal + b',18446744073709551616],"id":7}\n'
    one_error(bad, -32700)


# -- nesting -------------------------------------------------------------------


DEEP = 100_000


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"[" * DEEP + b"]" * DEEP + b"\n", id="arrays"),
        pytest.param(b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"\n", id="objects"),
        pytest.param(b'[{"a":' * (DEEP // 2) + b"1" + b"}]" * (DEEP // 2) + b"\n", id="mixed"),
        pytest.param(b"[" * DEEP + b"\n", id="unclosed"),
        pytest.param(b"[" * DEEP + b"18446744073709551616" + b"]" * DEEP + b"\n", id="big-int-decoder"),
        pytest.param(
            b'{"jsonrpc":"2.0","method":"echo","params":' + b"[" * DEEP + b"]" * DEEP + b',"id":7}\n',
            id="in-request",
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","method":"echo","params":' + b"[" * DEEP + b"]" * DEEP + b',"id":1e999}\n',
            id="in-request-bad-number-too",
        ),
    ],
)
def test_deep_nesting_is_a_parse_error_not_a_crash(bad: bytes) -> None:
    with CapturedLog() as log:
        data = one_error(bad, -32700)
    assert "1024" in str(data) or "deep" in str(data) or "depth" in str(data) or "infinity" in str(data)
    assert log.failures() == []


def test_too_deep_unbalanced_line_names_the_depth_limit() -> None:
    (reply,) = Wire(hostile_service()).exchange(b"[" * 1025 + b"]\n")
    assert error_of(reply, -32700) == "nesting deeper than 1024"


def test_deep_nesting_without_newline_then_newline() -> None:
    """The unterminated-value rule must not recurse either."""
    wire = Wire(hostile_service())
    wire.feed(BEFORE)
    for _ in range(10):
        wire.feed(b"[" * (DEEP // 10))
    wire.feed(b"]" * DEEP)
    wire.clock.advance(1)
    wire.feed(b"\n" + AFTER)
    replies = wire.replies()
    assert replies[0] == good_result("before")
    assert replies[-1] == good_result("after")
    assert len(replies) == 3
    error_of(replies[1], -32700)


def test_nesting_at_the_limit_is_accepted() -> None:
    """A request nested exactly 1024 deep (the documented limit) runs; 1025 is -32700."""
    service = hostile_service()

    @service.method
    def depth(value: Any) -> int:
        levels = 0
        while isinstance(value, list) and value:
            value, levels = value[0], levels + 1
        return levels + 1

    def line(levels: int) -> bytes:
        value = b"[" * levels + b"]" * levels
        return b'{"jsonrpc":"2.0","method":"depth","params":[' + value + b'],"id":1}\n'

    wire = Wire(service)
    # The request object and its params array are two levels of their own.
    assert wire.exchange(line(1022)) == [{"jsonrpc": "2.0", "result": 1022, "id": 1}]
    (reply,) = wire.exchange(line(1023))
    assert "1024" in error_of(reply, -32700)
    assert wire.exchange(good_request("after")) == [good_result("after")]


def test_echo_of_an_accepted_deep_value_round_trips() -> None:
    """A value the server accepts (depth <= 1024) can be echoed back (orjson writes only 255)."""
    value: Any = []
    for _ in range(500):
        value = [value]
    wire = Wire(hostile_service())
    request = {"jsonrpc": "2.0", "method": "echo", "params": [value], "id": 1}
    replies = wire.exchange(json.dumps(request).encode() + b"\n")
    assert replies == [{"jsonrpc": "2.0", "result": value, "id": 1}]


def test_deep_reply_with_big_int_does_not_escape() -> None:
    """
    A reply with an integer past 64 bits (exact encoder) nested too deep: -32603,
    and no RecursionError escapes to lose the other replies of the read.
    """
    service = hostile_service()

    @service.method
    def deep_big() -> Any:
        value: Any = []
        for _ in range(DEEP):
            value = [value]
        return [2**70, value]

    wire = Wire(service)
    replies = wire.exchange(BEFORE + b'{"jsonrpc":"2.0","method":"deep_big","id":1}\n' + AFTER)
    assert replies[0] == good_result("before")
    error_of(replies[1], -32603, 1)
    assert replies[2] == good_result("after")


# -- integers past 64 bits --------------------------------------------------------


BIG_INTS = [
    2**63,
    2**64,
    2**64 + 1,
    -(2**63) - 1,
    -(2**64),
    10**100,
    -(10**300),
    int("9" * 4000),
]


@pytest.mark.parametrize("number", BIG_INTS, ids=lambda n: f"{str(n)[:8]}..{len(str(n))}d")
def test_big_integers_round_trip_exactly(number: int) -> None:
    wire = Wire(hostile_service())
    params = [number, {"nested": [number, "18446744073709551616"]}]
    request = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [params], "id": number})
    replies = wire.exchange(BEFORE, request.encode() + b"\n", AFTER)
    assert replies == [
        good_result("before"),
        {"jsonrpc": "2.0", "result": params, "id": number},
        good_result("after"),
    ]
    # Exact on the wire, not only after parsing: no float, no exponent.
    assert wire.exchange(request.encode() + b"\n") == [{"jsonrpc": "2.0", "result": params, "id": number}]


def test_big_integer_in_plain_message_and_batch() -> None:
    wire = Wire(hostile_service())
    big = 2**100
    batch = json.dumps([{"jsonrpc": "2.0", "method": "echo", "params": [big], "id": i} for i in range(3)])
    replies = wire.exchange(json.dumps([big]).encode().replace(b"[", b'{"n":', 1)[:-1] + b"}\n")
    assert replies == [{"echo": {"n": big}}]
    replies = wire.exchange(batch.encode() + b"\n")
    assert replies == [[{"jsonrpc": "2.0", "result": big, "id": i} for i in range(3)]]


def test_big_integer_split_across_reads() -> None:
    """The 19-digit run straddles two reads: still decoded exactly."""
    wire = Wire(hostile_service())
    line = b'{"jsonrpc":"2.0","method":"echo","params":[123456789012345678901234567890],"id":1}\n'
    cut = line.index(b"1234567890123") + 10
    wire.feed(line[:cut])
    replies = wire.exchange(line[cut:])
    assert replies == [{"jsonrpc": "2.0", "result": 123456789012345678901234567890, "id": 1}]


# -- a 64 MiB line with no newline ------------------------------------------------


def test_64_mib_line_without_newline_is_bounded_and_resyncs() -> None:
    """
    64 MiB of one JSON string in 64 KiB reads, default limits: one -32002
    naming the limit, the protocol never holds more than the limit, and the
    next line after the newline is served.
    """
    wire = Wire(hostile_service())
    limit = wire.proto.limits.max_line_length
    assert limit == MiB
    chunk = b"a" * (64 * 1024)
    head = b'{"jsonrpc":"2.0","method":"echo","params":["'
    framer = wire.proto._core.framer
    wire.feed(BEFORE)
    assert wire.replies() == [good_result("before")]
    tracemalloc.start()
    try:
        wire.feed(head)
        most = 0
        for _ in range(1024):  # 64 MiB
            wire.feed(chunk)
            held = framer.buffered + wire.proto._core._queue_bytes
            most = max(most, held)
            assert held <= limit
        wire.clock.advance(1)  # the unterminated-value timer, if any, finds nothing
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit, f"peak traced memory {peak} bytes while reading a 64 MiB line"
    replies = wire.replies()
    assert len(replies) == 1, replies
    data = error_of(replies[0], -32002)
    assert data == {"max_line_length": limit}
    assert not wire.transport.disconnecting
    # The rest of the long line, its newline, then a good request in one read.
    assert wire.exchange(b'"],"id":1}\n' + AFTER) == [good_result("after")]
    assert wire.exchange(good_request("again")) == [good_result("again")]


def test_long_line_in_the_middle_of_a_read() -> None:
    """Good lines on both sides of an over-long line in the same read."""
    replies, _ = sandwich(b"[" + b"1," * (MiB // 2) + b"1]\n")
    assert len(replies) == 1
    assert error_of(replies[0], -32002) == {"max_line_length": MiB}


def test_long_line_with_small_limit_and_crlf() -> None:
    data = one_error(b"x" * 101 + b"\r\n", -32002, max_line_length=100)
    assert data == {"max_line_length": 100}
    # Exactly at the limit is fine.  (The limit counts every byte before
    # the \n, so a CRLF peer's \r counts too: the Framer documents it so.)
    wire = Wire(hostile_service(), max_line_length=100)
    line = b'"' + b"y" * 98 + b'"'
    assert len(line) == 100
    assert wire.exchange(line + b"\n") == [{"echo": "y" * 98}]
    assert wire.exchange(b'"' + b"y" * 97 + b'"\r\n') == [{"echo": "y" * 97}]


# -- batches ---------------------------------------------------------------------


def test_100k_item_batch_default_limits() -> None:
    """Short items (fits the 1 MiB line limit): -32003 naming the limit, nothing run."""
    service = hostile_service()
    wire = Wire(service)
    batch = b"[" + b",".join([b'{"jsonrpc":"2.0","method":"count"}'] * 100_000) + b"]\n"
    assert len(batch) > MiB  # too long for the default line limit: -32002 first
    data = error_of(wire.exchange(BEFORE, batch, AFTER)[1], -32002)
    assert data == {"max_line_length": MiB}
    small = b"[" + b",".join([b"{}"] * 100_000) + b"]\n"
    replies = wire.exchange(BEFORE, small, AFTER)
    assert replies[0] == good_result("before")
    assert replies[2] == good_result("after")
    assert len(replies) == 3
    assert error_of(replies[1], -32003) == {"max_batch": 1000, "items": 100_000}


def test_100k_request_batch_with_room_for_the_line() -> None:
    service = hostile_service()
    items = [b'{"jsonrpc":"2.0","method":"count","id":%d}' % i for i in range(100_000)]
    batch = b"[" + b",".join(items) + b"]\n"
    replies, _ = sandwich(batch, max_line_length=8 * MiB)
    assert len(replies) == 1
    assert error_of(replies[0], -32003)["max_batch"] == 1000
    wire = Wire(service, max_line_length=8 * MiB)
    wire.exchange(batch)
    assert service.counted == 0  # not one item ran


def test_batch_at_the_limit_is_served() -> None:
    service = hostile_service()
    wire = Wire(service, max_batch=50)
    items = [b'{"jsonrpc":"2.0","method":"count","id":%d}' % i for i in range(50)]
    (reply,) = wire.exchange(b"[" + b",".join(items) + b"]\n")
    assert sorted(r["result"] for r in reply) == list(range(1, 51))
    (reply,) = wire.exchange(b"[" + b",".join([*items, items[0]]) + b"]\n")
    assert error_of(reply, -32003) == {"max_batch": 50, "items": 51}
    assert service.counted == 50


# -- bad ids and versions -------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["true", "false", "{}", '{"a":1}', "[]", "[1]"])
def test_bad_id_types_are_invalid_requests(bad_id: str) -> None:
    service = hostile_service()
    wire = Wire(service)
    line = b'{"jsonrpc":"2.0","method":"count","id":%s}\n' % bad_id.encode()
    replies = wire.exchange(BEFORE, line, AFTER)
    assert replies[0] == good_result("before")
    assert replies[2] == good_result("after")
    assert "id" in str(error_of(replies[1], -32600, None))
    assert service.counted == 0
    # In a batch: the bad item gets its error, the good one its result.
    good = b'{"jsonrpc":"2.0","method":"count","id":"ok"}'
    (batch,) = wire.exchange(b"[" + line.strip() + b"," + good + b"]\n")
    assert len(batch) == 2
    error_of(batch[0], -32600, None)
    assert batch[1] == {"jsonrpc": "2.0", "result": 1, "id": "ok"}
    sandwich(line)


@pytest.mark.parametrize("version", ['"1.0"', '"2"', "2.0", "2", "null", '"2.0 "', '""', '["2.0"]'])
def test_wrong_jsonrpc_versions_are_invalid_requests(version: str) -> None:
    service = hostile_service()
    wire = Wire(service)
    line = b'{"jsonrpc":%s,"method":"count","params":[],"id":5}\n' % version.encode()
    replies = wire.exchange(BEFORE, line, AFTER)
    assert len(replies) == 3
    assert "jsonrpc" in str(error_of(replies[1], -32600, 5))
    assert service.counted == 0
    sandwich(line)


def test_responses_to_unknown_ids_are_dropped_and_logged() -> None:
    wire = Wire(hostile_service())
    responses = [
        b'{"jsonrpc":"2.0","result":1,"id":99}\n',
        b'{"jsonrpc":"2.0","result":null,"id":"nobody"}\n',
        b'{"jsonrpc":"2.0","error":{"code":-1,"message":"no"},"id":42}\n',
        b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}\n',
        b'[{"jsonrpc":"2.0","result":1,"id":7},{"jsonrpc":"2.0","result":2,"id":8}]\n',
    ]
    with CapturedLog() as log:
        replies = wire.exchange(BEFORE, *responses, AFTER)
    assert replies == [good_result("before"), good_result("after")]
    logged = " ".join(log.formats())
    assert "unknown id" in logged
    assert len([f for f in log.formats() if "unknown id" in f]) == 5
    assert any("error" in f for f in log.formats())
    assert log.failures() == []
    assert wire.proto.pending == 0
    replies, _ = sandwich(b"".join(responses))
    assert replies == []


# -- peers that go away, handlers that misbehave ---------------------------------------------


def test_peer_disconnects_while_handler_runs() -> None:
    """The handler's Deferred fires after connectionLost: no exception, no write."""
    service = hostile_service()
    wire = Wire(service)
    replies = wire.exchange(BEFORE + b'{"jsonrpc":"2.0","method":"slow","id":1}\n' + AFTER)
    assert replies == [good_result("before"), good_result("after")]
    assert wire.proto.in_flight == 1
    (d,) = service.slow
    with CapturedLog() as log:
        wire.lose()
        assert wire.proto.in_flight == 0  # no leaked entry
        d.callback({"late": "reply"})  # the handler finishes anyway: silently ignored
        wire.clock.advance(100)
    assert wire.transport.value() == b""
    assert log.failures() == []
    assert wire.clock.getDelayedCalls() == []


def test_peer_disconnects_mid_batch_and_mid_plain_reply() -> None:
    service = hostile_service()
    wire = Wire(service)
    wire.feed(
        b'[{"jsonrpc":"2.0","method":"slow","id":1},{"jsonrpc":"2.0","method":"echo","params":[2],"id":2}]\n'
    )
    wire.feed(b'{"jsonrpc":"2.0","method":"slow","id":3}\n')
    assert wire.replies() == []
    with CapturedLog() as log:
        wire.lose()
        for d in service.slow:
            d.callback("late")
        wire.clock.advance(100)
    assert wire.transport.value() == b""
    assert log.failures() == []
    assert wire.proto.in_flight == 0


def test_coroutine_handler_cancelled_when_peer_goes() -> None:
    service = hostile_service()
    steps: list[str] = []
    gate: Deferred[None] = Deferred()

    @service.method
    async def waits() -> str:
        steps.append("started")
        try:
            await gate
        except CancelledError:
            steps.append("cancelled")
            raise
        return "done"

    wire = Wire(service)
    wire.feed(b'{"jsonrpc":"2.0","method":"waits","id":1}\n')
    with CapturedLog() as log:
        wire.lose()
    assert steps == ["started", "cancelled"]
    assert wire.transport.value() == b""
    assert log.failures() == []


def test_peer_disconnects_mid_reply_over_iosim() -> None:
    """A big reply partly delivered, then the client vanishes: the server stays sane."""
    from twisted.internet.task import Clock
    from twisted.test.iosim import connectedServerAndClient

    from jsonservice.protocol import JSONProtocol

    clock = Clock()
    service = hostile_service()
    client, server, pump = connectedServerAndClient(
        lambda: JSONProtocol(service, clock=clock), lambda: JSONProtocol(None, clock=clock), clock=clock
    )
    d = client.call("blob", 3 * MiB)
    pump.pump()  # request over; reply written on the server side, not yet delivered
    client.transport.abortConnection()
    pump.flush()
    assert server._closed
    assert server.in_flight == 0
    failure: list[Failure] = []
    d.addErrback(failure.append)
    assert failure
    assert failure[0].check(jsonservice.ConnectionClosed)


@pytest.mark.parametrize("method", ["boom", "async_boom", "deferred_boom"])
def test_handler_that_raises_gets_32603_with_error_id(method: str) -> None:
    with CapturedLog() as log:
        data = one_error(b'{"jsonrpc":"2.0","method":"%s","id":9}\n' % method.encode(), -32603, 9)
    assert set(data) == {"error_id"}
    assert len(data["error_id"]) >= 8
    # The traceback is logged under that id, never sent.
    logged = [e for e in log.failures() if e.get("error_id") == data["error_id"]]
    assert len(logged) == 1
    wire = Wire(hostile_service())
    with CapturedLog():
        wire.feed(b'{"jsonrpc":"2.0","method":"boom","id":1}\n')
    raw = wire.transport.value()
    assert b"hunter2" not in raw
    assert b"Traceback" not in raw


def test_handler_that_raises_in_a_notification_is_silent() -> None:
    with CapturedLog() as log:
        replies, _ = sandwich(b'{"jsonrpc":"2.0","method":"boom"}\n')
    assert replies == []
    assert log.failures()  # still logged


def test_handler_that_hangs_times_out_with_32000() -> None:
    service = hostile_service()
    wire = Wire(service, request_timeout=5)
    replies = wire.exchange(BEFORE + b'{"jsonrpc":"2.0","method":"hang","id":"h"}\n' + AFTER)
    assert replies == [good_result("before"), good_result("after")]  # served meanwhile
    wire.clock.advance(4.9)
    assert wire.replies() == []
    wire.clock.advance(0.2)
    (reply,) = wire.replies()
    assert error_of(reply, -32000, "h") == {"request_timeout": 5}
    assert service.cancelled == ["hang"]  # its Deferred was cancelled
    assert wire.proto.in_flight == 0
    assert wire.exchange(good_request("later")) == [good_result("later")]
    assert wire.clock.getDelayedCalls() != []  # only the idle timer is left
    assert len(wire.clock.getDelayedCalls()) == 1


def test_hanging_handler_in_a_batch_times_out_alone() -> None:
    service = hostile_service()
    wire = Wire(service, request_timeout=1)
    batch = (
        b'[{"jsonrpc":"2.0","method":"hang","id":1},{"jsonrpc":"2.0","method":"echo","params":[2],"id":2}]\n'
    )
    assert wire.exchange(batch) == []
    wire.clock.advance(1)
    (reply,) = wire.replies()
    error_of(reply[0], -32000, 1)
    assert reply[1] == {"jsonrpc": "2.0", "result": 2, "id": 2}


@pytest.mark.parametrize(
    "method", ["a_set", "a_nan", "an_infinity", "an_object", "a_surrogate", "some_bytes"]
)
def test_unserializable_result_gets_32603_with_error_id(method: str) -> None:
    with CapturedLog() as log:
        data = one_error(b'{"jsonrpc":"2.0","method":"%s","id":3}\n' % method.encode(), -32603, 3)
    assert "error_id" in data
    assert any(e.get("error_id") == data["error_id"] for e in log.events)


def test_unserializable_result_in_batch_and_plain_reply() -> None:
    wire = Wire(hostile_service())
    with CapturedLog():
        replies = wire.exchange(
            BEFORE,
            b'[{"jsonrpc":"2.0","method":"a_set","id":1},{"jsonrpc":"2.0","method":"echo","params":[2],"id":2}]\n',
            b'"unserializable"\n',
            b'"fine"\n',
            AFTER,
        )
    assert replies[0] == good_result("before")
    assert replies[-1] == good_result("after")
    batch = replies[1]
    assert len(batch) == 2
    assert "error_id" in error_of(batch[0], -32603, 1)
    assert batch[1] == {"jsonrpc": "2.0", "result": 2, "id": 2}
    assert "error_id" in error_of(replies[2], -32603, None)
    assert replies[3] == {"echo": "fine"}
    assert len(replies) == 5


def test_garbage_lines_of_every_kind_in_one_read() -> None:
    """Many bad lines in one read: one error each, in order, nothing lost."""
    bad = [
        b"{",
        b"}",
        b"nul",
        b'{"a":1}}',
        b"[]",
        b'{"jsonrpc":"2.0"}',
        b'{"jsonrpc":"2.0","method":1,"id":1}',
        b'{"jsonrpc":"2.0","method":"nope","id":2}',
        b'{"jsonrpc":"2.0","method":"echo","params":"x","id":3}',
        b'{"jsonrpc":"2.0","method":"echo","params":[1,2,3],"id":4}',
        b"\x00\x01\x02",
        b"\xef\xbb\xbf[1]",
    ]
    wire = Wire(hostile_service())
    replies = wire.exchange(BEFORE + b"\n".join(bad) + b"\n" + AFTER)
    assert replies[0] == good_result("before")
    assert replies[-1] == good_result("after")
    codes = [r["error"]["code"] for r in replies[1:-1]]
    assert codes == [
        -32700,
        -32700,
        -32700,
        -32700,
        -32600,
        -32600,
        -32600,
        -32601,
        -32600,
        -32602,
        -32700,
        -32700,
    ]


# -- slowloris: real loopback ----------------------------------------------------------


SLOW_CLIENTS = 1000
PARTIAL = b'{"jsonrpc":"2.0","method":"echo","params":["slow'


class _Slow(Protocol):
    def __init__(self, index: int) -> None:
        self.index = index
        self.received = b""
        self.made: Deferred[_Slow] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.answered: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(PARTIAL)  # and then nothing: a half-open, slow peer
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received.endswith(b"\n") and not self.answered.called:
            self.answered.callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.made.called:
            self.made.errback(reason)
        self.lost.callback(None)


class _SlowFactory(ClientFactory):
    def __init__(self, index: int) -> None:
        self.proto = _Slow(index)

    def buildProtocol(self, addr: Any) -> _Slow:
        self.proto.factory = self  # type: ignore[attr-defined]
        return self.proto

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.proto.made.errback(reason)


def _enough_fds(needed: int) -> str | None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return f"cannot raise RLIMIT_NOFILE to {needed}: {exc}"
    if target < needed:
        return f"RLIMIT_NOFILE hard limit {hard} < {needed} fds needed for {SLOW_CLIENTS} loopback pairs"
    return None


def _within(d: Deferred[Any], reactor: Any, seconds: float = 8.0) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


@pytest_twisted.ensureDeferred
async def test_slowloris_does_not_starve_a_normal_client(reactor: Any) -> None:
    """
    1,000 connections each send a partial line and stall; a normal client
    is served meanwhile; then each slow peer finishes its line and gets its
    reply (nothing lost), and everything closes without leftovers.
    """
    from twisted.internet.interfaces import IReactorFDSet

    if "select" in type(reactor).__name__.lower():
        pytest.skip("the select() reactor cannot watch 2,000 descriptors")
    why = _enough_fds(2 * SLOW_CLIENTS + 256)
    if why:
        pytest.skip(why)
    assert IReactorFDSet.providedBy(reactor)
    calls_before = set(reactor.getDelayedCalls())
    factory = JSONServerFactory(hostile_service())
    port = await _within(
        serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=1024").listen(factory), reactor
    )
    number = port.getHost().port
    slow: list[_Slow] = []
    client = None
    try:
        for start in range(0, SLOW_CLIENTS, 100):
            batch = []
            for index in range(start, min(start + 100, SLOW_CLIENTS)):
                f = _SlowFactory(index)
                reactor.connectTCP("127.0.0.1", number, f, timeout=5)
                batch.append(f.proto.made)
                slow.append(f.proto)
            await _within(gatherResults(batch, consumeErrors=True), reactor)
        # Wait until the server has read every partial line.
        for _ in range(200):
            if len(factory.connections) == SLOW_CLIENTS and all(
                p._core.framer.buffered == len(PARTIAL) for p in factory.connections
            ):
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert len(factory.connections) == SLOW_CLIENTS
        assert all(p.in_flight == 0 for p in factory.connections)
        # A normal client, while all of them stall.
        client = await _within(jsonservice.connect(reactor, f"tcp:127.0.0.1:{number}"), reactor)
        for i in range(20):
            assert await _within(client.call("echo", i), reactor, 3.0) == i
        assert await _within(client.send({"plain": True}), reactor, 3.0) == {"echo": {"plain": True}}
        assert all(not p.received for p in slow)
        # Each slow peer finally finishes its line: every one is answered.
        for p in slow:
            p.transport.write(b'%d"],"id":%d}\n' % (p.index, p.index))
        await _within(gatherResults([p.answered for p in slow]), reactor)
        for p in slow:
            assert json.loads(p.received) == {"jsonrpc": "2.0", "result": f"slow{p.index}", "id": p.index}
    finally:
        for p in slow:
            if p.transport is not None:
                p.transport.loseConnection()
        if client is not None and client.transport is not None:
            client.transport.loseConnection()
        await _within(gatherResults([p.lost for p in slow if p.made.called], consumeErrors=True), reactor)
        await _within(maybeDeferred(port.stopListening), reactor)
        for _ in range(200):
            if not factory.connections:
                break
            await deferLater(reactor, 0.01, lambda: None)
    assert not factory.connections
    await deferLater(reactor, 0.01, lambda: None)
    leftover = [c for c in reactor.getDelayedCalls() if c.active() and c not in calls_before]
    assert leftover == []
    gc.collect()
