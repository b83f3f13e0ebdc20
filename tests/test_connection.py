"""
Exhaustive tests of the sans-IO connection core (L{jsonservice.connection}),
driven without Twisted: bytes go in through C{receive_data}/C{receive_eof},
handler outcomes through C{complete}/C{fail}, and a fake L{Host} records
everything the core asks of the I/O layer.

A handler that "does not finish at once" returns a L{Later}; the fake host's
C{pending} recognises it, and the test fires it by hand, in any order.

Tests marked C{xfail(strict=True, reason="BUG: ...")} pin a bug found in the
core: they fail today and will XPASS (and so fail the run) once it is fixed,
at which point the marker goes.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice._mypyc import compiled
from jsonservice.auth import AuthGate
from jsonservice.connection import (
    CALLS_PER_FLUSH,
    CANCEL_METHOD,
    LOGGED_PER_CONNECTION,
    RUNNING_COST,
    Connection,
    Task,
    quote,
)
from jsonservice.errors import (
    InternalError,
    InvalidParams,
    MethodNotFound,
    RequestCancelled,
    RPCError,
)
from jsonservice.limits import Limits
from jsonservice.service import JSONService

# -- the fakes ------------------------------------------------------------------


class Later:
    """A result that is not a value yet; the test fires it by hand."""

    def __init__(self, label: Any = None) -> None:
        self.label = label
        self.task: Task | None = None
        self.core: Connection | None = None

    def succeed(self, value: Any) -> None:
        assert self.core is not None, "never started"
        assert self.task is not None, "never started"
        self.core.complete(self.task, value)

    def fail(self, error: BaseException | None) -> None:
        assert self.core is not None, "never started"
        assert self.task is not None, "never started"
        self.core.fail(self.task, error)


class FakeHost:
    """Records every request of the core; C{events} keeps their order."""

    def __init__(self) -> None:
        self.core: Connection | None = None
        self.writes: list[bytes] = []
        self.events: list[tuple[str, Any]] = []
        self.started: list[Task] = []
        self.cancelled: list[tuple[Task, RPCError | None]] = []
        self.internal: list[tuple[BaseException, str]] = []
        self.closes = 0
        self.reading_calls: list[bool] = []
        self.breaches: list[str] = []
        self.logs: list[tuple[str, dict[str, Any]]] = []
        self.warns: list[tuple[str, dict[str, Any]]] = []

    # Host
    def write(self, data: bytes) -> None:
        assert data, "empty write"
        assert not self.closes, f"write after close: {data[:80]!r}"
        self.writes.append(data)
        self.events.append(("write", data))

    @staticmethod
    def pending(result: Any) -> Any:
        return result if isinstance(result, Later) else None

    def start(self, task: Task, pending: Any) -> None:
        pending.task = task
        pending.core = self.core
        task.handle = pending
        self.started.append(task)

    def cancel(self, task: Task, error: RPCError | None) -> None:
        self.cancelled.append((task, error))

    def internal_error(self, error: BaseException, what: str) -> RPCError:
        self.internal.append((error, what))
        return InternalError(data={"error_id": "x"})

    def flush(self) -> None:
        self.events.append(("flush", None))

    def close(self) -> None:
        self.closes += 1
        self.events.append(("close", None))

    def reading(self, on: bool) -> None:
        self.reading_calls.append(on)

    def breached(self, limit: str) -> None:
        self.breaches.append(limit)

    def log(self, fmt: str, **fields: Any) -> None:
        self.logs.append((fmt, fields))

    def warn(self, fmt: str, **fields: Any) -> None:
        self.warns.append((fmt, fields))

    # helpers
    @property
    def output(self) -> bytes:
        return b"".join(self.writes)

    @property
    def lines(self) -> list[Any]:
        """Every line written, decoded."""
        out = self.output
        assert not out or out.endswith(b"\n"), out[-80:]
        return [json.loads(line) for line in out.split(b"\n")[:-1]]

    def take(self) -> list[Any]:
        """The lines written since the last C{take}."""
        lines = self.lines
        self.writes.clear()
        return lines


class FakeTable:
    """The service table the core needs: C{responders} and C{message_responder}."""

    def __init__(self, responders: dict[str, Any] | None = None, message: Any = None) -> None:
        self.responders: dict[str, Any] = dict(responders or {})
        self.message_responder = message


class FakeWaiter:
    """One of this side's calls awaiting its response."""

    def __init__(self, method: str | None = "m") -> None:
        self.method = method
        self.outcomes: list[tuple[str, Any]] = []

    def resolve(self, value: Any) -> None:
        self.outcomes.append(("resolve", value))

    def reject(self, error: BaseException) -> None:
        self.outcomes.append(("reject", error))


def make(
    responders: dict[str, Any] | None = None,
    message: Any = None,
    service: Any = None,
    **limits: Any,
) -> tuple[Connection, FakeHost]:
    host = FakeHost()
    table = service if service is not None else FakeTable(responders, message)
    core = Connection(table, host, owner="the-owner", limits=Limits(**limits))
    host.core = core
    return core, host


def req(method: str, params: Any = None, id: Any = ..., **extra: Any) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if id is not ...:
        obj["id"] = id
    obj.update(extra)
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def batch(*lines: bytes) -> bytes:
    return b"[" + b",".join(line.rstrip(b"\n") for line in lines) + b"]\n"


def result(id_: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": id_}


def code_of(reply: dict[str, Any]) -> int:
    return int(reply["error"]["code"])


class Laters:
    """Responders that return L{Later}s, kept by request id (or label)."""

    def __init__(self) -> None:
        self.by_key: dict[Any, Later] = {}

    def responder(self, params: Any, id_: Any, owner: Any) -> Later:
        later = Later(id_)
        self.by_key[id_] = later
        return later

    def message(self, params: Any, id_: Any, owner: Any) -> Any:
        value = params[0]
        if isinstance(value, dict) and "later" in value:
            later = Later(value["later"])
            self.by_key[value["later"]] = later
            return later
        return value

    def __getitem__(self, key: Any) -> Later:
        return self.by_key[key]


def echo(params: Any, id_: Any, owner: Any) -> Any:
    return params


def raise_nonjson_data(params: Any, id_: Any, owner: Any) -> Any:
    raise RPCError(1234, "custom", object())


# -- requests -------------------------------------------------------------------


def test_positional_named_and_absent_params_reach_the_responder() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    def record(params: Any, id_: Any, owner: Any) -> str:
        seen.append((params, id_, owner))
        return "ok"

    core, host = make({"m": record})
    core.receive_data(req("m", [1, 2], 1) + req("m", {"a": 1}, 2) + req("m", None, 3))
    assert seen == [([1, 2], 1, "the-owner"), ({"a": 1}, 2, "the-owner"), (None, 3, "the-owner")]
    assert host.lines == [result(1, "ok"), result(2, "ok"), result(3, "ok")]
    assert core.requests_received == 3


def test_real_service_binds_positional_and_named_params() -> None:
    service = JSONService()

    @service.method
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    core, host = make(service=service)
    core.receive_data(
        req("subtract", [42, 23], 1)
        + req("subtract", {"subtrahend": 23, "minuend": 42}, 2)
        + req("subtract", [1], 3)
        + req("subtract", {"x": 1}, 4)
    )
    replies = host.lines
    assert replies[:2] == [result(1, 19), result(2, 19)]
    assert [code_of(r) for r in replies[2:]] == [InvalidParams.code] * 2
    assert [r["id"] for r in replies[2:]] == [3, 4]


def test_notifications_are_never_answered_even_on_error() -> None:
    laters = Laters()

    def boom(params: Any, id_: Any, owner: Any) -> Any:
        raise ValueError("boom")

    def bad_params(params: Any, id_: Any, owner: Any) -> Any:
        raise InvalidParams(data="nope")

    ran: list[Any] = []
    core, host = make(
        {
            "ok": lambda p, i, o: ran.append(p) or "ignored",
            "boom": boom,
            "bad": bad_params,
            "later": laters.responder,
            "nonjson": lambda p, i, o: object(),
            "rpcdata": raise_nonjson_data,
        }
    )
    core.receive_data(
        req("ok", [1])
        + req("boom")
        + req("bad")
        + req("nosuch")
        + req("nonjson")
        + req("rpcdata")
        + req("later", [1])
        + req("later", [2])
    )
    assert ran == [[1]]
    assert host.writes == []
    # Two notifications still running: each finishes with nothing to answer.
    notes = [t for t in host.started if t.method == "later"]
    assert len(notes) == 2
    core.complete(notes[0], "value")
    core.fail(notes[1], RPCError(1, "x"))
    assert host.writes == []
    assert core.in_flight == 0
    # A notification inside a batch is not answered either.
    core.receive_data(batch(req("boom"), req("nosuch"), req("ok", [2])))
    assert host.writes == []


def test_unknown_method_quotes_the_name() -> None:
    core, host = make({})
    core.receive_data(req("nope", [], 7))
    [reply] = host.lines
    assert reply["id"] == 7
    assert code_of(reply) == MethodNotFound.code
    assert "'nope'" in reply["error"]["data"]


def test_unknown_method_name_of_1mb_is_bounded_in_the_reply() -> None:
    core, host = make({})
    core.receive_data(req("a" * 1_000_000, [], 1))
    [reply] = host.lines
    assert code_of(reply) == -32601
    assert len(reply["error"]["data"]) < 200
    assert len(host.output) < 400


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        (b'{"jsonrpc":"2.0","method":"x","id":true}', None),
        (b'{"jsonrpc":"2.0","method":"x","id":false}', None),
        (b'{"jsonrpc":"2.0","method":"x","id":{"a":1}}', None),
        (b'{"jsonrpc":"2.0","method":"x","id":[1]}', None),
        (b'{"jsonrpc":"1.0","method":"x","id":5}', 5),
        (b'{"jsonrpc":2.0,"method":"x","id":5}', 5),
        (b'{"jsonrpc":"2.0","method":1,"id":5}', 5),
        (b'{"jsonrpc":"2.0","method":null,"id":5}', 5),
        (b'{"jsonrpc":"2.0","method":"x","params":3,"id":5}', 5),
        (b'{"jsonrpc":"2.0","method":"x","params":"s","id":"s"}', "s"),
        (b'{"jsonrpc":"2.0","method":"x","params":null,"id":5}', 5),
        (b'{"jsonrpc":"2.0","id":5}', 5),
        (b'{"jsonrpc":"2.0"}', None),
        (b'{"jsonrpc":"2.0","result":1,"error":{"code":1,"message":"m"},"id":5}', 5),
        (b'{"jsonrpc":"2.0","error":{"code":"1","message":"m"},"id":5}', 5),
        (b'{"jsonrpc":"2.0","result":1}', None),
        (b'{"jsonrpc":"2.0","result":1,"id":true}', None),
    ],
)
def test_invalid_requests_get_32600(line: bytes, expected_id: Any) -> None:
    ran: list[Any] = []
    core, host = make({"x": lambda p, i, o: ran.append(i)})
    core.receive_data(line + b"\n")
    [reply] = host.lines
    assert code_of(reply) == -32600, reply
    assert reply["id"] == expected_id
    assert ran == []


