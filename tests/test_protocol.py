"""
L{JSONProtocol} behaviour, in memory: framing, pipelining, out-of-order
completion, batches, plain messages, errors and limits, unterminated peers,
write coalescing, timeouts, backpressure, cancellation, connection loss,
drain and the server factory's connection cap; then the client side
(C{call}, C{notify}, C{send}, C{write_message}) over L{iosim} against a
server protocol.  Everything runs on L{StringTransport} / L{iosim} with a
L{Clock}: no ports, no sleeps.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from jsonservice import (
    CallContext,
    CallTimeout,
    ConnectionClosed,
    InvalidParams,
    JSONServerFactory,
    JSONService,
    MethodNotFound,
    RPCError,
)
from jsonservice.codec import EncodeError, dumps_line
from jsonservice.jsonrpc import NO_ID, request
from jsonservice.protocol import CANCEL_METHOD, JSONProtocol

try:
    from tests.memory_helpers import (
        CapturedLog,
        CountingTransport,
        connected_pair,
        parse_lines,
        rpc,
        server_on_string_transport,
    )
except ImportError:  # pragma: no cover - tests/ on sys.path (rootdir import mode)
    from memory_helpers import (
        CapturedLog,
        CountingTransport,
        connected_pair,
        parse_lines,
        rpc,
        server_on_string_transport,
    )


def result(value: Any, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": id}


def outcome(d: Deferred[Any]) -> Any:
    """What C{d} fired with (a value or a L{Failure}); fails if it has not fired."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


class Controlled:
    """
    A service whose C{wait} method returns a Deferred the test fires, and
    that records cancellation.
    """

    def __init__(self) -> None:
        self.service = JSONService()
        self.pending: dict[Any, Deferred[Any]] = {}
        self.cancelled: list[Any] = []
        self.order: list[Any] = []
        self.messages: list[Any] = []
        self.plain: list[Deferred[Any]] = []

        @self.service.method
        def wait(key: Any) -> Deferred[Any]:
            self.order.append(key)
            d: Deferred[Any] = Deferred(lambda _: self.cancelled.append(key))
            self.pending[key] = d
            return d

        @self.service.method
        def echo(value: Any) -> Any:
            return value

        @self.service.method
        def boom() -> None:
            raise ValueError("boom")

        @self.service.method(context=True)
        def ctx_echo(ctx: CallContext, value: Any) -> Any:
            return value

        @self.service.message
        def on_message(message: Any) -> Any:
            self.messages.append(message)
            if isinstance(message, dict) and message.get("wait"):
                d: Deferred[Any] = Deferred()
                self.plain.append(d)
                return d
            if message == "silent":
                return None
            return {"reply_to": message}

    def fire(self, key: Any, value: Any = None) -> None:
        self.pending.pop(key).callback(key if value is None else value)


@pytest.fixture
def ctl() -> Controlled:
    return Controlled()


# -- framing -------------------------------------------------------------------------


