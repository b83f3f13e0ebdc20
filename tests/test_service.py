"""
L{JSONService}: registration, signature binding (-32602), the kinds of
handler results, error handling (-32603 with a logged error id, L{RPCError}
passthrough) and L{CallContext}, driven through a real L{JSONProtocol} on a
L{StringTransport} with a L{Clock}.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from jsonservice import (
    CallContext,
    InternalError,
    InvalidParams,
    JSONService,
    MethodNotFound,
    RPCError,
)
from jsonservice.jsonrpc import NO_ID

try:
    from tests.memory_helpers import CapturedLog, connected_pair, rpc, server_on_string_transport
except ImportError:  # pragma: no cover - tests/ on sys.path (rootdir import mode)
    from memory_helpers import CapturedLog, connected_pair, rpc, server_on_string_transport


def ask(service: JSONService, method: str, params: Any = None) -> dict[str, Any]:
    """Send one request on a fresh connection and return its single reply."""
    proto, transport, _ = server_on_string_transport(service)
    proto.dataReceived(rpc(method, params))
    [reply] = transport.take()
    return reply  # type: ignore[no-any-return]


# -- registration --------------------------------------------------------------


class TestRegistration:
    def test_bare_decorator_uses_function_name_and_returns_it(self) -> None:
        service = JSONService()

        def subtract(a: int, b: int) -> int:
            return a - b

        assert service.method(subtract) is subtract
        assert "subtract" in service
        assert "subtract" in list(service)
        assert ask(service, "subtract", [42, 23])["result"] == 19

    def test_explicit_name(self) -> None:
        service = JSONService()

        @service.method("math.sum")
        def total(*numbers: int) -> int:
            return sum(numbers)

        assert "math.sum" in service
        assert "total" not in service
        assert ask(service, "math.sum", [1, 2, 3])["result"] == 6
        assert ask(service, "total", [1])["error"]["code"] == -32601

    def test_empty_call_form_uses_function_name(self) -> None:
        service = JSONService()

        @service.method()
        def ping() -> str:
            return "pong"

        assert ask(service, "ping")["result"] == "pong"

    def test_context_form(self) -> None:
        service = JSONService()
        seen: list[CallContext] = []

        @service.method(context=True)
        def whoami(ctx: CallContext, tag: str) -> str:
            seen.append(ctx)
            return f"{tag}:{ctx.method}:{ctx.request_id}"

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("whoami", ["t"], id="abc"))
        assert transport.take()[0]["result"] == "t:whoami:abc"
        assert isinstance(seen[0], CallContext)
        assert seen[0].protocol is proto

    def test_named_context_form(self) -> None:
        service = JSONService()

        @service.method("ctx.name", context=True)
        def handler(ctx: CallContext) -> str | None:
            return ctx.method

        assert ask(service, "ctx.name")["result"] == "ctx.name"

    def test_context_requires_a_positional_first_parameter(self) -> None:
        service = JSONService()

        def no_params() -> None:
            pass

        def keyword_only(*, ctx: Any) -> None:
            pass

        with pytest.raises(TypeError):
            service.method(context=True)(no_params)
        with pytest.raises(TypeError):
            service.method(context=True)(keyword_only)

    @pytest.mark.parametrize("name", ["rpc.custom", "rpc.", "$/cancelRequest", "$/anything"])
    def test_reserved_names_refused(self, name: str) -> None:
        service = JSONService()
        with pytest.raises(ValueError, match="reserved"):
            service.method(name)(lambda: None)
        with pytest.raises(ValueError, match="reserved"):
            service.add_method(name, lambda: None)
        assert name not in service

    def test_reserved_name_cannot_replace_a_builtin(self) -> None:
        service = JSONService()
        before = dict(service.methods)

        def discover() -> str:
            return "mine"

        with pytest.raises(ValueError, match="reserved"):
            service.add_method("rpc.discover", discover)
        assert dict(service.methods) == before

    def test_empty_name_refused(self) -> None:
        with pytest.raises(ValueError, match="non-empty"):
            JSONService().add_method("", lambda: None)

    def test_reregistering_replaces(self) -> None:
        service = JSONService()
        service.add_method("f", lambda: 1)
        service.add_method("f", lambda: 2)
        assert ask(service, "f")["result"] == 2

    def test_rpc_prefixed_call_is_method_not_found(self) -> None:
        service = JSONService()
        service.add_method("custom", lambda: 1)
        assert ask(service, "rpc.custom")["error"]["code"] == -32601

    def test_message_decorator_plain_form(self) -> None:
        service = JSONService()

        def on_message(message: Any) -> Any:
            return {"echo": message}

        assert service.message(on_message) is on_message
        assert service.message_handler is not None
        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(b'{"name": "John"}\n')
        assert transport.take() == [{"echo": {"name": "John"}}]

    def test_message_decorator_with_context(self) -> None:
        service = JSONService()

        @service.message(context=True)
        def on_message(ctx: CallContext, message: Any) -> Any:
            ctx.state["count"] = ctx.state.get("count", 0) + 1
            return {"n": ctx.state["count"], "method": ctx.method, "got": message}

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(b'"a"\n"b"\n')
        assert transport.take() == [
            {"n": 1, "method": None, "got": "a"},
            {"n": 2, "method": None, "got": "b"},
        ]

    def test_message_returning_none_sends_nothing(self) -> None:
        service = JSONService()
        got: list[Any] = []
        service.message(got.append)
        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(b'{"x": 1}\n42\n')
        assert got == [{"x": 1}, 42]
        assert transport.value() == b""

    def test_methods_mapping(self) -> None:
        service = JSONService()
        service.add_method("a", lambda: 1)
        assert "a" in set(service.methods)
        assert "b" not in set(service.methods)
        assert service.methods["a"].name == "a"


# -- signature binding ---------------------------------------------------------


def _service_with(func: Any, name: str = "f") -> tuple[JSONService, list[Any]]:
    """A service whose method C{name} is C{func}, recording every call."""
    service = JSONService()
    calls: list[Any] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return func(*args, **kwargs)

    service.add_method(name, functools.wraps(func)(recording))
    return service, calls


def _invalid_params(func: Any, params: Any) -> str:
    """Call C{func} as method C{f} with C{params}; assert -32602 and no call; return data."""
    service, calls = _service_with(func)
    reply = ask(service, "f", params)
    assert reply["id"] == 1
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["message"] == "Invalid params"
    assert calls == [], "the handler must not run when params do not bind"
    data = reply["error"]["data"]
    assert isinstance(data, str)
    assert data.startswith("f:"), data  # names the method
    return data


def _result(func: Any, params: Any) -> Any:
    service, _ = _service_with(func)
    reply = ask(service, "f", params)
    assert "error" not in reply, reply
    return reply["result"]


def two(a: Any, b: Any) -> Any:
    return [a, b]


def with_default(a: Any, b: Any = "B") -> Any:
    return [a, b]


def kw_only(a: Any, *, k: Any) -> Any:
    return [a, k]


def kw_only_default(a: Any, *, k: Any = "K") -> Any:
    return [a, k]


def var_args(*args: Any) -> Any:
    return list(args)


def var_kwargs(**kwargs: Any) -> Any:
    return kwargs


def pos_only(a: Any, /, b: Any) -> Any:
    return [a, b]


def pos_only_default(a: Any = "A", /) -> Any:
    return a


def no_params() -> Any:
    return "none"


class TestSignatureBinding:
    def test_missing_positional(self) -> None:
        assert "'b'" in _invalid_params(two, [1])

    def test_missing_named(self) -> None:
        assert "'b'" in _invalid_params(two, {"a": 1})

    def test_missing_when_no_params_given(self) -> None:
        assert "'a'" in _invalid_params(two, None)

    def test_unexpected_keyword(self) -> None:
        data = _invalid_params(two, {"a": 1, "b": 2, "c": 3})
        assert "'c'" in data
        assert "unexpected keyword" in data

    def test_too_many_positional(self) -> None:
        assert "too many positional" in _invalid_params(two, [1, 2, 3])

    def test_params_to_a_method_taking_none(self) -> None:
        assert "too many positional" in _invalid_params(no_params, [1])
        assert "'x'" in _invalid_params(no_params, {"x": 1})

    def test_exact_positional_and_named(self) -> None:
        assert _result(two, [1, 2]) == [1, 2]
        assert _result(two, {"b": 2, "a": 1}) == [1, 2]
        assert _result(no_params, None) == "none"
        assert _result(no_params, []) == "none"
        assert _result(no_params, {}) == "none"

    def test_keyword_only_missing(self) -> None:
        assert "'k'" in _invalid_params(kw_only, [1])
        assert "'k'" in _invalid_params(kw_only, {"a": 1})

    def test_keyword_only_given_by_name(self) -> None:
        assert _result(kw_only, {"a": 1, "k": 2}) == [1, 2]

    def test_keyword_only_cannot_be_positional(self) -> None:
        assert "too many positional" in _invalid_params(kw_only_default, [1, 2])

    def test_keyword_only_default(self) -> None:
        assert _result(kw_only_default, [1]) == [1, "K"]
        assert _result(kw_only_default, {"a": 1}) == [1, "K"]

    def test_defaults(self) -> None:
        assert _result(with_default, [1]) == [1, "B"]
        assert _result(with_default, [1, 2]) == [1, 2]
        assert _result(with_default, {"a": 1}) == [1, "B"]
        assert _result(with_default, {"b": 2, "a": 1}) == [1, 2]
        assert "'a'" in _invalid_params(with_default, {"b": 2})
        assert "too many positional" in _invalid_params(with_default, [1, 2, 3])

    def test_var_positional(self) -> None:
        assert _result(var_args, []) == []
        assert _result(var_args, list(range(50))) == list(range(50))
        assert "'x'" in _invalid_params(var_args, {"x": 1})

    def test_var_keyword(self) -> None:
        assert _result(var_kwargs, {"anything": 1, "else": [2]}) == {"anything": 1, "else": [2]}
        assert _result(var_kwargs, None) == {}
        assert "too many positional" in _invalid_params(var_kwargs, [1])

    def test_positional_only_by_name_refused(self) -> None:
        data = _invalid_params(pos_only, {"a": 1, "b": 2})
        assert "'a'" in data
        assert "positional" in data

    def test_positional_only_positionally(self) -> None:
        assert _result(pos_only, [1, 2]) == [1, 2]

    def test_positional_only_with_default(self) -> None:
        assert _result(pos_only_default, {}) == "A"
        assert _result(pos_only_default, ["x"]) == "x"
        assert "'a'" in _invalid_params(pos_only_default, {"a": 1})

    def test_context_parameter_is_not_a_param(self) -> None:
        service = JSONService()

        @service.method(context=True)
        def f(ctx: CallContext, a: Any) -> Any:
            return a

        assert ask(service, "f", [5])["result"] == 5
        assert ask(service, "f", {"a": 6})["result"] == 6
        missing = ask(service, "f", [])
        assert missing["error"]["code"] == -32602
        assert "'a'" in missing["error"]["data"]
        too_many = ask(service, "f", [1, 2])
        assert too_many["error"]["code"] == -32602
        # The context cannot be passed by name from the wire either.
        assert ask(service, "f", {"a": 1, "ctx": 2})["error"]["code"] == -32602

    def test_dispatch_raises_invalid_params_before_calling(self) -> None:
        service, calls = _service_with(two)
        with pytest.raises(InvalidParams) as info:
            service.dispatch("f", [1], None, 1)
        assert "'b'" in info.value.data
        assert calls == []

    def test_dispatch_unknown_method(self) -> None:
        with pytest.raises(MethodNotFound) as info:
            JSONService().dispatch("nope", None)
        assert "nope" in info.value.data


# -- handler results -------------------------------------------------------------


class TestHandlerResults:
    def test_sync_value(self) -> None:
        service = JSONService()
        service.add_method("v", lambda: {"a": [1, "two", None, True, 1.5]})
        assert ask(service, "v") == {"jsonrpc": "2.0", "result": {"a": [1, "two", None, True, 1.5]}, "id": 1}

    def test_none_result_is_null(self) -> None:
        service = JSONService()
        service.add_method("n", lambda: None)
        reply = ask(service, "n")
        assert "result" in reply
        assert reply["result"] is None

    def test_already_fired_deferred(self) -> None:
        service = JSONService()
        service.add_method("d", lambda: succeed(7))
        assert ask(service, "d")["result"] == 7

    def test_deferred_fired_later(self) -> None:
        service = JSONService()
        pending: list[Deferred[Any]] = []

        @service.method
        def later() -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("later", id=5))
        assert transport.value() == b""
        assert proto.in_flight == 1
        pending[0].callback("done")
        assert transport.take() == [{"jsonrpc": "2.0", "result": "done", "id": 5}]
        assert proto.in_flight == 0

    def test_async_def(self) -> None:
        service = JSONService()
        gate: Deferred[int] = Deferred()

        @service.method
        async def slow_add(a: int, b: int) -> int:
            extra = await gate
            return a + b + extra

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("slow_add", [1, 2]))
        assert transport.value() == b""
        gate.callback(100)
        assert transport.take() == [{"jsonrpc": "2.0", "result": 103, "id": 1}]

    def test_async_def_that_does_not_wait(self) -> None:
        service = JSONService()

        @service.method
        async def quick() -> str:
            return "fast"

        assert ask(service, "quick")["result"] == "fast"

    def test_dispatch_wraps_coroutine_in_deferred(self) -> None:
        service = JSONService()

        @service.method
        async def quick() -> str:
            return "fast"

        d = service.dispatch("quick", None)
        assert isinstance(d, Deferred)
        results: list[Any] = []
        d.addBoth(results.append)
        assert results == ["fast"]


# -- errors ---------------------------------------------------------------------


class _Secret(Exception):
    pass


SECRET = "secret-detail-3141"


def _error_ids_logged(log: CapturedLog) -> list[str]:
    return [event["error_id"] for event in log.with_key("error_id") if "log_failure" in event]


class TestHandlerExceptions:
    @pytest.mark.parametrize("kind", ["sync", "deferred", "async"])
    def test_exception_becomes_internal_error_with_logged_id(self, kind: str) -> None:
        service = JSONService()

        if kind == "sync":

            def boom() -> Any:
                raise _Secret(SECRET)

        elif kind == "deferred":

            def boom() -> Any:
                return fail(_Secret(SECRET))

        else:

            async def boom() -> Any:
                raise _Secret(SECRET)

        service.add_method("boom", boom)
        proto, transport, _ = server_on_string_transport(service)
        with CapturedLog() as log:
            proto.dataReceived(rpc("boom", id=9))
        wire = transport.value()
        [reply] = transport.take()
        assert reply["id"] == 9
        assert reply["error"]["code"] == -32603
        assert reply["error"]["message"] == "Internal error"
        error_id = reply["error"]["data"]["error_id"]
        assert isinstance(error_id, str)
        assert error_id
        # The traceback and the exception's text stay off the wire...
        assert SECRET.encode() not in wire
        assert b"Traceback" not in wire
        assert b"_Secret" not in wire
        # ...and go to the log, under the same id.
        failures = [e for e in log.events if "log_failure" in e]
        assert len(failures) == 1
        assert failures[0]["error_id"] == error_id
        assert failures[0]["log_failure"].check(_Secret)
        assert SECRET in str(failures[0]["log_failure"].value)

    def test_each_failure_gets_its_own_id(self) -> None:
        service = JSONService()

        @service.method
        def boom() -> None:
            raise _Secret(SECRET)

        proto, transport, _ = server_on_string_transport(service)
        with CapturedLog() as log:
            proto.dataReceived(rpc("boom", id=1) + rpc("boom", id=2))
        ids = [r["error"]["data"]["error_id"] for r in transport.take()]
        assert len(set(ids)) == 2
        assert sorted(_error_ids_logged(log)) == sorted(ids)

    def test_async_failure_after_waiting(self) -> None:
        service = JSONService()
        gate: Deferred[None] = Deferred()

        @service.method
        async def later() -> None:
            await gate
            raise _Secret(SECRET)

        proto, transport, _ = server_on_string_transport(service)
        with CapturedLog() as log:
            proto.dataReceived(rpc("later"))
            gate.callback(None)
        wire = transport.value()
        [reply] = transport.take()
        assert reply["error"]["code"] == -32603
        assert SECRET.encode() not in wire
        assert _error_ids_logged(log) == [reply["error"]["data"]["error_id"]]

    def test_plain_message_handler_exception(self) -> None:
        service = JSONService()

        @service.message
        def on_message(message: Any) -> Any:
            raise _Secret(SECRET)

        proto, transport, _ = server_on_string_transport(service)
        with CapturedLog() as log:
            proto.dataReceived(b'{"hello": 1}\n')
        wire = transport.value()
        [reply] = transport.take()
        assert reply["id"] is None
        assert reply["error"]["code"] == -32603
        assert SECRET.encode() not in wire
        assert _error_ids_logged(log) == [reply["error"]["data"]["error_id"]]

    def test_unserializable_result_is_internal_error(self) -> None:
        service = JSONService()
        service.add_method("bad", lambda: object())
        proto, transport, _ = server_on_string_transport(service)
        with CapturedLog() as log:
            proto.dataReceived(rpc("bad", id=3) + b'"next"\n')
        replies = transport.take()
        assert replies[0]["id"] == 3
        assert replies[0]["error"]["code"] == -32603
        assert replies[0]["error"]["data"]["error_id"] in _error_ids_logged(log)
        # The connection goes on: the plain message is answered (no handler: -32600).
        assert replies[1]["error"]["code"] == -32600

    def test_notification_exception_is_logged_not_answered(self) -> None:
        service = JSONService()

        @service.method
        def boom() -> None:
            raise _Secret(SECRET)

        proto, transport, _ = server_on_string_transport(service)
        with CapturedLog() as log:
            proto.dataReceived(rpc("boom", id=NO_ID))
        assert transport.value() == b""
        assert len(_error_ids_logged(log)) == 1


class TestRPCErrorPassthrough:
    @pytest.mark.parametrize("kind", ["sync", "deferred", "async"])
    def test_custom_code_message_and_data(self, kind: str) -> None:
        error = RPCError(4242, "Out of stock", {"item": "widget", "left": [0, None]})
        service = JSONService()
        if kind == "sync":

            def order() -> Any:
                raise error

        elif kind == "deferred":

            def order() -> Any:
                return fail(error)

        else:

            async def order() -> Any:
                raise error

        service.add_method("order", order)
        with CapturedLog() as log:
            reply = ask(service, "order")
        assert reply == {
            "jsonrpc": "2.0",
            "error": {"code": 4242, "message": "Out of stock", "data": {"item": "widget", "left": [0, None]}},
            "id": 1,
        }
        assert _error_ids_logged(log) == []

    def test_without_data_omits_data(self) -> None:
        service = JSONService()

        @service.method
        def nope() -> None:
            raise RPCError(-32099, "Custom server error")

        assert ask(service, "nope")["error"] == {"code": -32099, "message": "Custom server error"}

    def test_coded_subclass(self) -> None:
        service = JSONService()

        @service.method
        def check(x: Any) -> None:
            raise InvalidParams(data={"x": "must be positive"})

        assert ask(service, "check", [-1])["error"] == {
            "code": -32602,
            "message": "Invalid params",
            "data": {"x": "must be positive"},
        }

    def test_internal_error_raised_explicitly_passes_through(self) -> None:
        service = JSONService()

        @service.method
        def f() -> None:
            raise InternalError("Database down", data={"retry_after": 5})

        assert ask(service, "f")["error"] == {
            "code": -32603,
            "message": "Database down",
            "data": {"retry_after": 5},
        }


# -- CallContext -------------------------------------------------------------------


class TestCallContext:
    def test_peer(self) -> None:
        service = JSONService()

        @service.method(context=True)
        def peer(ctx: CallContext) -> Any:
            return [ctx.peer.host, ctx.peer.port]  # type: ignore[attr-defined]

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("peer"))
        expected = transport.getPeer()
        assert transport.take()[0]["result"] == [expected.host, expected.port]

    def test_request_id_and_notification(self) -> None:
        service = JSONService()
        seen: list[Any] = []

        @service.method(context=True)
        def record(ctx: CallContext) -> None:
            seen.append(ctx.request_id)

        proto, _, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("record", id="x") + rpc("record", id=None) + rpc("record", id=NO_ID))
        assert seen == ["x", None, NO_ID]

    def test_state_persists_per_connection_and_is_separate_across_connections(self) -> None:
        service = JSONService()

        @service.method(context=True)
        def incr(ctx: CallContext) -> int:
            ctx.state["n"] = ctx.state.get("n", 0) + 1
            return ctx.state["n"]

        one, t1, clock = server_on_string_transport(service)
        two, t2, _ = server_on_string_transport(service, clock)
        one.dataReceived(rpc("incr", id=1))
        one.dataReceived(rpc("incr", id=2) + rpc("incr", id=3))
        two.dataReceived(rpc("incr", id=1))
        assert [r["result"] for r in t1.take()] == [1, 2, 3]
        assert [r["result"] for r in t2.take()] == [1]
        assert one.state == {"n": 3}
        assert two.state == {"n": 1}
        assert one.state is not two.state

    def test_state_shared_between_methods_and_message_handler(self) -> None:
        service = JSONService()

        @service.method(context=True)
        def login(ctx: CallContext, user: str) -> bool:
            ctx.state["user"] = user
            return True

        @service.message(context=True)
        def whoami(ctx: CallContext, message: Any) -> Any:
            return {"user": ctx.state.get("user")}

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(b'"who"\n' + rpc("login", ["ann"]) + b'"who"\n')
        assert transport.take() == [
            {"user": None},
            {"jsonrpc": "2.0", "result": True, "id": 1},
            {"user": "ann"},
        ]

    def test_notify_peer_back(self) -> None:
        service = JSONService()

        @service.method(context=True)
        def subscribe(ctx: CallContext, topic: str) -> str:
            ctx.notify("event", topic, 1)
            ctx.notify("event", topic=topic, seq=2)
            return "ok"

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("subscribe", ["news"], id=7))
        assert transport.take() == [
            {"jsonrpc": "2.0", "method": "event", "params": ["news", 1]},
            {"jsonrpc": "2.0", "method": "event", "params": {"topic": "news", "seq": 2}},
            {"jsonrpc": "2.0", "result": "ok", "id": 7},
        ]

    def test_call_peer_back(self) -> None:
        service = JSONService()

        @service.method(context=True)
        async def double_via_peer(ctx: CallContext, x: int) -> int:
            answer = await ctx.call("client.double", x)
            return int(answer) + 1

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("double_via_peer", [21], id="outer"))
        [outgoing] = transport.take()
        assert outgoing["method"] == "client.double"
        assert outgoing["params"] == [21]
        assert "id" in outgoing
        assert proto.pending == 1
        # The peer answers this side's call; the handler then finishes.
        proto.dataReceived(b'{"jsonrpc":"2.0","result":42,"id":%d}\n' % outgoing["id"])
        assert transport.take() == [{"jsonrpc": "2.0", "result": 43, "id": "outer"}]
        assert proto.pending == 0

    def test_call_peer_back_error_propagates_to_handler(self) -> None:
        service = JSONService()

        @service.method(context=True)
        async def relay(ctx: CallContext) -> Any:
            try:
                await ctx.call("missing")
            except MethodNotFound as exc:
                return {"peer_said": exc.code}
            return None

        proto, transport, _ = server_on_string_transport(service)
        proto.dataReceived(rpc("relay"))
        [outgoing] = transport.take()
        proto.dataReceived(
            b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":%d}\n'
            % outgoing["id"]
        )
        assert transport.take()[0]["result"] == {"peer_said": -32601}

    def test_round_trip_call_back_over_iosim(self) -> None:
        server_service = JSONService()
        client_service = JSONService()
        events: list[Any] = []

        @server_service.method(context=True)
        async def compute(ctx: CallContext, x: int) -> int:
            ctx.notify("progress", 50)
            doubled = await ctx.call("double", x)
            return int(doubled) * 10

        @client_service.method
        def double(x: int) -> int:
            return x * 2

        @client_service.method
        def progress(pct: int) -> None:
            events.append(pct)

        pair = connected_pair(server_service, client_service)
        d = pair.client.call("compute", 4)
        pair.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        assert results == [80]
        assert events == [50]
        assert pair.client.pending == 0
        assert pair.server.pending == 0

    def test_repr_and_slots(self) -> None:
        proto, _, _ = server_on_string_transport(JSONService())
        ctx = CallContext(proto, 3, "m")
        assert "m" in repr(ctx)
        assert ctx.state is proto.state
        with pytest.raises(AttributeError):
            ctx.other = 1  # type: ignore[attr-defined]


def test_rpc_discover_builds_its_document_once_per_set_of_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    rpc.discover's document costs ~0.3 ms to build and a peer may ask for it
    in a loop: it is built once, and again only when the methods, title or
    version change (registration reaches it at once).
    """
    import jsonservice.openrpc

    built: list[int] = []
    describe = jsonservice.openrpc.describe

    def counting(*args: Any) -> Any:
        built.append(1)
        return describe(*args)

    monkeypatch.setattr(jsonservice.openrpc, "describe", counting)
    service = JSONService()
    service.add_method("a", lambda: 1)
    respond = service.responders["rpc.discover"]

    def names() -> list[str]:
        return [method["name"] for method in respond(None, 1, None)["methods"]]

    assert names() == ["a"]
    assert names() == ["a"]
    assert len(built) == 1
    service.add_method("b", lambda: 2)
    assert names() == ["a", "b"]
    service.add_method("b", lambda x: x)  # replaced
    assert names() == ["a", "b"]
    service.remove_method("a")
    assert names() == ["b"]
    service.title = "renamed"
    assert respond(None, 1, None)["info"]["title"] == "renamed"
    assert len(built) == 5