@pytest.mark.parametrize("id_", ["s", "", 0, 1, -5, 1.5, None, 18446744073709551616, "\u00e9\u2603", 1e300])
def test_ids_of_every_type_are_echoed_exactly(id_: Any) -> None:
    core, host = make({"echo": echo})
    core.receive_data(req("echo", [1], id_))
    [reply] = host.lines
    assert reply == result(id_, [1])
    assert type(reply["id"]) is type(id_)


def test_id_float_with_integral_value_is_echoed_as_a_float() -> None:
    core, host = make({"echo": echo})
    core.receive_data(b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1.0}\n')
    assert host.output == b'{"jsonrpc":"2.0","result":[1],"id":1.0}\n'


def test_handler_exception_is_an_internal_error_with_the_hosts_error_id() -> None:
    def boom(params: Any, id_: Any, owner: Any) -> Any:
        raise ValueError("secret detail")

    core, host = make({"boom": boom})
    core.receive_data(req("boom", [], 1))
    [reply] = host.lines
    assert reply["error"] == {"code": -32603, "message": "Internal error", "data": {"error_id": "x"}}
    assert "secret detail" not in host.output.decode()
    [(error, what)] = host.internal
    assert isinstance(error, ValueError)
    assert what == "boom"


def test_rpcerror_goes_out_as_given() -> None:
    def custom(params: Any, id_: Any, owner: Any) -> Any:
        raise RPCError(-31999, "my message", {"k": [1, 2]})

    core, host = make({"custom": custom})
    core.receive_data(req("custom", [], 1))
    assert host.lines == [
        {"jsonrpc": "2.0", "error": {"code": -31999, "message": "my message", "data": {"k": [1, 2]}}, "id": 1}
    ]
    assert host.internal == []


def test_pending_request_answered_when_it_completes_or_fails() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder})
    core.receive_data(req("later", [], 1) + req("later", [], 2) + req("later", [], 3))
    assert host.writes == []
    assert core.running == 3
    assert core.in_flight == 3
    laters[2].succeed("two")
    laters[3].fail(RPCError(-1, "m"))
    laters[1].fail(ValueError("x"))
    assert host.lines == [
        result(2, "two"),
        {"jsonrpc": "2.0", "error": {"code": -1, "message": "m"}, "id": 3},
        {
            "jsonrpc": "2.0",
            "error": {"code": -32603, "message": "Internal error", "data": {"error_id": "x"}},
            "id": 1,
        },
    ]
    assert core.running == 0
    assert core.in_flight == 0
    # A second outcome for a finished task is ignored.
    laters[2].succeed("again")
    assert len(host.lines) == 3


def test_fail_with_none_answers_nothing() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder})
    core.receive_data(req("later", [], 1))
    laters[1].fail(None)
    assert host.writes == []
    assert core.in_flight == 0


# -- batches ------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations([1, 3, 5])))
def test_batch_with_sync_and_pending_items_in_any_completion_order(order: tuple[int, ...]) -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "echo": echo})
    core.receive_data(
        batch(
            req("later", [], 1),
            req("echo", ["two"], 2),
            req("later", [], 3),
            req("echo", ["note"]),  # a notification: no reply
            req("later", [], 5),
            req("nosuch", [], 6),
        )
    )
    assert host.writes == []
    for id_ in order[:-1]:
        laters[id_].succeed(f"r{id_}")
        assert host.writes == []
    laters[order[-1]].succeed(f"r{order[-1]}")
    assert len(host.writes) == 1
    [replies] = host.lines
    assert replies[:4] == [result(1, "r1"), result(2, ["two"]), result(3, "r3"), result(5, "r5")]
    assert replies[4]["id"] == 6
    assert code_of(replies[4]) == -32601
    assert core.in_flight == 0
    assert core.held_bytes == 0


def test_batch_pending_item_failing_gets_its_error_in_place() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "echo": echo})
    core.receive_data(batch(req("later", [], "a"), req("echo", [1], "b")))
    laters["a"].fail(RPCError(-5, "nope"))
    [replies] = host.lines
    assert replies == [
        {"jsonrpc": "2.0", "error": {"code": -5, "message": "nope"}, "id": "a"},
        result("b", [1]),
    ]


def test_all_notification_batch_sends_nothing_even_with_pending_items() -> None:
    laters = Laters()
    ran: list[Any] = []
    core, host = make({"later": laters.responder, "note": lambda p, i, o: ran.append(p)})
    core.receive_data(batch(req("note", [1]), req("later", [2]), req("nosuch")))
    assert ran == [[1]]
    assert host.writes == []
    [task] = host.started
    core.complete(task, "whatever")
    assert host.writes == []
    assert core.held_bytes == 0


def test_batch_with_invalid_items() -> None:
    core, host = make({"echo": echo})
    core.receive_data(
        b'[1, "x", {"foo":1}, {"jsonrpc":"2.0","method":"echo","id":true},'
        b' {"jsonrpc":"2.0","method":"echo","params":[1],"id":9}, []]\n'
    )
    [replies] = host.lines
    assert [code_of(r) for r in replies[:4]] == [-32600] * 4
    assert [r["id"] for r in replies[:4]] == [None] * 4
    assert replies[4] == result(9, [1])
    assert code_of(replies[5]) == -32600


def test_batch_responses_resolve_waiters_and_take_no_reply_slot() -> None:
    core, host = make({"echo": echo})
    waiter = FakeWaiter()
    core.calls[3] = waiter
    core.receive_data(b'[{"jsonrpc":"2.0","result":"r","id":3},' + req("echo", [1], 4).rstrip() + b"]\n")
    assert waiter.outcomes == [("resolve", "r")]
    assert host.lines == [[result(4, [1])]]


def test_empty_batch_is_one_invalid_request_not_an_array() -> None:
    core, host = make({})
    core.receive_data(b"[]\n")
    [reply] = host.lines
    assert isinstance(reply, dict)
    assert code_of(reply) == -32600
    assert reply["id"] is None


def test_batch_over_max_batch_is_32003() -> None:
    ran: list[Any] = []
    core, host = make({"echo": lambda p, i, o: ran.append(i)}, max_batch=3)
    core.receive_data(batch(*(req("echo", [], k) for k in range(4))))
    [reply] = host.lines
    assert code_of(reply) == -32003
    assert reply["error"]["data"] == {"max_batch": 3, "items": 4}
    assert reply["id"] is None
    assert ran == []
    assert "max_batch" in host.breaches
    # At the limit it is served.
    core.receive_data(batch(*(req("echo", [], k) for k in range(3))))
    assert ran == [0, 1, 2]


def test_batch_reply_over_max_unsent_answers_later_items_32002() -> None:
    big = "x" * 400
    core, host = make({"big": lambda p, i, o: big}, max_unsent=1000)
    core.receive_data(batch(*(req("big", [], k) for k in range(10))))
    [replies] = host.lines
    assert len(replies) == 10
    ok = [r for r in replies if "result" in r]
    errors = [r for r in replies if "error" in r]
    # The reply stops growing once it passed max_unsent: later items are -32002.
    assert 2 <= len(ok) <= 3
    assert replies[: len(ok)] == ok
    assert all(code_of(r) == -32002 for r in errors)
    assert errors[0]["error"]["data"] == {"max_unsent": 1000, "reason": "batch reply"}
    assert [r["id"] for r in replies] == list(range(10))
    assert len(host.output) < 1000 + 400 + 10 * 150
    assert "max_unsent" in host.breaches


def test_pending_batch_holds_its_collected_replies_in_held_bytes() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "echo": echo})
    core.receive_data(batch(req("later", [], 1), req("echo", ["y" * 100], 2)))
    assert core.held_bytes >= 100
    laters[1].succeed(None)
    assert core.held_bytes == 0
    assert host.lines == [[result(1, None), result(2, ["y" * 100])]]