class TestFraming:
    def test_many_messages_per_connection(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        for i in range(50):
            proto.dataReceived(rpc("echo", [i], id=i))
        assert transport.take() == [result(i, i) for i in range(50)]

    def test_several_per_chunk(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b"".join(rpc("echo", [i], id=i) for i in range(10)))
        assert transport.take() == [result(i, i) for i in range(10)]

    def test_byte_by_byte(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service)
        stream = rpc("echo", ["a b"], id=1) + b'{"plain": [1, 2]}\n' + rpc("echo", [{"k": "}"}], id=2)
        for i in range(len(stream)):
            proto.dataReceived(stream[i : i + 1])
        clock.advance(1)
        assert transport.take() == [result("a b", 1), {"reply_to": {"plain": [1, 2]}}, result({"k": "}"}, 2)]

    @pytest.mark.parametrize("seed", range(5))
    def test_arbitrary_chunks(self, ctl: Controlled, seed: int) -> None:
        rng = random.Random(seed)
        lines = [rpc("echo", [{"n": i, "s": "x" * rng.randrange(0, 300)}], id=i) for i in range(40)]
        stream = b"".join(lines)
        proto, transport, clock = server_on_string_transport(ctl.service)
        pos = 0
        while pos < len(stream):
            size = rng.randrange(1, 400)
            proto.dataReceived(stream[pos : pos + size])
            pos += size
        clock.advance(1)
        replies = transport.take()
        assert [r["id"] for r in replies] == list(range(40))
        assert [r["result"]["n"] for r in replies] == list(range(40))

    def test_crlf(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("echo", [1], id=1)[:-1] + b"\r\n" + b'"hi"\r\n')
        assert transport.take() == [result(1, 1), {"reply_to": "hi"}]

    def test_crlf_split_between_chunks(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'"a"\r')
        proto.dataReceived(b'\n"b"\r\n')
        assert transport.take() == [{"reply_to": "a"}, {"reply_to": "b"}]

    def test_blank_lines_ignored(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b"\n\r\n   \n\t\r\n\n")
        assert transport.value() == b""
        assert ctl.messages == []
        proto.dataReceived(b'\n"x"\n\n')
        assert transport.take() == [{"reply_to": "x"}]

    def test_output_is_compact_utf8_one_newline(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("echo", [{"a": [1, 2], "é": "ü€"}], id=1))
        assert transport.value() == '{"jsonrpc":"2.0","result":{"a":[1,2],"é":"ü€"},"id":1}\n'.encode()


# -- pipelining and out-of-order completion -------------------------------------------------


class TestConcurrency:
    def test_pipelined_requests_run_concurrently(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, request_timeout=0)
        proto.dataReceived(b"".join(rpc("wait", [k], id=k) for k in range(5)))
        assert ctl.order == [0, 1, 2, 3, 4]
        assert proto.in_flight == 5
        assert transport.value() == b""

    def test_out_of_order_completion(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b"".join(rpc("wait", [k], id=k) for k in range(4)))
        for k in (3, 2, 1, 0):
            ctl.fire(k)
            assert transport.take() == [result(k, k)]
        assert proto.in_flight == 0

    def test_sync_reply_not_held_behind_async(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("wait", ["slow"], id=1) + rpc("echo", ["fast"], id=2))
        assert transport.take() == [result("fast", 2)]
        ctl.fire("slow")
        assert transport.take() == [result("slow", 1)]

    def test_string_null_and_number_ids(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("echo", [1], id="s") + rpc("echo", [2], id=None) + rpc("echo", [3], id=2.5))
        assert transport.take() == [result(1, "s"), result(2, None), result(3, 2.5)]

    def test_duplicate_ids_both_answered(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("wait", ["a"], id=1) + rpc("wait", ["b"], id=1))
        assert proto.in_flight == 2
        ctl.fire("b")
        ctl.fire("a")
        assert transport.take() == [result("b", 1), result("a", 1)]
        assert proto.in_flight == 0


# -- batches -------------------------------------------------------------------------------


class TestBatches:
    def test_all_sync(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        batch = b"[" + rpc("echo", [1], id=1)[:-1] + b"," + rpc("echo", [2], id=2)[:-1] + b"]\n"
        proto.dataReceived(batch)
        assert transport.writes == [
            b'[{"jsonrpc":"2.0","result":1,"id":1},{"jsonrpc":"2.0","result":2,"id":2}]\n'
        ]

    def test_mixed_async_reply_once_all_done(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        items = [
            rpc("wait", ["x"], id="a"),
            rpc("echo", [2], id="b"),
            rpc("echo", [3], id=NO_ID),
            rpc("wait", ["y"], id="c"),
            rpc("nope", id="d"),
        ]
        proto.dataReceived(b"[" + b",".join(i[:-1] for i in items) + b"]\n")
        assert transport.value() == b""
        ctl.fire("y")
        assert transport.value() == b""
        ctl.fire("x")
        [reply] = transport.take()
        assert isinstance(reply, list)
        by_id = {r["id"]: r for r in reply}
        assert set(by_id) == {"a", "b", "c", "d"}
        assert by_id["a"]["result"] == "x"
        assert by_id["b"]["result"] == 2
        assert by_id["c"]["result"] == "y"
        assert by_id["d"]["error"]["code"] == -32601

    def test_all_notifications_write_nothing(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        items = [rpc("echo", [1], id=NO_ID), rpc("boom", id=NO_ID), rpc("nope", id=NO_ID)]
        with CapturedLog():
            proto.dataReceived(b"[" + b",".join(i[:-1] for i in items) + b"]\n")
        assert transport.value() == b""
        # The connection is still served.
        proto.dataReceived(rpc("echo", [5], id=5))
        assert transport.take() == [result(5, 5)]

    def test_async_notifications_only_write_nothing(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b"[" + rpc("wait", ["n"], id=NO_ID)[:-1] + b"]\n")
        ctl.fire("n")
        assert transport.value() == b""

    def test_empty_batch_is_one_error(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b"[]\n")
        [reply] = transport.take()
        assert isinstance(reply, dict)
        assert reply["error"]["code"] == -32600
        assert reply["id"] is None

    def test_invalid_items_answered_in_array(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'[1, {"jsonrpc": "2.0", "method": "echo", "params": [9], "id": 9}]\n')
        [reply] = transport.take()
        assert reply[0]["error"]["code"] == -32600
        assert reply[0]["id"] is None
        assert reply[1] == result(9, 9)

    def test_over_max_batch(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, max_batch=3)
        items = [rpc("ctx_echo", [i], id=i)[:-1] for i in range(4)]
        proto.dataReceived(b"[" + b",".join(items) + b"]\n")
        [reply] = transport.take()
        assert isinstance(reply, dict)
        assert reply["error"]["code"] == -32003
        assert reply["id"] is None
        # At the limit it is served.
        proto.dataReceived(b"[" + b",".join(items[:3]) + b"]\n")
        [reply] = transport.take()
        assert [r["result"] for r in reply] == [0, 1, 2]

    def test_batch_item_timeout(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, request_timeout=5)
        proto.dataReceived(b"[" + rpc("wait", ["t"], id=1)[:-1] + b"," + rpc("echo", [2], id=2)[:-1] + b"]\n")
        clock.advance(5)
        [reply] = transport.take()
        assert {r["id"]: r.get("error", {}).get("code") for r in reply} == {1: -32000, 2: None}
        assert ctl.cancelled == ["t"]


# -- plain messages --------------------------------------------------------------------------


class TestPlainMessages:
    def test_classic_message(self) -> None:
        from jsonservice.demo import make_demo_service

        proto, transport, _ = server_on_string_transport(make_demo_service())
        proto.dataReceived(b'{"name": "John", "age": 30, "city": "New York"}\n')
        assert transport.take() == [{"message": "Hello from server"}]

    def test_replies_in_arrival_order_when_async_finish_out_of_order(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"wait": 1}\n{"wait": 2}\n"sync"\n{"wait": 3}\n"silent"\n"last"\n')
        assert transport.value() == b""
        ctl.plain[2].callback("third")
        ctl.plain[1].callback("second")
        assert transport.value() == b""
        ctl.plain[0].callback("first")
        assert transport.take() == ["first", "second", {"reply_to": "sync"}, "third", {"reply_to": "last"}]

    def test_jsonrpc_replies_not_held_by_plain_order(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"wait": 1}\n' + rpc("echo", [1], id=1))
        assert transport.take() == [result(1, 1)]
        ctl.plain[0].callback("p")
        assert transport.take() == ["p"]

    def test_parse_error_keeps_plain_order(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"wait": 1}\nnot json\n"after"\n')
        assert transport.value() == b""
        ctl.plain[0].callback("first")
        replies = transport.take()
        assert replies[0] == "first"
        assert replies[1]["error"]["code"] == -32700
        assert replies[2] == {"reply_to": "after"}

    def test_no_handler_is_invalid_request_with_null_id(self) -> None:
        service = JSONService()
        service.add_method("echo", lambda v: v)
        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(b'{"name": "John"}\n42\n"s"\nnull\n' + rpc("echo", [1]))
        replies = transport.take()
        assert [r["error"]["code"] for r in replies[:4]] == [-32600] * 4
        assert all(r["id"] is None for r in replies[:4])
        assert replies[4] == result(1, 1)

    def test_async_plain_failure_answered_in_order(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"wait": 1}\n"b"\n')
        ctl.plain[0].errback(RPCError(7, "nope"))
        replies = transport.take()
        assert replies[0]["error"] == {"code": 7, "message": "nope"}
        assert replies[1] == {"reply_to": "b"}


# -- notifications ------------------------------------------------------------------------------


class TestNotifications:
    def test_never_answered(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        with CapturedLog():
            proto.dataReceived(
                rpc("echo", [1], id=NO_ID)
                + rpc("nope", id=NO_ID)
                + rpc("boom", id=NO_ID)
                + rpc("echo", [1, 2, 3], id=NO_ID)
                + rpc("wait", ["n"], id=NO_ID)
            )
            ctl.pending["n"].errback(ValueError("later"))
        assert transport.value() == b""

    def test_async_notification_timeout_not_answered(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, request_timeout=2)
        proto.dataReceived(rpc("wait", ["n"], id=NO_ID))
        clock.advance(2)
        assert ctl.cancelled == ["n"]
        assert transport.value() == b""
        assert proto.in_flight == 0


# -- errors and limits ------------------------------------------------------------------------------


class TestErrorsAndLimits:
    def test_bad_json_then_next_line_served(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]\n')
        proto.dataReceived(rpc("echo", ["still here"], id=2))
        first, second = transport.take()
        assert first["error"]["code"] == -32700
        assert first["id"] is None
        assert second == result("still here", 2)

    @pytest.mark.parametrize(
        "line",
        [b"{", b"NaN", b'{"a": Infinity}', b"[1, 2", b'"\xff\xfe"', b'"\\ud800"', b"1 2", b"{}x"],
    )
    def test_not_strict_json_is_parse_error(self, ctl: Controlled, line: bytes) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(line + b"\n" + rpc("echo", [1], id=1))
        first, second = transport.take()
        assert first["error"]["code"] == -32700
        assert second == result(1, 1)

    def test_line_over_limit(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, max_line_length=100)
        long_line = rpc("echo", ["x" * 200], id=1)
        proto.dataReceived(long_line + rpc("echo", ["ok"], id=2))
        first, second = transport.take()
        assert first["error"]["code"] == -32002
        assert first["error"]["data"] == {"max_line_length": 100}
        assert first["id"] is None
        assert second == result("ok", 2)

    def test_line_over_limit_in_chunks_resyncs_at_newline(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, max_line_length=100)
        proto.dataReceived(b'{"jsonrpc": "2.0", "method": "echo", "params": ["')
        for _ in range(10):
            proto.dataReceived(b"y" * 50)
        proto.dataReceived(b'"], "id": 1}')
        [error] = transport.take()
        assert error["error"]["code"] == -32002
        assert error["error"]["data"] == {"max_line_length": 100}
        proto.dataReceived(b"tail of the long line\n" + rpc("echo", ["ok"], id=2))
        assert transport.take() == [result("ok", 2)]
        assert ctl.messages == []

    def test_line_at_limit_accepted(self, ctl: Controlled) -> None:
        line = rpc("echo", ["z"], id=1)
        proto, transport, _ = server_on_string_transport(ctl.service, max_line_length=len(line) - 1)
        proto.dataReceived(line)
        assert transport.take() == [result("z", 1)]

    def test_too_deep_nesting(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        deep = b'{"a":' * 2000 + b"1" + b"}" * 2000
        proto.dataReceived(deep + b"\n" + b"[" * 5000 + b"]" * 5000 + b"\n" + rpc("echo", [1], id=1))
        first, second, third = transport.take()
        assert first["error"]["code"] == -32700
        assert second["error"]["code"] == -32700
        assert third == result(1, 1)

    def test_configured_depth(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, max_depth=3)
        proto.dataReceived(b'{"a": [[1]]}\n{"a": [[[1]]]}\n')
        ok, deep = transport.take()
        assert ok == {"reply_to": {"a": [[1]]}}
        assert deep["error"]["code"] == -32700

    def test_big_integer_round_trips(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        big = 2**70 + 1
        proto.dataReceived(b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":1}\n' % big)
        assert transport.value() == b'{"jsonrpc":"2.0","result":%d,"id":1}\n' % big

    def test_invalid_request_shapes(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(
            b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}\n'
            b'{"jsonrpc": "1.0", "method": "echo", "id": 1}\n'
            b'{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": {"a": 1}}\n'
        )
        replies = transport.take()
        assert [r["error"]["code"] for r in replies] == [-32600, -32600, -32600]


# -- unterminated peers ---------------------------------------------------------------------------


class TestDemoNotices:
    """
    The demo's C{notify_me(delay=...)} (the default service of twistd): a
    flood of delayed notices once froze the reactor when they all fired and
    held memory for their delay, even after the connection closed.
    """

    def test_at_most_16_wait_per_connection_and_they_go_out_in_time(self) -> None:
        from jsonservice.demo import MAX_WAITING, make_demo_service

        proto, transport, clock = server_on_string_transport(make_demo_service())
        before = len(clock.getDelayedCalls())  # the connection's own timers
        proto.dataReceived(
            b"".join(rpc("notify_me", {"text": f"n{k}", "delay": 30}, id=k) for k in range(MAX_WAITING + 5))
        )
        replies = transport.take()
        assert [r.get("result") for r in replies[:MAX_WAITING]] == [True] * MAX_WAITING
        assert [r["error"]["code"] for r in replies[MAX_WAITING:]] == [-32001] * 5
        assert "already waiting" in replies[-1]["error"]["data"]
        assert len(clock.getDelayedCalls()) == before + MAX_WAITING
        clock.advance(30)
        notices = transport.take()
        assert [n["params"] for n in notices] == [[f"n{k}"] for k in range(MAX_WAITING)]
        proto.dataReceived(rpc("notify_me", {"text": "again", "delay": 1}, id="x"))
        assert transport.take() == [result(True, "x")]  # room again once they went out

    def test_waiting_notices_are_dropped_when_the_connection_closes(self) -> None:
        from jsonservice.demo import make_demo_service

        proto, _transport, clock = server_on_string_transport(make_demo_service())
        before = len(clock.getDelayedCalls())
        proto.dataReceived(b"".join(rpc("notify_me", {"delay": 60}, id=k) for k in range(10)))
        assert len(clock.getDelayedCalls()) == before + 10
        proto.connectionLost(Failure(ConnectionDone()))
        assert [c for c in clock.getDelayedCalls() if c.active()] == []  # the idle timer too

    def test_long_text_is_refused(self) -> None:
        from jsonservice.demo import MAX_TEXT, make_demo_service

        proto, transport, clock = server_on_string_transport(make_demo_service())
        before = len(clock.getDelayedCalls())
        proto.dataReceived(rpc("notify_me", {"text": "x" * (MAX_TEXT + 1)}, id=1))
        [reply] = transport.take()
        assert reply["error"]["code"] == -32602
        assert len(clock.getDelayedCalls()) == before

    def test_when_closed_fires_once_closed_and_at_once_after(self) -> None:
        proto, _transport, _clock = server_on_string_transport(JSONService())
        fired: list[object] = []
        proto.when_closed().addCallback(fired.append)
        assert fired == []
        proto.connectionLost(Failure(ConnectionDone()))
        assert fired == [None]
        proto.when_closed().addCallback(fired.append)
        assert fired == [None, None]


class TestUnterminated:
    def test_classic_client_answered_without_newline(self) -> None:
        from jsonservice.demo import make_demo_service

        proto, transport, _clock = server_on_string_transport(make_demo_service())
        proto.dataReceived(b'{"name": "John", "age": 30, "city": "New York"}')
        assert transport.take() == [{"message": "Hello from server"}]
        assert not transport.disconnecting

    def test_unterminated_request(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("echo", [1], id=1)[:-1])
        assert transport.take() == [result(1, 1)]
        # A newline arriving later is just a blank line.
        proto.dataReceived(b"\n")
        assert transport.value() == b""
        assert ctl.messages == []

    def test_unterminated_in_two_chunks(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"name": "Jo')
        assert transport.value() == b""
        proto.dataReceived(b'hn"}')
        assert transport.take() == [{"reply_to": {"name": "John"}}]

    def test_long_unterminated_value_answered_when_complete(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service)
        n = 300
        chunks = [b'{"v": [[0]'] + [b",[%d]" % i for i in range(1, n)] + [b"]}"]
        for chunk in chunks[:-1]:
            proto.dataReceived(chunk)
            # Each chunk ends like a complete value, but the framer's
            # structural scan knows it is not: nothing is parsed early.
            assert transport.value() == b""
        proto.dataReceived(chunks[-1])
        assert transport.take() == [{"reply_to": {"v": [[i] for i in range(n)]}}]
        assert len(ctl.messages) == 1
        # Nothing more happens later.
        clock.advance(10)
        assert transport.value() == b""

    def test_unterminated_value_in_pieces_one_reply(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"v": [1]')
        proto.dataReceived(b', "w": [2]')
        clock.advance(1)
        assert transport.value() == b""
        proto.dataReceived(b"}")
        assert transport.take() == [{"reply_to": {"v": [1], "w": [2]}}]

    def test_invalid_unterminated_value_is_parse_error(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"a": 1]')
        [error] = transport.take()
        assert error["error"]["code"] == -32700
        assert error["id"] is None
        # The rest of that line is dropped; the next line is served.
        proto.dataReceived(b' more garbage}\n"next"\n')
        assert transport.take() == [{"reply_to": "next"}]

    def test_incomplete_value_waits(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service)
        proto.dataReceived(b'{"a": [1]')
        clock.advance(60)
        assert transport.value() == b""
        assert ctl.messages == []


# -- one write per dataReceived ---------------------------------------------------------------------


class TestWriteCoalescing:
    def test_replies_of_one_chunk_in_one_write(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        chunk = (
            b"".join(rpc("echo", [i], id=i) for i in range(20))
            + b"bad json\n"
            + b'"plain"\n'
            + b"["
            + rpc("echo", ["b"], id="b")[:-1]
            + b"]\n"
            + rpc("nope", id="n")
            + b"[]\n"
        )
        proto.dataReceived(chunk)
        assert len(transport.writes) == 1
        replies = parse_lines(transport.writes[0])
        assert len(replies) == 25

    def test_each_async_completion_is_one_write(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("wait", ["a"], id=1) + rpc("wait", ["b"], id=2))
        assert transport.writes == []
        ctl.fire("a")
        ctl.fire("b")
        assert len(transport.writes) == 2

    def test_async_fired_during_read_joins_the_write(self, ctl: Controlled) -> None:
        service = JSONService()
        gate: Deferred[str] = Deferred()
        service.add_method("later", lambda: gate)

        @service.method
        def release() -> str:
            gate.callback("released")
            return "ok"

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("later", id=1) + rpc("release", id=2))
        assert len(transport.writes) == 1
        assert parse_lines(transport.writes[0]) == [result("released", 1), result("ok", 2)]


# -- timeouts ---------------------------------------------------------------------------------------------


class TestTimeouts:
    def test_request_timeout(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, request_timeout=5)
        proto.dataReceived(rpc("wait", ["t"], id=3))
        clock.advance(4.9)
        assert transport.value() == b""
        assert ctl.cancelled == []
        clock.advance(0.1)
        [reply] = transport.take()
        assert reply["id"] == 3
        assert reply["error"]["code"] == -32000
        assert reply["error"]["data"] == {"request_timeout": 5}
        assert ctl.cancelled == ["t"]
        assert proto.in_flight == 0

    def test_request_finishing_in_time_cancels_timer(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, request_timeout=5, idle_timeout=0)
        proto.dataReceived(rpc("wait", ["t"], id=3))
        assert len(clock.getDelayedCalls()) == 1
        ctl.fire("t")
        assert clock.getDelayedCalls() == []
        assert transport.take() == [result("t", 3)]

    def test_no_request_timeout(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, request_timeout=0, idle_timeout=0)
        proto.dataReceived(rpc("wait", ["t"], id=3))
        assert clock.getDelayedCalls() == []
        clock.advance(10_000)
        assert transport.value() == b""

    def test_timeout_of_async_def(self) -> None:
        service = JSONService()
        never: Deferred[None] = Deferred()

        @service.method
        async def stuck() -> None:
            await never

        proto, transport, clock = server_on_string_transport(service, request_timeout=1)
        proto.dataReceived(rpc("stuck"))
        clock.advance(1)
        assert transport.take()[0]["error"]["code"] == -32000
        assert never.called  # the awaited Deferred was cancelled too

    def test_idle_timeout_closes_quiet_connection(self, ctl: Controlled) -> None:
        _proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=10)
        clock.advance(9.9)
        assert not transport.disconnecting
        clock.advance(0.1)
        clock.advance(1)  # the idle check confirms after the reactor read what arrived
        assert transport.disconnecting

    def test_idle_timer_restarts_on_activity(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=10)
        clock.advance(6)
        proto.dataReceived(rpc("echo", [1]))
        clock.advance(6)
        assert not transport.disconnecting
        clock.advance(4)
        clock.advance(1)  # the idle check confirms after the reactor read what arrived
        assert transport.disconnecting

    def test_idle_timeout_closes_a_peer_trickling_an_unfinished_line(self, ctl: Controlled) -> None:
        # Slowloris: bytes that never make a whole message are not activity.
        proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=10)
        proto.dataReceived(b'{"jsonrpc":"2.0","method":"echo","params":["')
        for _ in range(3):
            clock.advance(3)
            proto.dataReceived(b"x")
        clock.advance(0.9)
        assert not transport.disconnecting
        clock.advance(0.1)
        clock.advance(1)  # the idle check confirms after the reactor read what arrived
        assert transport.disconnecting

    @pytest.mark.parametrize("blank", [b"\n", b"\r", b" \r\n", b"\n\n\t\n"])
    def test_idle_timeout_closes_a_peer_sending_only_blank_lines(self, ctl: Controlled, blank: bytes) -> None:
        # Blank lines are dropped, not messages: they keep no connection open.
        proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=10)
        for _ in range(9):
            clock.advance(1)
            proto.dataReceived(blank)
        clock.advance(1)
        clock.advance(1)  # the idle check confirms after the reactor read what arrived
        assert transport.disconnecting

    def test_idle_timeout_spares_busy_connection(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=10, request_timeout=0)
        proto.dataReceived(rpc("wait", ["busy"], id=1))
        clock.advance(10)
        clock.advance(50)
        assert not transport.disconnecting
        ctl.fire("busy")
        clock.advance(10)
        clock.advance(1)  # the idle check confirms after the reactor read what arrived
        assert transport.disconnecting

    def test_idle_timeout_spares_connection_waiting_for_its_call(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=10)
        proto.call("client_method")
        clock.advance(30)
        assert not transport.disconnecting

    def test_no_idle_timeout(self, ctl: Controlled) -> None:
        _proto, transport, clock = server_on_string_transport(ctl.service, idle_timeout=0)
        clock.advance(100_000)
        assert not transport.disconnecting
        assert clock.getDelayedCalls() == []


# -- backpressure ------------------------------------------------------------------------------------


class TestBackpressure:
    def test_in_flight_cap_pauses_and_resumes(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, max_in_flight=2, request_timeout=0)
        proto.dataReceived(b"".join(rpc("wait", [k], id=k) for k in range(5)))
        assert ctl.order == [0, 1]
        assert proto.in_flight == 2
        assert transport.producerState == "paused"
        # More data while paused is buffered, not handled.
        proto.dataReceived(rpc("echo", ["late"], id="late"))
        assert ctl.order == [0, 1]
        assert transport.value() == b""

        ctl.fire(1)
        # Below the cap: reading resumed, the buffered line started, cap hit again.
        assert ctl.order == [0, 1, 2]
        assert transport.producerState == "paused"
        assert transport.take() == [result(1, 1)]

        ctl.fire(0)
        ctl.fire(2)
        assert ctl.order == [0, 1, 2, 3, 4]
        ctl.fire(3)
        ctl.fire(4)
        assert transport.producerState == "producing"
        assert proto.in_flight == 0
        replies = transport.take()
        assert {r["id"] for r in replies} == {0, 2, 3, 4, "late"}

    def test_handlers_calling_back_at_the_cap_do_not_deadlock(self) -> None:
        service = JSONService()
        client_service = JSONService()
        gate: Deferred[None] = Deferred()

        @service.method(context=True)
        async def relay(ctx: CallContext, x: int) -> int:
            return int(await ctx.call("double", x))

        @service.method(context=True)
        async def later_relay(ctx: CallContext, x: int) -> int:
            await gate  # reaches the cap first, calls back afterwards
            return int(await ctx.call("double", x))

        client_service.add_method("double", lambda x: 2 * x)
        pair = connected_pair(
            service, client_service, server_limits={"max_in_flight": 2, "request_timeout": 0}
        )
        ds = [pair.client.call("relay", i) for i in range(5)]
        pair.flush()
        assert [outcome(d) for d in ds] == [0, 2, 4, 6, 8]

        ds = [pair.client.call("later_relay", i) for i in range(4)]
        pair.flush()
        # At the cap: no new handler starts, but responses are still read.
        assert "in-flight" in pair.server._core.holds
        assert pair.server.in_flight == 2
        gate.callback(None)
        pair.flush()
        assert [outcome(d) for d in ds] == [0, 2, 4, 6]
        assert pair.server.in_flight == 0
        assert not pair.server._core.holds

    def test_sync_requests_do_not_count(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service, max_in_flight=1)
        proto.dataReceived(b"".join(rpc("echo", [k], id=k) for k in range(10)))
        assert len(transport.take()) == 10
        assert transport.producerState == "producing"

    def test_output_backpressure_pauses_reading(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, write_stall_timeout=30)
        proto._watch.pauseProducing()  # the transport's buffer is full
        assert transport.producerState == "paused"
        proto.dataReceived(rpc("echo", [1], id=1))
        assert transport.value() == b""
        proto._watch.resumeProducing()
        assert transport.take() == [result(1, 1)]
        clock.advance(60)
        assert not transport.disconnecting

    def test_write_stall_aborts(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, write_stall_timeout=30)
        proto._watch.pauseProducing()
        clock.advance(30)
        assert transport.disconnecting


# -- cancellation and connection loss --------------------------------------------------------------------


class TestCancellation:
    def test_cancel_request_notification(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("wait", ["w"], id=7) + rpc("wait", ["other"], id=8))
        proto.dataReceived(rpc(CANCEL_METHOD, {"id": 7}, id=NO_ID))
        assert ctl.cancelled == ["w"]
        [reply] = transport.take()
        assert reply["id"] == 7
        assert reply["error"]["code"] == -32800
        assert proto.in_flight == 1
        ctl.fire("other")
        assert transport.take() == [result("other", 8)]

    def test_cancel_unknown_id_is_harmless(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.dataReceived(
            rpc(CANCEL_METHOD, {"id": 99}, id=NO_ID)
            + rpc(CANCEL_METHOD, {"nope": 1}, id=NO_ID)
            + rpc(CANCEL_METHOD, [1], id=NO_ID)
            + rpc(CANCEL_METHOD, id=NO_ID)
            + rpc("echo", [1], id=1)
        )
        assert transport.take() == [result(1, 1)]

    def test_cancel_async_def(self) -> None:
        service = JSONService()
        inner: Deferred[None] = Deferred()

        @service.method
        async def stuck() -> None:
            await inner

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("stuck", id="s"))
        proto.dataReceived(rpc(CANCEL_METHOD, {"id": "s"}, id=NO_ID))
        assert transport.take()[0]["error"]["code"] == -32800
        assert inner.called

    def test_connection_lost_cancels_handlers_and_cleans_up(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service, request_timeout=30, idle_timeout=60)
        proto.dataReceived(rpc("wait", ["a"], id=1) + rpc("wait", ["b"], id=NO_ID) + b'{"wait": 1}\n')
        calls = [proto.call("peer_method", timeout=10), proto.send("hi", timeout=10)]
        proto.dataReceived(b'{"v": [1]')  # an incomplete unterminated value
        assert clock.getDelayedCalls()
        transport.clear()
        with CapturedLog() as log:
            proto.connectionLost(Failure(ConnectionDone()))
        assert sorted(ctl.cancelled) == ["a", "b"]
        assert proto.in_flight == 0
        assert proto.pending == 0
        assert clock.getDelayedCalls() == []
        for d in calls:
            failure = outcome(d)
            assert isinstance(failure, Failure)
            assert failure.check(ConnectionClosed)
            assert failure.check(ConnectionLost)
        ctl.plain[0].callback("too late")
        assert transport.value() == b""
        assert not [e for e in log.events if "log_failure" in e]

    def test_calls_after_close_fail_fast(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.connectionLost(Failure(ConnectionDone()))
        assert outcome(proto.call("x")).check(ConnectionClosed)
        assert outcome(proto.send("x")).check(ConnectionClosed)
        with pytest.raises(ConnectionClosed):
            proto.write_message("x")
        proto.notify("x")  # dropped, no error
        assert transport.value() == b""


# -- drain --------------------------------------------------------------------------------------------


class TestDrain:
    def test_protocol_drain(self, ctl: Controlled) -> None:
        proto, transport, clock = server_on_string_transport(ctl.service)
        proto.dataReceived(rpc("wait", ["inflight"], id=1))
        proto.drain()
        assert not transport.disconnecting
        proto.dataReceived(rpc("echo", [2], id=2) + rpc("echo", [3], id=NO_ID) + b'"plain"\n')
        replies = transport.take()
        assert [(r["id"], r["error"]["code"]) for r in replies] == [(2, -32800), (None, -32800)]
        assert ctl.messages == []
        ctl.fire("inflight")
        assert transport.take() == [result("inflight", 1)]
        clock.advance(0)
        assert transport.disconnecting

    def test_drain_idle_connection_closes_at_once(self, ctl: Controlled) -> None:
        proto, transport, _ = server_on_string_transport(ctl.service)
        proto.drain()
        assert transport.disconnecting

    def test_factory_drain_grace(self, ctl: Controlled) -> None:
        clock = Clock()
        factory = JSONServerFactory(ctl.service, clock=clock, shutdown_grace=5)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(rpc("wait", ["long"], id=1))
        done = factory.drain()
        assert not done.called
        # New connections are refused while draining.
        refused = StringTransport()
        factory.buildProtocol(None).makeConnection(refused)
        assert parse_lines(refused.value())[0]["error"]["code"] == -32001
        assert refused.disconnecting
        clock.advance(5)
        [reply] = parse_lines(transport.value())
        assert reply["error"]["code"] == -32800
        assert ctl.cancelled == ["long"]
        clock.advance(0)
        assert transport.disconnecting
        proto.connectionLost(Failure(ConnectionDone()))
        assert outcome(done) is None
        assert factory.connections == set()


# -- the server factory's connection cap -------------------------------------------------------------


class TestConnectionCap:
    def connect(self, factory: JSONServerFactory) -> tuple[Any, StringTransport]:
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_cap_with_hysteresis(self) -> None:
        service = JSONService()
        service.add_method("echo", lambda v: v)
        factory = JSONServerFactory(service, clock=Clock(), max_connections=20)
        open_ = [self.connect(factory) for _ in range(20)]
        assert all(isinstance(p, JSONProtocol) for p, _ in open_)
        assert len(factory.connections) == 20

        extra, transport = self.connect(factory)
        assert not isinstance(extra, JSONProtocol)
        [line] = parse_lines(transport.value())
        assert line["error"]["code"] == -32001
        assert line["error"]["data"] == {"max_connections": 20}
        assert line["id"] is None
        assert transport.disconnecting
        assert len(factory.connections) == 20

        # One closes: 19 open is not below 95 % of 20, still refusing.
        open_.pop()[0].connectionLost(Failure(ConnectionDone()))
        assert not isinstance(self.connect(factory)[0], JSONProtocol)
        # Another closes: 18 < 19, accepting again.
        open_.pop()[0].connectionLost(Failure(ConnectionDone()))
        proto, transport = self.connect(factory)
        assert isinstance(proto, JSONProtocol)
        proto.dataReceived(rpc("echo", ["in"], id=1))
        assert parse_lines(transport.value()) == [result("in", 1)]
        assert len(factory.connections) == 19

    def test_factory_passes_limits_and_clock(self) -> None:
        clock = Clock()
        factory = JSONServerFactory(JSONService(), clock=clock, idle_timeout=3)
        proto, transport = self.connect(factory)
        assert proto.limits.idle_timeout == 3
        clock.advance(3)
        clock.advance(1)  # the idle check confirms after the reactor read what arrived
        assert transport.disconnecting
        proto.connectionLost(Failure(ConnectionDone()))
        assert factory.connections == set()

    def test_unknown_limit_refused(self) -> None:
        with pytest.raises(TypeError, match="unknown limit"):
            JSONServerFactory(JSONService(), max_conections=3)


# -- the client side over iosim -----------------------------------------------------------------------


class TestClientSide:
    def test_call_positional_and_named(self) -> None:
        service = JSONService()

        @service.method
        def subtract(minuend: int, subtrahend: int) -> int:
            return minuend - subtrahend

        pair = connected_pair(service)
        d1 = pair.client.call("subtract", 42, 23)
        d2 = pair.client.call("subtract", subtrahend=23, minuend=42)
        d3 = pair.client.request("subtract", {"minuend": 1, "subtrahend": 2})
        pair.flush()
        assert [outcome(d) for d in (d1, d2, d3)] == [19, 19, -1]
        assert pair.client.pending == 0

    def test_call_with_both_positional_and_named_fails(self) -> None:
        pair = connected_pair(JSONService())
        failure = outcome(pair.client.call("x", 1, a=2))
        assert isinstance(failure, Failure)
        assert failure.check(TypeError)
        assert pair.client.pending == 0

    def test_call_lines_on_the_wire(self) -> None:
        """Each call's line is the general encoder's, a method's first call or not."""
        client = JSONProtocol(None, None, Clock())
        transport = StringTransport()
        client.makeConnection(transport)
        for _ in range(2):
            client.call("wire.test", 1, "two", [3.5, None])
            client.call("wire.test", a=1, b={"c": True})
            client.call("wire.test")
            client.request("wire.test", [1])
        lines = transport.value().splitlines(keepends=True)
        params: list[Any] = [[1, "two", [3.5, None]], {"a": 1, "b": {"c": True}}, None, [1]] * 2
        assert lines == [dumps_line(request("wire.test", p, n)) for n, p in enumerate(params, 1)]

    def test_call_that_is_not_json_fails_and_waits_for_nothing(self) -> None:
        pair = connected_pair(JSONService())
        for d in (pair.client.call("x", object()), pair.client.call("x", float("nan"))):
            assert outcome(d).check(EncodeError)
        assert pair.client.pending == 0
        assert pair.client.transport.stream == []  # type: ignore[attr-defined]

    def test_call_without_timeout_starts_no_timer(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service, server_limits={"request_timeout": 0, "idle_timeout": 0})
        d = pair.client.call("wait", "t")
        e = pair.client.call("wait", "u", timeout=0)
        pair.flush()
        assert pair.clock.getDelayedCalls() == []
        ctl.fire("t")
        ctl.fire("u")
        pair.flush()
        assert [outcome(d), outcome(e)] == ["t", "u"]

    @pytest.mark.parametrize(
        ("error", "cls"),
        [
            (RPCError(4242, "Out of stock", {"item": "widget"}), RPCError),
            (InvalidParams(data={"x": "must be positive"}), InvalidParams),
            (RPCError(-32601, "Method gone", [1, 2]), MethodNotFound),
        ],
    )
    def test_rpc_error_preserved(self, error: RPCError, cls: type[RPCError]) -> None:
        service = JSONService()

        @service.method
        def fails() -> None:
            raise error

        pair = connected_pair(service)
        d = pair.client.call("fails")
        pair.flush()
        failure = outcome(d)
        assert isinstance(failure, Failure)
        exc = failure.value
        assert type(exc) is cls
        assert (exc.code, exc.message, exc.data) == (error.code, error.message, error.data)

    def test_unknown_method_is_method_not_found(self) -> None:
        pair = connected_pair(JSONService())
        d = pair.client.call("nope")
        pair.flush()
        assert outcome(d).check(MethodNotFound)

    def test_thousands_of_calls_answered_in_shuffled_order(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service, server_limits={"request_timeout": 0})
        n = 2000
        calls = {k: pair.client.call("wait", k) for k in range(n)}
        assert pair.client.pending == n
        rng = random.Random(1234)
        pair.flush()
        rounds = 0
        while ctl.pending:
            rounds += 1
            keys = list(ctl.pending)
            rng.shuffle(keys)
            for k in keys:
                ctl.fire(k, {"k": k, "sq": k * k})
            pair.flush()
        # The server's in-flight cap (1000) made it read in more than one round.
        assert rounds >= 2
        for k, d in calls.items():
            assert outcome(d) == {"k": k, "sq": k * k}
        assert pair.client.pending == 0
        assert pair.server.in_flight == 0

    def test_per_call_timeout(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        d = pair.client.call("wait", "t", timeout=5)
        pair.flush()
        assert ctl.order == ["t"]
        with CapturedLog() as log:
            pair.clock.advance(5)
            pair.flush()
        failure = outcome(d)
        assert isinstance(failure, Failure)
        assert failure.check(CallTimeout)
        assert pair.client.pending == 0
        # The server was told, cancelled the handler, and its -32800 reply was dropped.
        assert ctl.cancelled == ["t"]
        assert pair.server.in_flight == 0
        assert not [e for e in log.events if "log_failure" in e]

    def test_default_call_timeout_from_limits(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service, client_limits={"call_timeout": 2})
        d = pair.client.call("wait", "t")
        pair.flush()
        pair.clock.advance(2)
        pair.flush()
        assert outcome(d).check(CallTimeout)
        assert ctl.cancelled == ["t"]

    def test_reply_in_time_cancels_call_timer(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service, server_limits={"request_timeout": 0, "idle_timeout": 0})
        d = pair.client.call("wait", "t", timeout=5)
        pair.flush()
        assert len(pair.clock.getDelayedCalls()) == 1
        ctl.fire("t")
        pair.flush()
        assert outcome(d) == "t"
        assert pair.clock.getDelayedCalls() == []

    def test_cancel_call(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        d = pair.client.call("wait", "c")
        other = pair.client.call("wait", "keep")
        pair.flush()
        with CapturedLog() as log:
            d.cancel()
            assert outcome(d).check(CancelledError)
            assert pair.client.pending == 1
            pair.flush()
        assert ctl.cancelled == ["c"]
        assert pair.server.in_flight == 1
        # The server's -32800 reply reached the client and was dropped quietly.
        assert not [e for e in log.events if "log_failure" in e]
        assert any("unknown id" in e.get("log_format", "") for e in log.events)
        ctl.fire("keep")
        pair.flush()
        assert outcome(other) == "keep"

    def test_cancel_after_reply_is_noop(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        d = pair.client.call("echo", 1)
        pair.flush()
        d.cancel()
        assert outcome(d) == 1
        assert pair.client.transport.stream == []  # type: ignore[attr-defined]

    def test_reply_to_unknown_id_is_dropped_and_logged(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        with CapturedLog() as log:
            pair.client.dataReceived(b'{"jsonrpc":"2.0","result":1,"id":999}\n')
            pair.client.dataReceived(b'{"jsonrpc":"2.0","error":{"code":-1,"message":"x"},"id":"zz"}\n')
        dropped = [e for e in log.events if "unknown id" in e.get("log_format", "")]
        assert [e["id"] for e in dropped] == ["999", "'zz'"]
        d = pair.client.call("echo", "fine")
        pair.flush()
        assert outcome(d) == "fine"

    def test_peer_error_with_null_id_logged(self) -> None:
        proto, transport, _ = server_on_string_transport(None)
        with CapturedLog() as log:
            proto.dataReceived(
                b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}\n'
            )
        assert transport.value() == b""
        assert any("error" in e and e.get("log_level").name == "warn" for e in log.events)

    def test_notify(self, ctl: Controlled) -> None:
        service = JSONService()
        got: list[Any] = []
        service.add_method("record", lambda *a, **k: got.append((a, k)))
        pair = connected_pair(service)
        assert pair.client.notify("record", 1, 2) is None
        pair.client.notify("record", a=1)
        pair.client.notify("record")
        pair.flush()
        assert got == [((1, 2), {}), ((), {"a": 1}), ((), {})]
        assert pair.client.pending == 0

    def test_notify_is_not_answered(self) -> None:
        service = JSONService()
        service.add_method("record", lambda: None)
        proto, transport, _ = server_on_string_transport(service)
        client, client_transport, _ = server_on_string_transport(None)
        client.notify("record")
        proto.dataReceived(client_transport.value())
        assert client_transport.value() == b'{"jsonrpc":"2.0","method":"record"}\n'
        assert transport.value() == b""

    def test_send_plain_replies_in_order(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        d1 = pair.client.send({"wait": 1})
        d2 = pair.client.send("quick")
        d3 = pair.client.send({"wait": 2})
        pair.flush()
        ctl.plain[1].callback("second")
        pair.flush()
        assert not d1.called
        ctl.plain[0].callback("first")
        pair.flush()
        assert [outcome(d) for d in (d1, d2, d3)] == ["first", {"reply_to": "quick"}, "second"]
        assert pair.client.pending == 0

    def test_send_error_replies_fail_the_right_send(self) -> None:
        service = JSONService()

        @service.message
        def on_message(message: Any) -> Any:
            if message == "refuse":
                raise RPCError(4000, "Refused", {"why": "test"})
            if message == "crash":
                raise ValueError("hidden")
            return {"ok": message}

        pair = connected_pair(service)
        with CapturedLog():
            ds = [pair.client.send(m) for m in ("a", "refuse", "b", "crash", "c")]
            pair.flush()
        a, refuse, b, crash, c = (outcome(d) for d in ds)
        assert (a, b, c) == ({"ok": "a"}, {"ok": "b"}, {"ok": "c"})
        assert isinstance(refuse, Failure)
        assert refuse.value == RPCError(4000, "Refused", {"why": "test"})
        assert isinstance(crash, Failure)
        assert crash.value.code == -32603
        assert "error_id" in crash.value.data
        assert pair.client.pending == 0

    def test_send_to_service_without_message_handler_fails(self) -> None:
        pair = connected_pair(JSONService())
        d = pair.client.send({"name": "John"})
        pair.flush()
        failure = outcome(d)
        assert isinstance(failure, Failure)
        assert failure.value.code == -32600
        assert pair.client.pending == 0

    def test_send_to_demo_service(self) -> None:
        from jsonservice.demo import make_demo_service

        pair = connected_pair(make_demo_service())
        d = pair.client.send({"name": "John", "age": 30, "city": "New York"})
        pair.flush()
        assert outcome(d) == {"message": "Hello from server"}

    def test_send_refuses_jsonrpc_shapes(self) -> None:
        pair = connected_pair(JSONService())
        assert outcome(pair.client.send([1])).check(ValueError)
        assert outcome(pair.client.send({"jsonrpc": "2.0"})).check(ValueError)
        with pytest.raises(ValueError, match="plain message"):
            pair.client.write_message([1, 2])
        assert pair.client.pending == 0

    def test_send_timeout(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        d = pair.client.send({"wait": 1}, timeout=3)
        pair.flush()
        pair.clock.advance(3)
        assert outcome(d).check(CallTimeout)

    def test_write_message_expects_no_reply(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        assert pair.client.write_message("silent") is None
        pair.client.write_message({"x": 1})
        assert pair.client.pending == 0
        pair.flush()
        assert ctl.messages == ["silent", {"x": 1}]

    def test_server_calls_client_back(self) -> None:
        server_service = JSONService()
        client_service = JSONService()

        @server_service.method(context=True)
        async def greet(ctx: CallContext, name: str) -> str:
            title = await ctx.call("title_for", name)
            ctx.notify("greeted", name)
            return f"Hello, {title} {name}"

        titles = {"Ann": "Dr."}
        greeted: list[str] = []
        client_service.add_method("title_for", lambda name: titles[name])
        client_service.add_method("greeted", greeted.append)

        pair = connected_pair(server_service, client_service)
        d = pair.client.call("greet", "Ann")
        pair.flush()
        assert outcome(d) == "Hello, Dr. Ann"
        assert greeted == ["Ann"]

    def test_server_calls_client_without_service(self) -> None:
        server_service = JSONService()

        @server_service.method(context=True)
        async def ask_back(ctx: CallContext) -> Any:
            try:
                await ctx.call("anything")
            except MethodNotFound as exc:
                return exc.code
            return None

        pair = connected_pair(server_service)
        d = pair.client.call("ask_back")
        pair.flush()
        assert outcome(d) == -32601

    def test_server_connection_lost_fails_client_calls(self, ctl: Controlled) -> None:
        pair = connected_pair(ctl.service)
        d1 = pair.client.call("wait", "x", timeout=10)
        d2 = pair.client.send({"wait": 1})
        pair.flush()
        pair.server.transport.loseConnection()
        pair.flush()
        for d in (d1, d2):
            failure = outcome(d)
            assert isinstance(failure, Failure)
            assert failure.check(ConnectionClosed)
        assert ctl.cancelled == ["x"]
        assert pair.client.pending == 0
        assert pair.server.in_flight == 0
        assert pair.clock.getDelayedCalls() == []

    def test_unterminated_reply_delivered_on_close(self) -> None:
        client, _transport, _clock = server_on_string_transport(None, idle_timeout=0)
        d = client.send({"name": "John"})
        # A classic server: answers without a newline, then closes.
        client.dataReceived(b'{"a": [1, 2, 3]')
        assert not d.called
        client.connectionLost(Failure(ConnectionDone()))
        assert outcome(d).check(ConnectionClosed)

    def test_unterminated_reply_delivered_when_complete(self) -> None:
        client, _transport, clock = server_on_string_transport(None, idle_timeout=0)
        d = client.send({"name": "John"})
        client.dataReceived(b'{"a": [1, 2, 3]')
        client.dataReceived(b', "b": 4}')
        assert outcome(d) == {"a": [1, 2, 3], "b": 4}
        assert clock.getDelayedCalls() == []

    def test_write_coalescing_counts_on_client(self) -> None:
        service = JSONService()
        service.add_method("echo", lambda v: v)
        server, server_transport, _ = server_on_string_transport(service)
        client, client_transport, _ = server_on_string_transport(None)
        assert isinstance(client_transport, CountingTransport)
        ds = [client.call("echo", i) for i in range(5)]
        server.dataReceived(client_transport.value())
        assert len(server_transport.writes) == 1
        client.dataReceived(server_transport.value())
        assert [outcome(d) for d in ds] == list(range(5))


class TestRefusedLines:
    """A line the peer refuses outright is answered with id null."""

    def test_the_one_waiting_call_fails_with_the_peers_error(self) -> None:
        service = JSONService()
        service.add_method("echo", lambda value: value)
        pair = connected_pair(service, server_limits={"max_depth": 5, "max_line_length": 200})
        deep = pair.client.call("echo", [[[[[1]]]]])
        pair.flush()
        failure = outcome(deep)
        assert failure.check(RPCError)
        assert failure.value.code == -32700
        long = pair.client.call("echo", "x" * 300)
        pair.flush()
        assert outcome(long).value.code == -32002

    def test_with_several_calls_waiting_it_is_logged(self) -> None:
        service = JSONService()
        gate: Deferred[int] = Deferred()
        service.add_method("slow", lambda: gate)
        service.add_method("echo", lambda value: value)
        pair = connected_pair(service, server_limits={"max_line_length": 200})
        slow = pair.client.call("slow")
        with CapturedLog() as log:
            long = pair.client.call("echo", "x" * 300)
            pair.flush()
        assert not long.called
        assert any("reported an error" in e.get("log_format", "") for e in log.events)
        gate.callback(1)
        pair.flush()
        assert outcome(slow) == 1


class TestRawMode:
    """LineReceiver's raw mode, switched from a line handler, takes the rest of the read."""

    def test_switch_to_raw_mid_read_and_back(self) -> None:
        service = JSONService()
        service.add_method("echo", lambda value: value)
        raw: list[bytes] = []

        class Switching(JSONProtocol):
            def lineReceived(self, line: bytes) -> None:
                if line == b"RAW":
                    self.setRawMode()
                    return
                super().lineReceived(line)

            def rawDataReceived(self, data: bytes) -> None:
                raw.append(data)
                if data.endswith(b"END"):
                    self.setLineMode()

        proto = Switching(service, None, Clock())
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(rpc("echo", [1], id=1) + b"RAW\nabc\ndef\npartial")
        assert [r["id"] for r in map(json.loads, transport.value().splitlines())] == [1]
        assert raw == [b"abc\ndef\npartial"]
        assert transport.producerState == "producing"
        proto.dataReceived(b"...END")
        assert raw[-1] == b"...END"
        proto.dataReceived(rpc("echo", [2], id=2))
        assert [r["id"] for r in map(json.loads, transport.value().splitlines())] == [1, 2]


class TestMaxLength:
    """LineReceiver's MAX_LENGTH is the max_line_length limit."""

    def test_a_subclass_setting_max_length_sets_the_limit(self) -> None:
        class Short(JSONProtocol):
            MAX_LENGTH = 100

        service = JSONService()
        service.add_method("echo", lambda value: value)
        proto = Short(service, None, Clock())
        transport = StringTransport()
        proto.makeConnection(transport)
        assert proto.limits.max_line_length == 100
        proto.dataReceived(rpc("echo", ["x" * 150], id=1) + rpc("echo", ["ok"], id=2))
        first, second = map(json.loads, transport.value().splitlines())
        assert first["error"]["code"] == -32002
        assert first["error"]["data"] == {"max_line_length": 100}
        assert second["result"] == "ok"

    def test_setting_max_length_on_a_connection(self) -> None:
        service = JSONService()
        service.add_method("echo", lambda value: value)
        proto, transport, _ = server_on_string_transport(service)
        assert proto.limits.max_line_length == proto.MAX_LENGTH
        proto.MAX_LENGTH = 80
        proto.dataReceived(rpc("echo", ["y" * 100], id=1))
        [reply] = map(json.loads, transport.value().splitlines())
        assert reply["error"]["data"] == {"max_line_length": 80}