def test_replies_held_by_several_pending_batches_are_bounded_by_max_unsent() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "big": lambda p, i, o: "x" * 800}, max_unsent=1000)
    for k in range(3):
        core.receive_data(batch(req("later", [], f"l{k}"), req("big", [], f"b{k}")))
    # Either the connection stops taking requests or the later batches
    # answer -32002; it may not hold 3 x 800 bytes silently.
    bounded = "queued" in core.holds or core.held_bytes <= 1000 + 1000
    assert bounded, (core.held_bytes, core.holds, host.breaches)


# -- plain messages -------------------------------------------------------------------


def test_plain_message_reply_and_none_means_no_reply() -> None:
    core, host = make(message=lambda p, i, o: None if p[0] == "quiet" else {"got": p[0]})
    core.receive_data(b'{"a":1}\n"quiet"\n[1]\n3\n')
    # [1] is a batch (an array), not a plain message.
    assert host.lines == [
        {"got": {"a": 1}},
        [{"jsonrpc": "2.0", "error": host.lines[1][0]["error"], "id": None}],
        {"got": 3},
    ]
    assert code_of(host.lines[1][0]) == -32600


def test_plain_message_without_handler_is_32600_id_null() -> None:
    core, host = make({})
    core.receive_data(b'{"hello":1}\n')
    [reply] = host.lines
    assert code_of(reply) == -32600
    assert reply["id"] is None


def test_plain_message_on_a_side_serving_nothing_is_logged_and_dropped() -> None:
    host = FakeHost()
    core = Connection(None, host)
    host.core = core
    core.receive_data(b'{"a":"' + b"z" * 10_000 + b'"}\n')
    assert host.writes == []
    [(_fmt, fields)] = host.logs
    assert len(fields["value"]) < 200


def test_plain_replies_keep_arrival_order_when_pending_ones_finish_out_of_order() -> None:
    laters = Laters()
    core, host = make(message=laters.message)
    core.receive_data(b'{"later":"a"}\n"one"\n{"later":"b"}\n"two"\n{"later":"c"}\n')
    assert host.writes == []
    laters["c"].succeed("C")
    laters["b"].succeed("B")
    assert host.writes == []
    laters["a"].succeed("A")
    assert host.lines == ["A", "one", "B", "two", "C"]
    assert core.held_bytes == 0


def test_running_requests_count_in_held_bytes() -> None:
    """Requests still running hold memory (Deferred, params, timer): they count toward max_buffered."""
    laters = Laters()
    core, _ = make(message=laters.message, max_in_flight=1000)
    core.receive_data(b"".join(b'{"later":"%d"}\n' % i for i in range(10)))
    assert core.held_bytes == 10 * RUNNING_COST
    for i in range(10):
        laters[str(i)].succeed(i)
    assert core.held_bytes == 0


def test_plain_pending_returning_none_keeps_the_order_and_sends_nothing() -> None:
    laters = Laters()
    core, host = make(message=laters.message)
    core.receive_data(b'{"later":"a"}\n"one"\n')
    laters["a"].succeed(None)
    assert host.lines == ["one"]


def test_plain_replies_behind_a_pending_one_are_coalesced_and_held() -> None:
    laters = Laters()
    core, host = make(message=laters.message, max_unsent=100, max_in_flight=1000)
    core.receive_data(b'{"later":"a"}\n')
    base = core.held_bytes
    assert base == RUNNING_COST  # the one running
    reply = json.dumps("m" * 20).encode() + b"\n"  # 23 bytes a reply
    for k in range(5):
        core.receive_data(reply)
        assert core.held_bytes == base + (k + 1) * len(reply)
        if (k + 1) * len(reply) > 100:
            assert "queued" in core.holds
        else:
            assert "queued" not in core.holds
    assert "max_unsent" in host.breaches
    # Coalesced into one buffer behind the pending one, not one object each.
    assert len(core._plain) == 2
    # Held: new input waits (and the host is told to stop reading).
    core.receive_data(b'"after"\n')
    assert host.writes == []
    assert host.reading_calls[-1] is False
    laters["a"].succeed("A")
    assert host.lines == ["A", *["m" * 20] * 5, "after"]
    assert core.holds == frozenset()
    assert host.reading_calls[-1] is True


def test_plain_replies_queued_up_to_max_in_flight_hold_the_connection() -> None:
    laters = Laters()
    core, host = make(message=laters.message, max_in_flight=5)
    core.receive_data(b'{"later":"a"}\n')
    sent = 0
    while "in-flight" not in core.holds:
        assert core.in_flight < 5
        core.receive_data(b'"x"\n')
        sent += 1
        assert sent < 10, "never held"
    assert core.in_flight >= 5
    assert "max_in_flight" in host.breaches
    core.receive_data(b'"later line"\n')
    assert host.writes == []
    laters["a"].succeed("A")
    assert host.lines == ["A", *["x"] * sent, "later line"]
    assert "in-flight" not in core.holds


def test_in_flight_returns_to_zero_after_coalesced_plain_replies_are_written() -> None:
    laters = Laters()
    core, host = make(message=laters.message)
    core.receive_data(b'{"later":"a"}\n"x"\n"y"\n"z"\n')
    laters["a"].succeed("A")
    assert host.lines == ["A", "x", "y", "z"]
    assert core.in_flight == 0


def test_repeated_coalescing_does_not_shrink_the_in_flight_cap() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder}, message=laters.message, max_in_flight=20)
    for k in range(3):
        core.receive_data(b'{"later":%d}\n' % k + b'"x"\n' * 10)
        laters[k].succeed(k)
    assert len(host.lines) == 33
    # Nothing is running or queued now: five requests are far under the cap.
    core.receive_data(b"".join(req("later", [], f"r{k}") for k in range(5)))
    assert core.running == 5, (core.running, core.in_flight, core.holds)
    assert "in-flight" not in core.holds


def test_a_pending_plain_message_counts_once_in_flight() -> None:
    laters = Laters()
    core, _host = make(message=laters.message)
    core.receive_data(b'{"later":"a"}\n')
    assert core.in_flight == 1


# -- error mapping through the one path -------------------------------------------------


def test_rpcerror_with_nonjson_data_sync_does_not_lose_the_other_replies() -> None:
    core, host = make({"bad": raise_nonjson_data, "ok": lambda p, i, o: "ok"})
    core.receive_data(req("ok", [], 1) + req("bad", [], 2) + req("ok", [], 3))
    assert len(host.writes) == 1
    one, two, three = host.lines
    assert one == result(1, "ok")
    assert three == result(3, "ok")
    assert two["id"] == 2
    assert two["error"]["code"] == -32603
    assert two["error"]["data"]["error_id"] == "x"
    assert "not JSON-serializable" in two["error"]["data"]["reason"]


def test_rpcerror_with_nonjson_data_in_a_batch() -> None:
    core, host = make({"bad": raise_nonjson_data, "ok": lambda p, i, o: "ok"})
    core.receive_data(batch(req("ok", [], 1), req("bad", [], 2), req("ok", [], 3)) + req("ok", [], 4))
    replies, after = host.lines
    assert replies[0] == result(1, "ok")
    assert replies[1]["id"] == 2
    assert code_of(replies[1]) == -32603
    assert replies[2] == result(3, "ok")
    assert after == result(4, "ok")


def test_rpcerror_with_nonjson_data_from_the_plain_handler() -> None:
    def message(params: Any, id_: Any, owner: Any) -> Any:
        if params[0] == "bad":
            raise RPCError(1, "m", object())
        return params[0]

    core, host = make(message=message)
    core.receive_data(b'"a"\n"bad"\n"b"\n')
    a, bad, b = host.lines
    assert (a, b) == ("a", "b")
    assert code_of(bad) == -32603
    assert bad["id"] is None


def test_rpcerror_with_nonjson_data_when_pending_fails() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "ok": lambda p, i, o: "ok"}, message=laters.message)
    core.receive_data(
        req("later", [], 1) + batch(req("later", [], 2), req("ok", [], 3)) + b'{"later":"p"}\n"q"\n'
    )
    laters[1].fail(RPCError(1, "m", object()))
    laters[2].fail(RPCError(1, "m", object()))
    laters["p"].fail(RPCError(1, "m", object()))
    single, replies, plain_error, q = host.lines
    assert single["id"] == 1
    assert code_of(single) == -32603
    assert replies[0]["id"] == 2
    assert code_of(replies[0]) == -32603
    assert replies[1] == result(3, "ok")
    assert code_of(plain_error) == -32603
    assert plain_error["id"] is None
    assert q == "q"
    assert len(host.internal) == 3


@pytest.mark.parametrize(
    "value",
    [
        object(),
        (1, float("nan")),
        [1, (2, float("inf"))],
        {"k": (float("-inf"),)},
        float("nan"),
        {1.5j: 1},
    ],
    ids=["object", "nan-in-tuple", "inf-in-nested-tuple", "ninf-in-dict-tuple", "nan", "complex-key"],
)
def test_result_that_is_not_json_is_32603_not_null(value: Any) -> None:
    laters = Laters()
    core, host = make({"v": lambda p, i, o: value, "later": laters.responder, "ok": lambda p, i, o: 1})
    core.receive_data(req("v", [], 1) + req("ok", [], 2) + req("later", [], 3))
    laters[3].succeed(value)
    bad, ok, later = host.lines
    for reply, id_ in ((bad, 1), (later, 3)):
        assert reply["id"] == id_
        assert code_of(reply) == -32603
        assert "result" not in reply
        assert "not JSON-serializable" in reply["error"]["data"]["reason"]
    assert ok == result(2, 1)


def test_plain_reply_that_is_not_json_is_32603() -> None:
    core, host = make(message=lambda p, i, o: (float("nan"),) if p[0] == 1 else p[0])
    core.receive_data(b"1\n2\n")
    bad, two = host.lines
    assert code_of(bad) == -32603
    assert bad["id"] is None
    assert two == 2


def test_tuple_results_without_nan_are_arrays() -> None:
    core, host = make({"t": lambda p, i, o: (1, (2.5, "x"))})
    core.receive_data(req("t", [], 1))
    assert host.lines == [result(1, [1, [2.5, "x"]])]


# -- the in-flight cap ------------------------------------------------------------------


def test_in_flight_cap_holds_queues_and_resumes_in_order() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "echo": echo}, max_in_flight=2)
    core.receive_data(req("later", [], 1) + req("later", [], 2) + req("echo", [3], 3) + req("later", [], 4))
    assert "in-flight" in core.holds
    assert "max_in_flight" in host.breaches
    assert [t.id for t in host.started] == [1, 2]
    assert host.writes == []
    assert host.reading_calls == [False]  # held, no calls out: stop reading
    # While held: responses to this side's calls and cancellations are handled.
    waiter = FakeWaiter()
    core.calls[10] = waiter
    core.receive_data(
        req("echo", [5], 5) + b'{"jsonrpc":"2.0","result":"r","id":10}\n' + req(CANCEL_METHOD, {"id": 2})
    )
    assert waiter.outcomes == [("resolve", "r")]
    assert 10 not in core.calls
    [(task, error)] = host.cancelled
    assert task.id == 2
    assert isinstance(error, RequestCancelled)
    assert error.code == -32800
    assert host.writes == []
    assert [t.id for t in host.started] == [1, 2]
    # The cancelled task fails: below the cap, the queue goes on in order.
    laters[2].fail(error)
    assert host.lines == [
        {"jsonrpc": "2.0", "error": error.to_dict(), "id": 2},
        result(3, [3]),
    ]
    assert [t.id for t in host.started] == [1, 2, 4]
    assert "in-flight" in core.holds  # 1 and 4 running
    laters[1].succeed("one")
    assert host.lines[2:] == [result(1, "one"), result(5, [5])]
    assert core.holds == frozenset()
    assert host.reading_calls == [False, True]
    laters[4].succeed("four")
    assert host.lines[4:] == [result(4, "four")]
    assert core.in_flight == 0


def test_in_flight_cap_keeps_reading_while_this_side_awaits_responses() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder, "echo": echo}, max_in_flight=1, max_line_length=1000)
    waiter = FakeWaiter()
    core.calls[10] = waiter  # a running handler may be waiting on this
    core.receive_data(req("later", [], 1) + req("echo", [2], 2))
    assert "in-flight" in core.holds
    assert host.reading_calls == []
    # Queued input up to the read-ahead (max(max_line_length, 64 KiB)) is read...
    line = req("echo", ["z" * 900], 3)
    for _ in range(60):
        core.receive_data(line)
    assert host.reading_calls == []
    assert core.held_bytes > 60 * 900
    # ... past it, reading stops even though responses are awaited.
    for _ in range(20):
        core.receive_data(line)
    assert host.reading_calls == [False]
    # The response still gets through (it was read before the stop).
    core.receive_data(b'{"jsonrpc":"2.0","result":"r","id":10}\n')
    assert waiter.outcomes == [("resolve", "r")]
    laters[1].succeed("one")
    assert host.reading_calls == [False, True]
    replies = host.lines
    assert replies[:2] == [result(1, "one"), result(2, [2])]
    assert len(replies) == 82
    assert core.held_bytes == 0


def test_held_connection_stops_reading_once_the_awaited_responses_arrived() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder}, max_in_flight=1)
    core.calls[10] = FakeWaiter()
    core.receive_data(req("later", [], 1) + req("later", [], 2))
    assert host.reading_calls == []
    core.receive_data(b'{"jsonrpc":"2.0","result":"r","id":10}\n')
    assert host.reading_calls == [False]


def test_responses_inside_a_batch_while_held_are_pinned() -> None:
    # Pinned: only single-object lines are looked at while held; a batch of
    # responses waits its turn like any other line.
    laters = Laters()
    core, _host = make({"later": laters.responder}, max_in_flight=1)
    waiter = FakeWaiter()
    core.calls[10] = waiter
    core.receive_data(req("later", [], 1) + b'[{"jsonrpc":"2.0","result":"r","id":10}]\n')
    assert waiter.outcomes == []
    laters[1].succeed(1)
    assert waiter.outcomes == [("resolve", "r")]


def test_plain_message_mentioning_jsonrpc_waits_while_held() -> None:
    laters = Laters()
    seen: list[Any] = []
    core, _host = make(
        {"later": laters.responder}, message=lambda p, i, o: seen.append(p[0]), max_in_flight=1
    )
    core.receive_data(req("later", [], 1) + b'{"k":"jsonrpc"}\n')
    assert "in-flight" in core.holds
    assert seen == []


# -- cancellation -----------------------------------------------------------------------


def _running(ids: list[Any]) -> tuple[Connection, FakeHost, Laters]:
    laters = Laters()
    core, host = make({"later": laters.responder})
    core.receive_data(b"".join(req("later", [], i) for i in ids))
    return core, host, laters


def test_cancel_request_cancels_exactly_that_task() -> None:
    core, host, _ = _running([1, 2, "3"])
    core.receive_data(req(CANCEL_METHOD, {"id": 2}))
    [(task, error)] = host.cancelled
    assert task.id == 2
    assert isinstance(error, RequestCancelled)
    assert error.code == -32800
    core.receive_data(req(CANCEL_METHOD, {"id": "3"}))
    assert [t.id for t, _ in host.cancelled] == [2, "3"]
    assert host.writes == []  # a notification


@pytest.mark.parametrize(
    "target",
    [True, False, 1.0, "1", None, [1], {"id": 1}],
    ids=["true", "false", "1.0", "'1'", "null", "list", "dict"],
)
def test_cancel_request_with_another_type_does_not_cancel_id_1(target: Any) -> None:
    core, host, _ = _running([1])
    core.receive_data(req(CANCEL_METHOD, {"id": target}))
    assert host.cancelled == []
    assert any("not running" in fmt for fmt, _ in host.logs)


def test_cancel_request_with_float_id_cancels_a_float_id_task() -> None:
    core, host, _ = _running([1.5, 2.0])
    core.receive_data(req(CANCEL_METHOD, {"id": 2.0}) + req(CANCEL_METHOD, {"id": 1.5}))
    assert [t.id for t, _ in host.cancelled] == [2.0, 1.5]
    assert type(host.cancelled[0][0].id) is float


def test_cancel_request_reaches_a_float_id_running_beside_an_equal_int_id() -> None:
    core, host, _ = _running([1, 1.0])
    core.receive_data(req(CANCEL_METHOD, {"id": 1.0}))
    assert [(t.id, type(t.id)) for t, _ in host.cancelled] == [(1.0, float)]


def test_cancel_request_with_positional_params_or_unknown_id_is_logged_bounded() -> None:
    core, host, _ = _running([1])
    core.receive_data(req(CANCEL_METHOD, [1]) + req(CANCEL_METHOD, {"id": "q" * 1_000_000}))
    assert host.cancelled == []
    assert len(host.logs) == 2
    assert all(len(fields["id"]) < 200 for _, fields in host.logs)


def test_cancel_request_sent_as_a_request_is_answered_null() -> None:
    core, host, _ = _running([1])
    core.receive_data(req(CANCEL_METHOD, {"id": 1}, "c"))
    assert [t.id for t, _ in host.cancelled] == [1]
    assert host.lines == [result("c", None)]


def test_cancel_request_with_duplicate_running_ids_cancels_the_first() -> None:
    # Pinned: a second request reusing a running id is keyed apart and cannot be
    # cancelled by id; the first one is.
    core, host, _ = _running([1, 1])
    core.receive_data(req(CANCEL_METHOD, {"id": 1}))
    [(task, _)] = host.cancelled
    assert task is host.started[0]


def test_cancel_request_for_a_finished_task_does_nothing() -> None:
    core, host, laters = _running([1])
    laters[1].succeed("done")
    core.receive_data(req(CANCEL_METHOD, {"id": 1}))
    assert host.cancelled == []


def test_cancel_all_cancels_every_running_task() -> None:
    core, host, _ = _running([1, 2])
    error = RequestCancelled(data="shutting down")
    assert core.cancel_all(error) == 2
    assert sorted(t.id for t, _ in host.cancelled) == [1, 2]
    assert all(e is error for _, e in host.cancelled)


# -- responses to this side's calls -------------------------------------------------------


def test_responses_matched_by_id_to_waiters() -> None:
    core, host = make({})
    ok, bad, named = FakeWaiter(), FakeWaiter(), FakeWaiter()
    core.calls.update({1: ok, 2: bad, "s": named})
    core.receive_data(
        b'{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":"d"},"id":2}\n'
        b'{"jsonrpc":"2.0","result":{"v":1},"id":1}\n'
        b'{"jsonrpc":"2.0","result":null,"id":"s"}\n'
    )
    assert ok.outcomes == [("resolve", {"v": 1})]
    assert named.outcomes == [("resolve", None)]
    [(kind, error)] = bad.outcomes
    assert kind == "reject"
    assert isinstance(error, InvalidParams)
    assert error.data == "d"
    assert core.calls == {}
    assert host.writes == []


def test_next_id_counts_up() -> None:
    core, _ = make({})
    assert [core.next_id(), core.next_id(), core.next_id()] == [1, 2, 3]


def test_response_with_float_id_does_not_match_an_int_waiter() -> None:
    # Pinned: this side's ids are ints; 1.0 is another id.
    core, host = make({})
    waiter = FakeWaiter()
    core.calls[1] = waiter
    core.receive_data(b'{"jsonrpc":"2.0","result":"r","id":1.0}\n')
    assert waiter.outcomes == []
    assert 1 in core.calls
    assert any("unknown id" in fmt for fmt, _ in host.logs)


def test_response_to_unknown_id_is_logged_with_a_bounded_quote() -> None:
    core, host = make({})
    core.receive_data(b'{"jsonrpc":"2.0","result":1,"id":"' + b"i" * 1_000_000 + b'"}\n')
    [(fmt, fields)] = host.logs
    assert "unknown id" in fmt
    assert len(fields["id"]) < 200
    assert host.writes == []


def test_error_with_id_null_rejects_the_oldest_plain_waiter() -> None:
    core, host = make({})
    call = FakeWaiter()
    first, second = FakeWaiter(None), FakeWaiter(None)
    core.calls[1] = call
    core.plain_waiters.extend([first, second])
    core.receive_data(b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":null}\n')
    [(kind, error)] = first.outcomes
    assert kind == "reject"
    assert error.code == -32600
    assert second.outcomes == []
    assert call.outcomes == []
    # A plain reply resolves the next plain waiter.
    core.receive_data(b'{"plain":"reply"}\n')
    assert second.outcomes == [("resolve", {"plain": "reply"})]
    assert host.writes == []


def test_error_with_id_null_and_no_plain_waiter_is_warned_bounded() -> None:
    core, host = make({})
    core.receive_data(b'{"jsonrpc":"2.0","error":{"code":1,"message":"' + b"m" * 100_000 + b'"},"id":null}\n')
    [(_fmt, fields)] = host.warns
    assert len(fields["error"]) < 300
    assert host.writes == []


def test_result_with_id_null_is_dropped_not_given_to_a_plain_waiter() -> None:
    core, host = make({})
    waiter = FakeWaiter(None)
    core.plain_waiters.append(waiter)
    core.receive_data(b'{"jsonrpc":"2.0","result":1,"id":null}\n')
    assert waiter.outcomes == []
    assert any("unknown id" in fmt for fmt, _ in host.logs)


def test_connection_lost_returns_waiters_and_cancels_running() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder})
    core.receive_data(req("later", [], 1))
    call, plain = FakeWaiter(), FakeWaiter(None)
    core.calls[5] = call
    core.plain_waiters.append(plain)
    waiters = core.connection_lost()
    assert waiters == [call, plain]
    assert core.calls == {}
    assert [(t.id, e) for t, e in host.cancelled] == [(1, None)]
    # Nothing is written once gone, and input is ignored.
    laters[1].succeed("late")
    core.receive_data(req("later", [], 2))
    assert host.writes == []


# -- authentication -----------------------------------------------------------------------


class Authed:
    """A core wired to an L{AuthGate} as protocol.py wires it."""

    def __init__(self, token: bytes = b"s3cret") -> None:
        self.ran: list[Any] = []
        self.auth_calls: list[Any] = []
        service = JSONService()

        @service.method
        def secret(x: int = 0) -> str:
            self.ran.append(("secret", x))
            return "classified"

        self.service = service
        self.core, self.host = make(service=service)
        core = self.core

        def on_success() -> None:
            core.gate = None

        self.gate = gate = AuthGate(token, on_success, core.close_input)
        core.gate = gate.responder_for

        def authenticate(params: Any, id_: Any, owner: Any) -> Any:
            self.auth_calls.append(params)
            return gate.authenticate(params, id_, owner)

        core.specials["rpc.authenticate"] = authenticate


def test_before_auth_only_ping_and_authenticate_are_served() -> None:
    seen: list[Any] = []
    a = Authed()
    a.service.message(lambda m: seen.append(m))
    a.core.receive_data(
        req("rpc.ping", [], 1)
        + req("secret", [], 2)
        + req("rpc.discover", [], 3)
        + req("nosuch", [], 4)
        + b'{"plain":1}\n'
        + batch(req("secret", [], 5), req("rpc.ping", [], 6))
        + req(CANCEL_METHOD, {"id": 1}, 7)
    )
    one, two, three, four, plain, replies, cancel = a.host.lines
    assert one == result(1, "pong")
    for reply, id_ in ((two, 2), (three, 3), (four, 4), (plain, None), (replies[0], 5), (cancel, 7)):
        assert code_of(reply) == -32004, reply
        assert reply["id"] == id_
    assert replies[1] == result(6, "pong")
    assert a.ran == []
    assert seen == []
    assert a.host.closes == 0
    # The right token opens the rest.
    a.core.receive_data(req("rpc.authenticate", {"token": "s3cret"}, 8) + req("secret", [2], 9))
    assert a.host.lines[7:] == [result(8, True), result(9, "classified")]
    assert a.ran == [("secret", 2)]


def test_positional_token_is_accepted() -> None:
    a = Authed()
    a.core.receive_data(req("rpc.authenticate", ["s3cret"], 1) + req("secret", [], 2))
    assert a.host.lines == [result(1, True), result(2, "classified")]


def test_wrong_token_stops_everything_pipelined_in_the_same_read() -> None:
    a = Authed()
    guesses = []
    for k in range(700):
        if k == 350:
            guesses.append(req("rpc.authenticate", {"token": "s3cret"}, f"g{k}"))
        elif k % 3 == 0:
            guesses.append(req("secret", [k], k))
        elif k % 3 == 1:
            guesses.append(req("rpc.ping", [], k))
        else:
            guesses.append(req("rpc.authenticate", {"token": f"guess{k}"}, f"g{k}"))
    a.core.receive_data(req("rpc.authenticate", {"token": "wrong"}, 1) + b"".join(guesses))
    assert a.host.lines == [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32004, "message": "Unauthorized", "data": "wrong token"},
            "id": 1,
        }
    ]
    assert a.host.closes >= 1
    assert a.host.events[-1] == ("close", None)
    assert a.auth_calls == [{"token": "wrong"}]  # the right token later on was never tried
    assert a.ran == []
    assert not a.gate.authenticated
    assert "closing" in a.core.holds
    assert a.core.held_bytes == 0
    # Nothing more is read.
    a.core.receive_data(req("rpc.authenticate", {"token": "s3cret"}, 2) + req("rpc.ping", [], 3))
    a.core.receive_eof()
    assert len(a.host.lines) == 1
    assert len(a.auth_calls) == 1


def test_wrong_token_after_answered_lines_in_the_same_read() -> None:
    a = Authed()
    a.core.receive_data(
        req("rpc.ping", [], 1) + req("rpc.authenticate", {"token": "no"}, 2) + req("rpc.ping", [], 3)
    )
    one, two = a.host.lines
    assert one == result(1, "pong")
    assert code_of(two) == -32004
    assert len(a.host.writes) == 1
    assert a.host.events[-1] == ("close", None)


def test_missing_token_is_a_wrong_token() -> None:
    a = Authed()
    a.core.receive_data(req("rpc.authenticate", None, 1) + req("rpc.ping", [], 2))
    [reply] = a.host.lines
    assert code_of(reply) == -32004
    assert a.host.closes >= 1


def test_wrong_token_in_a_batch_stops_the_rest_of_the_batch() -> None:
    a = Authed()
    a.core.receive_data(
        batch(
            req("rpc.authenticate", {"token": "wrong"}, 1),
            req("rpc.authenticate", {"token": "s3cret"}, 2),
            req("secret", [], 3),
            req("secret", []),  # a notification: no reply
            b'{"jsonrpc":"2.0","result":1,"id":9}',  # a response: no reply
        )
    )
    assert a.auth_calls == [{"token": "wrong"}]
    assert a.ran == []
    assert not a.gate.authenticated
    # The batch is still answered, every request of it: the wrong token's
    # -32004, and -32004 "not run" for each request after it; then the close.
    [reply] = a.host.lines
    assert [(item["id"], code_of(item)) for item in reply] == [(1, -32004), (2, -32004), (3, -32004)]
    assert [item["error"]["data"] for item in reply[1:]] == [
        "not run: a wrong token earlier in this batch ends the connection"
    ] * 2
    assert a.host.closes >= 1


def test_wrong_token_in_a_batch_still_answers_every_request() -> None:
    """
    A batch cut short by a wrong token answers every request of it (an
    attack run found one missing): a handler still running then gets
    -32800, invalid items their -32600, requests after the token -32004 "not
    run"; a handler finishing later changes nothing.  Also when the wrong
    token is the batch's last item.
    """
    for last in (False, True):
        a = Authed()
        laters = Laters()
        a.core.specials["slow"] = laters.responder
        items = [req("rpc.authenticate", {"token": "s3cret"}, 1), req("slow", [], 2)]
        wrong = req("rpc.authenticate", {"token": "bad"}, 3)
        after = [req("rpc.ping", [], 4), b'{"jsonrpc":"2.0","id":7}', b"5", req("secret", [], 8)]
        a.core.receive_data(batch(*items, *after, wrong) if last else batch(*items, wrong, *after))
        [reply] = a.host.lines
        codes = {item["id"]: item["error"]["code"] if "error" in item else None for item in reply}
        if last:
            assert codes == {1: None, 2: -32800, 3: -32004, 4: None, 7: -32600, None: -32600, 8: None}
        else:
            assert codes == {1: None, 2: -32800, 3: -32004, 4: -32004, 7: -32600, None: -32600, 8: -32004}
            assert a.ran == []
        assert len(reply) == 7
        laters[2].succeed("late")  # the batch reply already went out
        assert len(a.host.lines) == 1
        assert a.host.closes >= 1


def test_after_auth_a_wrong_token_is_32004_and_closes() -> None:
    a = Authed()
    a.core.receive_data(req("rpc.authenticate", {"token": "s3cret"}, 1))
    assert a.host.lines == [result(1, True)]
    assert a.gate.authenticated
    a.core.receive_data(req("rpc.authenticate", {"token": "nope"}, 2) + req("secret", [], 3))
    second = a.host.lines[1:]
    assert len(second) == 1
    assert code_of(second[0]) == -32004
    assert second[0]["id"] == 2
    assert not a.gate.authenticated
    assert a.host.closes >= 1
    assert a.ran == []


def test_after_auth_the_right_token_again_is_true() -> None:
    a = Authed()
    a.core.receive_data(
        req("rpc.authenticate", {"token": "s3cret"}, 1) + req("rpc.authenticate", {"token": "s3cret"}, 2)
    )
    assert a.host.lines == [result(1, True), result(2, True)]
    assert a.host.closes == 0


# -- half-close ----------------------------------------------------------------------------


def _closed_after_last_write(host: FakeHost) -> None:
    assert host.closes >= 1
    first_close = host.events.index(("close", None))
    assert all(kind == "close" for kind, _ in host.events[first_close:])


def test_eof_after_a_terminated_request() -> None:
    core, host = make({"echo": echo})
    core.receive_data(req("echo", [1], 1))
    core.receive_eof()
    assert host.lines == [result(1, [1])]
    _closed_after_last_write(host)


def test_eof_in_the_same_breath_as_the_request() -> None:
    core, host = make({"echo": echo}, message=lambda p, i, o: p[0])
    core.receive_data(req("echo", [1], 1) + b"42")
    assert host.lines == [result(1, [1])]  # a bare number may go on: it waits
    core.receive_eof()
    assert host.lines == [result(1, [1]), 42]
    _closed_after_last_write(host)


def test_eof_after_an_unterminated_complete_value_answers_it_once() -> None:
    core, host = make({"echo": echo})
    core.receive_data(req("echo", [1], 1).rstrip(b"\n"))
    core.receive_eof()
    assert host.lines == [result(1, [1])]
    _closed_after_last_write(host)


def test_eof_after_an_unterminated_incomplete_value_is_a_parse_error() -> None:
    core, host = make({"echo": echo})
    core.receive_data(b'{"jsonrpc":"2.0","method":"echo","par')
    assert host.writes == []
    core.receive_eof()
    [reply] = host.lines
    assert code_of(reply) == -32700
    assert reply["id"] is None
    _closed_after_last_write(host)


def test_eof_with_pending_tasks_closes_only_after_they_complete() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder}, message=laters.message)
    core.receive_data(req("later", [], 1) + batch(req("later", [], 2)) + b'{"later":"p"}\n')
    core.receive_eof()
    assert host.closes == 0
    laters[1].succeed("one")
    laters["p"].succeed("P")
    assert host.closes == 0
    laters[2].succeed("two")
    assert host.lines == [result(1, "one"), "P", [result(2, "two")]]
    _closed_after_last_write(host)


def test_eof_with_nothing_closes_at_once() -> None:
    core, host = make({})
    core.receive_eof()
    assert host.writes == []
    assert host.closes >= 1


def test_eof_with_only_whitespace_left_closes_without_a_reply() -> None:
    core, host = make({})
    core.receive_data(b"  \t")
    core.receive_eof()
    assert host.writes == []
    assert host.closes >= 1


def test_input_after_eof_is_ignored() -> None:
    core, host = make({"echo": echo})
    core.receive_eof()
    core.receive_data(req("echo", [], 1))
    core.receive_eof()
    assert host.writes == []


def test_eof_while_held_at_the_in_flight_cap_answers_everything() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder}, max_in_flight=1)
    core.receive_data(req("later", [], 1) + req("later", [], 2) + req("later", [], 3))
    core.receive_eof()
    for id_ in (1, 2, 3):
        assert id_ in laters.by_key, f"request {id_} never started"
        laters[id_].succeed(id_)
    assert host.lines == [result(1, 1), result(2, 2), result(3, 3)]
    _closed_after_last_write(host)


def test_finish_closes_once_running_handlers_are_answered() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder})
    core.receive_data(req("later", [], 1))
    core.finish()
    assert host.closes == 0
    laters[1].succeed("x")
    assert host.lines == [result(1, "x")]
    _closed_after_last_write(host)


# -- framing: CR, unterminated peers, long lines ----------------------------------------------


def test_cr_only_line_endings_in_one_read() -> None:
    core, host = make({"echo": echo}, message=lambda p, i, o: p[0])
    core.receive_data(b'{"a":1}\r{"b":2}\r')
    assert host.lines == [{"a": 1}, {"b": 2}]
    assert len(host.writes) == 1
    core.receive_data(req("echo", [1], 1).rstrip(b"\n") + b"\r" + req("echo", [2], 2).rstrip(b"\n") + b"\r")
    assert host.lines[2:] == [result(1, [1]), result(2, [2])]


def test_crlf_split_between_reads_gives_no_extra_line() -> None:
    core, host = make(message=lambda p, i, o: p[0])
    core.receive_data(b'"a"\r')
    core.receive_data(b'\n"b"\r\n')
    assert host.lines == ["a", "b"]


def test_blank_lines_are_ignored() -> None:
    core, host = make(message=lambda p, i, o: p[0])
    core.receive_data(b'\n\n   \n\t\n"a"\n\n')
    assert host.lines == ["a"]


@pytest.mark.skipif(compiled(), reason="spies on a module function, which compiled code calls directly")
def test_a_flood_of_blank_lines_never_reaches_the_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Blank and whitespace lines are dropped before decoding: a peer sending
    a megabyte of newlines (before authenticating, say) made the decoder
    build and drop a parse error per line, about 100 times the cost of a
    request.
    """
    import jsonservice.connection as connection_module

    decoded: list[bytes] = []
    real_loads = connection_module.loads

    def counting_loads(data: bytes, *args: Any) -> Any:
        decoded.append(data)
        return real_loads(data, *args)

    monkeypatch.setattr(connection_module, "loads", counting_loads)
    core, host = make({"echo": echo}, message=lambda p, i, o: p[0])
    core.receive_data(b"\n" * 5000 + b" \n" * 5000 + b"\r\n" * 5000 + b" \t \r" * 5000 + b'"a"\n')
    core.receive_data(req("echo", [1], 1))
    assert host.lines == ["a", result(1, [1])]
    assert decoded[0] == b'"a"'
    assert all(line.strip() for line in decoded)  # no blank line got there


def test_unterminated_complete_value_is_answered_and_its_newline_is_not() -> None:
    core, host = make({"echo": echo}, message=lambda p, i, o: p[0])
    core.receive_data(req("echo", [1], 1).rstrip(b"\n"))
    assert host.lines == [result(1, [1])]
    core.receive_data(b"\n")
    core.receive_data(b'"str"')
    core.receive_data(b'  {"o":1}')
    assert host.lines == [result(1, [1]), "str", {"o": 1}]


def test_unterminated_incomplete_value_waits_for_the_rest() -> None:
    core, host = make({"echo": echo})
    whole = req("echo", ["a}b]c"], 1).rstrip(b"\n")
    for k in range(len(whole) - 1):
        core.receive_data(whole[k : k + 1])
        assert host.writes == []
    core.receive_data(whole[-1:])
    assert host.lines == [result(1, ["a}b]c"])]


def test_unterminated_bare_number_waits_for_the_line_end() -> None:
    core, host = make(message=lambda p, i, o: p[0])
    core.receive_data(b"12")
    core.receive_data(b"34")
    assert host.writes == []
    core.receive_data(b"\n")
    assert host.lines == [1234]


def test_unterminated_value_with_more_after_it_waits_for_the_line_end() -> None:
    # Pinned: [{"a":1}]] cannot become valid, but the scanner only marks it
    # dead and waits; the whole line is one -32700 at its end.
    core, host = make(message=lambda p, i, o: p[0])
    core.receive_data(b'[{"a":1}]]')
    assert host.writes == []
    core.receive_data(b'"rest of the line"\n"next"\n')
    bad, nxt = host.lines
    assert code_of(bad) == -32700
    assert nxt == "next"


def test_unterminated_balanced_but_invalid_value_is_answered_at_once() -> None:
    # Pinned: {"a":1] balances (the scanner does not tell braces from brackets),
    # the strict decoder refuses it: -32700 now, and the rest of its line dropped.
    core, host = make(message=lambda p, i, o: p[0])
    core.receive_data(b'{"a":1]')
    [bad] = host.lines
    assert code_of(bad) == -32700
    core.receive_data(b'"dropped: same line"\n"next"\n')
    assert host.lines[1:] == ["next"]


def test_line_over_the_limit_is_32002_and_the_stream_resyncs() -> None:
    core, host = make({"echo": echo}, max_line_length=100)
    core.receive_data(req("echo", ["x" * 200], 1) + req("echo", [2], 2))
    too_long, ok = host.lines
    assert code_of(too_long) == -32002
    assert too_long["error"]["data"] == {"max_line_length": 100}
    assert too_long["id"] is None
    assert ok == result(2, [2])
    assert host.breaches == ["max_line_length"]


def test_long_line_arriving_in_pieces_is_32002_once_then_resyncs() -> None:
    core, host = make({"echo": echo}, max_line_length=100)
    core.receive_data(b'{"jsonrpc":"2.0","method":"echo","params":["')
    for _ in range(10):
        core.receive_data(b"y" * 50)
    assert core.held_bytes <= 100
    core.receive_data(b'"],"id":1}\n' + req("echo", [2], 2))
    too_long, ok = host.lines
    assert code_of(too_long) == -32002
    assert ok == result(2, [2])


def test_parse_errors_are_answered_in_order_and_the_stream_goes_on() -> None:
    core, host = make({"echo": echo}, message=lambda p, i, o: p[0])
    core.receive_data(b'{bad\nNaN\n"\xff"\n[1,,2]\n"ok"\n')
    replies = host.lines
    assert [code_of(r) for r in replies[:4]] == [-32700] * 4
    assert replies[4] == "ok"


def test_parse_error_queued_behind_a_pending_plain_message_keeps_its_place() -> None:
    laters = Laters()
    core, host = make(message=laters.message)
    core.receive_data(b'{"later":"a"}\n{bad\n"b"\n')
    laters["a"].succeed("A")
    a, bad, b = host.lines
    assert (a, b) == ("A", "b")
    assert code_of(bad) == -32700


# -- re-registration, observe -------------------------------------------------------------------


def test_methods_added_replaced_and_removed_after_the_core_was_built() -> None:
    service = JSONService()
    core, host = make(service=service)
    core.receive_data(req("m", [], 1) + b'"plain"\n')
    missing, no_handler = host.take()
    assert code_of(missing) == -32601
    assert code_of(no_handler) == -32600

    service.add_method("m", lambda: "first")
    service.message(lambda message: {"echo": message})
    core.receive_data(req("m", [], 2) + b'"plain"\n')
    assert host.take() == [result(2, "first"), {"echo": "plain"}]

    service.add_method("m", lambda: "second")
    core.receive_data(req("m", [], 3))
    assert host.take() == [result(3, "second")]

    service.remove_method("m")
    core.receive_data(req("m", [], 4))
    [gone] = host.take()
    assert code_of(gone) == -32601


def test_observe_labels_only_registered_methods() -> None:
    laters = Laters()
    seen: list[tuple[str, str]] = []
    core, _host = make(
        {"ok": lambda p, i, o: 1, "later": laters.responder, "boom": raise_nonjson_data},
        message=lambda p, i, o: p[0],
    )
    core.observe = lambda method, outcome, seconds: seen.append((method, outcome))
    core.receive_data(
        req("ok", [], 1)
        + req("junk-" + "x" * 1000, [], 2)
        + req("junk2")
        + b'"plain"\n'
        + req("later", [], 3)
        + batch(req("ok", [], 4), req("random-name", [], 5))
        + req(CANCEL_METHOD, {"id": 99})
    )
    laters[3].succeed(1)
    assert seen == [
        ("ok", "ok"),
        ("<unknown>", "method_not_found"),
        ("<unknown>", "method_not_found"),
        ("<message>", "ok"),
        ("ok", "ok"),
        ("<unknown>", "method_not_found"),
        (CANCEL_METHOD, "ok"),
        ("later", "ok"),
    ]
    assert all(len(m) < 40 for m, _ in seen)


def test_observe_unauthorized_junk_methods_are_unknown() -> None:
    a = Authed()
    seen: list[tuple[str, str]] = []
    a.core.observe = lambda method, outcome, seconds: seen.append((method, outcome))
    a.core.receive_data(req("junk" * 100, [], 1) + req("rpc.ping", [], 2))
    assert seen == [("<unknown>", "unauthorized"), ("rpc.ping", "ok")]


def test_quote_keeps_short_values_and_cuts_long_ones() -> None:
    assert quote("abc") == "'abc'"
    cut = quote("x" * 1_000_000)
    assert cut.startswith("'xxx")
    assert "(1000002 chars)" in cut
    assert len(cut) < 100


def test_quote_respects_its_limit() -> None:
    assert len(quote("x" * 1_000_000)) <= 80
    assert len(quote("x" * 1_000_000, 200)) <= 200


# -- the flush ---------------------------------------------------------------------------------


def test_replies_of_one_read_go_out_in_one_write() -> None:
    core, host = make({"echo": echo}, message=lambda p, i, o: p[0])
    core.receive_data(b"".join(req("echo", [k], k) for k in range(50)) + b'"p"\n{bad\n')
    assert len(host.writes) == 1
    assert len(host.lines) == 52


def test_replies_over_64k_in_one_read_are_flushed_early_in_order() -> None:
    core, host = make({"echo": echo})
    payload = "p" * 1000
    core.receive_data(b"".join(req("echo", [payload], k) for k in range(200)))
    assert len(host.writes) >= 3
    reply_size = len(json.dumps(result(0, [payload]), separators=(",", ":"))) + 1
    assert all(len(w) < 64 * 1024 + reply_size for w in host.writes)
    assert [r["id"] for r in host.lines] == list(range(200))


def test_a_reply_written_outside_a_read_goes_out_at_once() -> None:
    laters = Laters()
    core, host = make({"later": laters.responder})
    core.receive_data(req("later", [], 1))
    laters[1].succeed("x")
    assert host.writes == [b'{"jsonrpc":"2.0","result":"x","id":1}\n']
    core.write(b'{"jsonrpc":"2.0","method":"n"}\n')
    assert len(host.writes) == 2


def test_write_during_a_handler_keeps_order_with_replies() -> None:
    core: Connection

    def notify_then_answer(params: Any, id_: Any, owner: Any) -> str:
        core.write(b'{"jsonrpc":"2.0","method":"note"}\n')
        return "answer"

    core, host = make({"m": notify_then_answer})
    core.receive_data(req("m", [], 1) + req("m", [], 2))
    assert len(host.writes) == 1
    assert host.lines == [
        {"jsonrpc": "2.0", "method": "note"},
        result(1, "answer"),
        {"jsonrpc": "2.0", "method": "note"},
        result(2, "answer"),
    ]


def test_traffic_is_counted_and_whole_messages_are_activity() -> None:
    """
    The core counts bytes both ways and stamps C{active_at} (the host's idle
    timeout reads it) for each read that completes a line and each write; a
    read that only adds to an unfinished line or brings blank lines does not
    count as activity (a slowloris peer stays idle).
    """
    now = [0.0]
    core, host = make({"echo": echo})
    core.stamp = lambda: now[0]
    reads = [req("echo", [1], 1), b'{"jsonrpc":"2.0","method"', b"\n", b"\n \n", b'["tric']
    message = b'{"jsonrpc":"2.0","method":"echo","params":[2],"id":2}'
    now[0] = 1.0
    core.receive_data(reads[0])
    assert core.active_at == 1.0
    assert core.bytes_out == len(host.output) > 0
    now[0] = 2.0
    core.receive_data(reads[1])  # unfinished: not activity
    assert core.active_at == 1.0
    core.receive_data(reads[2])  # ends it: answered -32700, and a reply out is activity
    assert core.active_at == 2.0
    now[0] = 3.0
    core.receive_data(reads[3])  # blank lines
    core.receive_data(reads[4])  # trickled
    assert core.active_at == 2.0
    core.receive_message(message)
    assert core.active_at == 3.0
    now[0] = 4.0
    core.write(b'{"jsonrpc":"2.0","method":"note"}\n')
    assert core.active_at == 4.0
    assert core.bytes_in == sum(map(len, reads)) + len(message)
    assert core.bytes_out == len(host.output)
    # A notification (no reply) whose newline comes in a read of its own:
    # the read is all whitespace, the line it ends is a message.
    now[0] = 4.5
    core.receive_data(b'"]\n')  # ends the trickled line (answered): start clean
    now[0] = 4.6
    core.receive_data(b'{"jsonrpc":"2.0","method":"echo","params":[0]}')
    core.receive_data(b"\n")
    assert core.active_at == 4.6
    # Blank messages from a message-framed transport (WebSocket) are not.
    now[0] = 4.7
    for blank in (b"", b" ", b"\n\t"):
        core.receive_message(blank)
    assert core.active_at == 4.6
    core.stamp = None  # no idle timeout: nothing stamps
    now[0] = 5.0
    core.write(b'{"jsonrpc":"2.0","method":"note"}\n')
    assert core.active_at == 4.6
    assert core.bytes_out == len(host.output)


class Caller(FakeWaiter):
    """A waiter whose response makes this side call again (a client keeping calls outstanding)."""

    def __init__(self, core: Connection, id_: int) -> None:
        super().__init__()
        self.core, self.id = core, id_

    def resolve(self, value: Any) -> None:
        super().resolve(value)
        next_id = self.id + 1000
        self.core.calls[next_id] = Caller(self.core, next_id)
        self.core.write(b'{"jsonrpc":"2.0","method":"m","id":%d}\n' % next_id)


def test_calls_made_while_responses_are_handled_go_out_every_32() -> None:
    """
    A client answering a read of responses with new calls sends them in
    groups as it goes (written and flushed), so its server starts on them
    at once; the rest goes out at the read's end, all in order.
    """
    core, host = make()
    count = CALLS_PER_FLUSH * 3 + 5
    for id_ in range(count):
        core.calls[id_] = Caller(core, id_)
    core.receive_data(b"".join(b'{"jsonrpc":"2.0","result":1,"id":%d}\n' % i for i in range(count)))
    kinds = [kind for kind, _ in host.events]
    assert kinds == ["write", "flush"] * 3 + ["write"]
    assert [len(data.splitlines()) for kind, data in host.events if kind == "write"] == [32, 32, 32, 5]
    assert [line["id"] for line in host.lines] == [i + 1000 for i in range(count)]


def test_replies_are_not_flushed_early() -> None:
    """Replies of one read go out once, at its end: a server gains nothing by sending them early."""
    core, host = make({"echo": echo})
    core.receive_data(b"".join(req("echo", [k], k) for k in range(CALLS_PER_FLUSH * 4)))
    assert [kind for kind, _ in host.events] == ["write"]


# -- the property: chunking does not change the output -----------------------------------------

_SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.text(alphabet='ab\u00e9\\"}]{[ \n', max_size=6),
    st.booleans(),
    st.none(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=6,
)
_IDS = st.one_of(st.integers(0, 50), st.text(alphabet="xyz", max_size=3), st.none())
_METHODS = st.sampled_from(["echo", "add", "fail", "none", "nosuch"])


@st.composite
def _request_line(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": draw(_METHODS)}
    params = draw(
        st.one_of(st.none(), st.lists(_VALUES, max_size=3), st.dictionaries(st.sampled_from("ab"), _VALUES))
    )
    if params is not None:
        obj["params"] = params
    if draw(st.booleans()):
        obj["id"] = draw(_IDS)
    return obj


@st.composite
def _near_request_line(draw: st.DrawFn) -> dict[str, Any]:
    """A request with one member changed or removed: invalid, or a response, or still valid."""
    obj = draw(_request_line())
    key = draw(st.sampled_from(["jsonrpc", "method", "params", "id", "result", "error"]))
    if draw(st.booleans()):
        obj.pop(key, None)
    else:
        obj[key] = draw(st.sampled_from(["2.0", "1.0", 2.0, True, None, 1, 1.5, [], {}, [1], "echo"]))
    return obj


_PLAIN = st.one_of(
    st.dictionaries(st.sampled_from(["k", "v"]), _VALUES, max_size=2),
    st.text(alphabet='pq "\\', max_size=5),
    st.integers(-100, 100),
)
_LINE_VALUES = st.one_of(
    _request_line(),
    _near_request_line(),
    _PLAIN,
    st.lists(st.one_of(_request_line(), _near_request_line(), _PLAIN), min_size=0, max_size=4),
)


def _sync_service() -> FakeTable:
    def add(params: Any, id_: Any, owner: Any) -> Any:
        if params.__class__ is not list or not all(type(x) is int for x in params):
            raise InvalidParams(data="ints only")
        return sum(params)

    def fail(params: Any, id_: Any, owner: Any) -> Any:
        raise ValueError("fail")

    def message(params: Any, id_: Any, owner: Any) -> Any:
        value = params[0]
        return None if value == 0 else {"got": value}

    return FakeTable({"echo": echo, "add": add, "fail": fail, "none": lambda p, i, o: None}, message)


def _run(data: bytes, cuts: list[int], general: bool = False) -> bytes:
    """Feed C{data} cut at C{cuts}; with C{general}, every value goes through handle_value."""
    host = FakeHost()
    core = Connection(_sync_service(), host, limits=Limits(max_line_length=4096))
    host.core = core
    if general:
        core.value_handler = lambda value: core.handle_value(value)
        assert not core._own_values
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        core.receive_data(data[start:point])
        start = point
    core.receive_eof()
    return host.output


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_LINE_VALUES, min_size=1, max_size=8),
    endings=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=8, max_size=8),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
    extra=st.sampled_from([b"", b"\n\n", b"{bad}\n", b"  \n"]),
)
def test_chunking_never_changes_the_output(
    lines: list[Any], endings: list[str], cuts: list[int], extra: bytes
) -> None:
    data = b"".join(
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + ending.encode()
        for value, ending in zip(lines, endings[: len(lines)], strict=True)
    )
    data += extra
    whole = _run(data, [])
    assert _run(data, cuts) == whole
    # Byte by byte too, for the first examples' sizes.
    if len(data) < 200:
        assert _run(data, list(range(len(data)))) == whole


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_LINE_VALUES, min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
)
def test_inlined_request_step_gives_the_same_bytes_as_handle_value(lines: list[Any], cuts: list[int]) -> None:
    """
    handle_line does handle_value's first step itself (requests are most
    lines): for random input and random read splits, the bytes out are the
    same as through handle_value.
    """
    data = b"".join(json.dumps(value, separators=(",", ":")).encode() + b"\n" for value in lines)
    assert _run(data, cuts) == _run(data, cuts, general=True)


_RESPONSES = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0"]),
        "result": _VALUES,
        "error": st.fixed_dictionaries({"code": st.integers(-5, 5), "message": st.just("m")}),
        "id": st.one_of(
            st.integers(0, 4), st.sampled_from(["1", "2"]), st.none(), st.booleans(), st.just(1.0)
        ),
        "method": st.just("echo"),
    },
)


def _responses_through(responses: list[dict[str, Any]], general: bool) -> tuple[list[Any], list[Any]]:
    host = FakeHost()
    core = Connection(_sync_service(), host, limits=Limits())
    host.core = core
    if general:
        core.value_handler = lambda value: core.handle_value(value)
    waiters = {id_: FakeWaiter() for id_ in (1, 2, 3, "1")}
    core.calls.update(waiters)
    core.receive_data(b"".join(json.dumps(r).encode() + b"\n" for r in responses))
    outcomes = [(id_, [(kind, repr(value)) for kind, value in w.outcomes]) for id_, w in waiters.items()]
    return outcomes, [host.output, [repr(entry) for entry in host.logs]]


@settings(max_examples=200, deadline=None)
@given(responses=st.lists(_RESPONSES, min_size=1, max_size=6))
def test_inlined_success_step_matches_classify(responses: list[dict[str, Any]]) -> None:
    """handle_line's success-response step resolves and logs exactly as the general path."""
    assert _responses_through(responses, False) == _responses_through(responses, True)


# -- lines held back keep their own read's exact-number flag --------------------


@pytest.mark.parametrize(
    ("line", "check"),
    [
        (b'{"jsonrpc":"2.0","method":"echo","params":[1e-400],"id":"A"}\n', "underflows to 0.0"),
        (b'[{"jsonrpc":"2.0","method":"echo","params":[12345678901234567890123],"id":"A"}]\n', None),
    ],
    ids=["underflow", "big-int-in-batch"],
)
def test_a_held_line_is_decoded_with_its_own_reads_exact_flag(line: bytes, check: str | None) -> None:
    """
    Held lines wait while later reads come in (this side awaits a response
    a handler needs): a later, ordinary read must not switch a waiting
    line's numbers to the fast decoder (1e-400 became 0.0, a big integer a
    float).
    """
    core, host = make({"echo": lambda params, id_, owner: params[0]})
    core.hold("paused")
    core.receive_data(line)
    core.receive_data(req("echo", [1], "B"))
    core.release("paused")
    first = host.lines[0]
    if check is None:
        assert first == [result("A", 12345678901234567890123)]
    else:
        assert code_of(first) == -32700
        assert check in first["error"]["data"]
    assert host.lines[1] == result("B", 1)


def test_a_peers_unexpected_messages_are_logged_a_bounded_number_of_times() -> None:
    """
    Responses to unknown ids, error reports and cancellations of requests
    not running cost a log line each: 20 per connection, then one line
    saying the rest are not logged (one peer wrote 26 MB of log in 10 s).
    """
    core, host = make({})
    flood = b"".join(
        [b'{"jsonrpc":"2.0","result":1,"id":%d}\n' % k for k in range(300)]
        + [b'{"jsonrpc":"2.0","error":{"code":1,"message":"x"},"id":null}\n'] * 300
        + [req("$/cancelRequest", {"id": k}) for k in range(300)]
    )
    core.receive_data(flood)
    assert len(host.logs) + len(host.warns) == LOGGED_PER_CONNECTION
    assert "not logged" in host.logs[-1][0]
    assert host.lines == []


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (b"12345678901234567890123", 12345678901234567890123),
        (b"-98765432109876543210", -98765432109876543210),
        (b"0.123456789012345678901234567", 0.123456789012345678901234567),
        (b"0." + b"0" * 400 + b"1", "underflows to 0.0"),
        (b"1" + b"0" * 330 + b".5e-700", "underflows to 0.0"),
        (b"1" + b"0" * 4400, "digit"),
    ],
    ids=[
        "big-int",
        "negative-big-int",
        "long-fraction",
        "zeros-underflow",
        "long-mantissa-underflow",
        "past-limit",
    ],
)
def test_numbers_on_the_hot_path_are_exact_or_refused(number: bytes, expected: Any) -> None:
    """
    A request (the msgspec shape) and a response to this side's call carry
    big integers exactly and long fractions as the stdlib reads them; a
    literal below the float range is refused, exponent or not; an integer
    past the digit limit gets the general path's error.
    """
    core, host = make({"echo": lambda params, id_, owner: params[0]})
    core.receive_data(b'{"jsonrpc":"2.0","method":"echo","params":[%s],"id":1}\n' % number)
    waiter = FakeWaiter()
    core.calls[7] = waiter
    core.receive_data(b'{"jsonrpc":"2.0","result":%s,"id":7}\n' % number)
    if isinstance(expected, str):
        assert code_of(host.lines[0]) == -32700
        assert expected in host.lines[0]["error"]["data"]
        assert code_of(host.lines[1]) == -32700  # the response is not JSON either
        assert waiter.outcomes == []
    else:
        value = host.lines[0]["result"]
        assert value == expected
        assert type(value) is type(expected)
        assert waiter.outcomes == [("resolve", expected)]
        assert type(waiter.outcomes[0][1]) is type(expected)


def test_a_line_handled_outside_a_read_is_checked_for_exact_numbers_itself() -> None:
    """A direct lineReceived call (no framer flag for it) after an ordinary read."""
    core, host = make({"echo": lambda params, id_, owner: params[0]})
    core.receive_data(req("echo", [1], 1))
    core.handle_line(b'{"jsonrpc":"2.0","method":"echo","params":[1e-400],"id":2}')
    assert code_of(host.lines[1]) == -32700
