"""
The command-line client: L{parse_params} and L{parse_args} in process,
then C{python -m jsonservice} as a real subprocess against a server
listening on 127.0.0.1 in this test's reactor (pytest-twisted), checking
output and exit status: 0 success, 1 JSON-RPC error, 2 cannot connect or
no reply in time, 64 usage.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from jsonservice import JSONServerFactory, JSONService, RPCError
from jsonservice.__main__ import DEFAULT_ENDPOINT, UsageError, parse_args, parse_params
from jsonservice.protocol import CANCEL_METHOD, JSONProtocol

ROOT = Path(__file__).resolve().parent.parent

#: The longest a step may take before the test fails instead of hanging.
STEP = 5.0
#: The longest one run of the command line may take.
RUN_LIMIT = 15.0


# -- parse_params --------------------------------------------------------------


def test_no_params_is_none() -> None:
    assert parse_params([]) is None


@pytest.mark.parametrize(
    ("args", "params"),
    [
        (["1"], [1]),
        (["-1", "2.5"], [-1, 2.5]),
        (['"hi"'], ["hi"]),
        (["null"], [None]),
        (["true", "false"], [True, False]),
        (["[1, 2]", '{"a": {"b": []}}'], [[1, 2], {"a": {"b": []}}]),
        (['"a=b"'], ["a=b"]),  # an "=" inside a JSON string stays positional
        (['{"x": "a=b"}'], [{"x": "a=b"}]),
        (['"x=1"', "2"], ["x=1", 2]),
        (['"héllo ☃"'], ["héllo ☃"]),
        (["18446744073709551616"], [18446744073709551616]),  # past 64 bits, exact
        ([" 7 "], [7]),
    ],
)
def test_positional_params_are_json_values(args: list[str], params: list[Any]) -> None:
    assert parse_params(args) == params


@pytest.mark.parametrize(
    ("args", "params"),
    [
        (["minuend=42", "subtrahend=23"], {"minuend": 42, "subtrahend": 23}),
        (['name="John"'], {"name": "John"}),
        (['expr="a=b"'], {"expr": "a=b"}),  # only the first "=" splits
        (["_x1=[1, {}]"], {"_x1": [1, {}]}),
        (["flag=null"], {"flag": None}),
        (['text="line\\nbreak"'], {"text": "line\nbreak"}),
    ],
)
def test_named_params_are_name_equals_json(args: list[str], params: dict[str, Any]) -> None:
    assert parse_params(args) == params


@pytest.mark.parametrize("args", [["1", "x=2"], ["x=2", "1"], ['"a"', "b=null"]])
def test_mixing_positional_and_named_is_an_error(args: list[str]) -> None:
    with pytest.raises(UsageError, match="not both"):
        parse_params(args)


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [("hi", "'\"hi\"'"), ("John Smith", "'\"John Smith\"'"), ("name=John", "'\"John\"'")],
)
def test_a_bare_word_is_an_error_that_says_to_quote_strings(arg: str, quoted: str) -> None:
    with pytest.raises(UsageError, match="not a JSON value") as info:
        parse_params([arg])
    assert quoted in str(info.value)


@pytest.mark.parametrize("arg", ["[1,", "{'a': 1}", "NaN", "1 2", "a-b=1", "x=", "=1", ""])
def test_non_json_is_an_error(arg: str) -> None:
    with pytest.raises(UsageError, match="not a JSON value"):
        parse_params([arg])


# -- parse_args --------------------------------------------------------------------


def test_parse_args_call() -> None:
    args = parse_args(["call", "subtract", "42", "23"])
    assert (args.command, args.method, args.params) == ("call", "subtract", [42, 23])
    assert args.connect == DEFAULT_ENDPOINT == "tcp:127.0.0.1:8080"
    assert args.timeout > 0


def test_default_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSONSERVICE_CONNECT", "tcp:127.0.0.1:9000")
    assert parse_args(["call", "ping"]).connect == "tcp:127.0.0.1:9000"
    assert parse_args(["call", "-c", "unix:/tmp/x.sock", "ping"]).connect == "unix:/tmp/x.sock"
    monkeypatch.setenv("JSONSERVICE_CONNECT", "")
    assert parse_args(["call", "ping"]).connect == DEFAULT_ENDPOINT


def test_parse_args_options_anywhere() -> None:
    args = parse_args(["call", "--connect", "unix:/tmp/x.sock", "-t", "0.5", "echo", "a=1"])
    assert (args.connect, args.timeout, args.params) == ("unix:/tmp/x.sock", 0.5, {"a": 1})
    args = parse_args(["call", "echo", "1", "-c", "tcp:127.0.0.1:9", "--timeout=2"])
    assert (args.connect, args.timeout, args.params) == ("tcp:127.0.0.1:9", 2.0, [1])


def test_parse_args_negative_numbers_are_params() -> None:
    assert parse_args(["call", "add", "-1", "-2.5"]).params == [-1, -2.5]


def test_parse_args_notify_and_send() -> None:
    args = parse_args(["notify", "log", '"started"'])
    assert (args.command, args.method, args.params) == ("notify", "log", ["started"])
    args = parse_args(["send", '{"name": "John", "age": 30, "city": "New York"}'])
    assert (args.command, args.message) == ("send", {"name": "John", "age": 30, "city": "New York"})
    assert parse_args(["send", '"just a string"']).message == "just a string"


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "echo", "hi"],
        ["call", "echo", "1", "x=1"],
        ["call", "--timeout", "0", "echo"],
        ["call", "--timeout", "-1", "echo"],
        ["send", "{bad json"],
        ["send", "hello"],
        # JSON-RPC shapes are not plain messages: use call or notify.
        ["send", "[1, 2]"],
        ["send", '{"jsonrpc": "2.0", "method": "echo"}'],
    ],
)
def test_parse_args_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["call"], ["send"], ["call", "--timeout", "soon", "echo"], ["call", "--nope", "x"]],
)
def test_parse_args_argparse_errors_exit_64(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 64  # not 2, which means "cannot connect"
    assert "usage: jsonservice" in capsys.readouterr().err


# -- the command line as a subprocess ----------------------------------------------


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        if reason.check(ProcessDone):
            self.ended.callback(0)
        elif reason.check(ProcessTerminated):
            code = reason.value.exitCode
            self.ended.callback(code if code is not None else -(reason.value.signal or 1))
        else:
            self.ended.errback(reason)


class Result:
    def __init__(self, code: int, out: str, err: str, seconds: float) -> None:
        self.code, self.out, self.err, self.seconds = code, out, err, seconds

    def __repr__(self) -> str:
        return f"<exit {self.code} out={self.out!r} err={self.err!r} in {self.seconds:.2f}s>"


async def run_cli(reactor: Any, *args: str) -> Result:
    """
    Run C{python -m jsonservice ARGS} while this reactor keeps serving;
    the process is killed (and the test fails) after L{RUN_LIMIT} seconds.
    """
    proto = _Collect()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    started = time.monotonic()
    process = reactor.spawnProcess(
        proto, sys.executable, [sys.executable, "-m", "jsonservice", *args], env=env, path=str(ROOT)
    )

    def kill() -> None:
        with contextlib.suppress(ProcessExitedAlready):
            process.signalProcess("KILL")

    killer = reactor.callLater(RUN_LIMIT, kill)
    try:
        code = await proto.ended
    finally:
        if killer.active():
            killer.cancel()
    result = Result(
        code,
        b"".join(proto.out).decode("utf-8"),
        b"".join(proto.err).decode("utf-8"),
        time.monotonic() - started,
    )
    assert result.seconds < RUN_LIMIT, f"killed: {result}"
    return result


async def wait_until(reactor: Any, predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STEP
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)


class Recording(JSONProtocol):
    def valueReceived(self, value: Any) -> None:
        self.factory.seen.append(value)
        super().valueReceived(value)


class Server:
    """The service the command line talks to, and what it saw."""

    def __init__(self) -> None:
        self.notes: list[Any] = []
        self.cancelled = 0
        self.hanging: list[Deferred[None]] = []
        service = JSONService()

        @service.method
        def echo(value: Any) -> Any:
            return value

        @service.method
        def subtract(minuend: int, subtrahend: int) -> int:
            return minuend - subtrahend

        @service.method
        def fail() -> None:
            raise RPCError(4000, "custom failure", {"why": "data kept"})

        @service.method
        def note(*args: Any, **kwargs: Any) -> None:
            self.notes.append(kwargs or list(args))

        @service.method
        def hang() -> Deferred[None]:
            def cancelled(_: Deferred[None]) -> None:
                self.cancelled += 1

            d: Deferred[None] = Deferred(cancelled)
            self.hanging.append(d)
            return d

        @service.message
        def hello(message: Any) -> Any:
            return {"message": "Hello from server", "you_sent": message}

        self.factory = JSONServerFactory(service)
        self.factory.protocol = Recording
        self.factory.seen = []  # type: ignore[attr-defined]
        self.port: Any = None

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port.getHost().port}"

    def methods_seen(self) -> list[str]:
        seen: list[Any] = self.factory.seen  # type: ignore[attr-defined]
        return [v["method"] for v in seen if isinstance(v, dict) and "method" in v]


@pytest_twisted.async_yield_fixture
async def server(reactor: Any) -> Any:
    srv = Server()
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    srv.port = await endpoint.listen(srv.factory).addTimeout(STEP, reactor)
    try:
        yield srv
    finally:
        await maybeDeferred(srv.port.stopListening).addTimeout(STEP, reactor)
        for proto in list(srv.factory.connections):
            proto.transport.abortConnection()
        await wait_until(reactor, lambda: not srv.factory.connections, "connections closed")
        for d in srv.hanging:
            if not d.called:
                d.cancel()


@pytest_twisted.ensureDeferred
async def test_call_prints_the_result_as_json(reactor: Any, server: Server) -> None:
    result = await run_cli(
        reactor, "call", "--connect", server.endpoint, "echo", '{"a": [1, 2.5, null, true]}'
    )
    assert (result.code, result.err) == (0, ""), result
    assert result.out == '{"a":[1,2.5,null,true]}\n'


@pytest_twisted.ensureDeferred
async def test_call_non_ascii_and_big_integers(reactor: Any, server: Server) -> None:
    result = await run_cli(
        reactor, "call", "-c", server.endpoint, "echo", '["héllo ☃", 18446744073709551616]'
    )
    assert (result.code, result.err) == (0, ""), result
    assert result.out == '["héllo ☃",18446744073709551616]\n'


@pytest_twisted.ensureDeferred
async def test_call_with_named_and_positional_params(reactor: Any, server: Server) -> None:
    named = await run_cli(reactor, "call", "-c", server.endpoint, "subtract", "minuend=42", "subtrahend=23")
    assert (named.code, named.out, named.err) == (0, "19\n", ""), named
    positional = await run_cli(reactor, "call", "-c", server.endpoint, "subtract", "-1", "2")
    assert (positional.code, positional.out) == (0, "-3\n"), positional


@pytest_twisted.ensureDeferred
async def test_json_rpc_error_exits_1_with_code_and_message(reactor: Any, server: Server) -> None:
    result = await run_cli(reactor, "call", "-c", server.endpoint, "fail")
    assert (result.code, result.out) == (1, ""), result
    assert result.err == 'error 4000: custom failure: {"why":"data kept"}\n'

    missing = await run_cli(reactor, "call", "-c", server.endpoint, "no.such")
    assert (missing.code, missing.out) == (1, ""), missing
    assert "error -32601: Method not found" in missing.err

    wrong = await run_cli(reactor, "call", "-c", server.endpoint, "subtract", "1")
    assert wrong.code == 1, wrong
    assert "error -32602: Invalid params" in wrong.err


@pytest_twisted.ensureDeferred
async def test_cannot_connect_exits_2(reactor: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens here once closed
    result = await run_cli(reactor, "call", "-c", f"tcp:127.0.0.1:{closed}", "echo", "1")
    assert (result.code, result.out) == (2, ""), result
    assert f"cannot connect to tcp:127.0.0.1:{closed}" in result.err


@pytest_twisted.ensureDeferred
async def test_bad_endpoint_description_exits_64(reactor: Any) -> None:
    result = await run_cli(reactor, "call", "-c", "nosuchtype:1234", "echo", "1")
    assert result.code == 64, result
    assert "nosuchtype:1234" in result.err
    assert "Traceback" not in result.err


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("where", ["file", "missing"])
async def test_tls_trust_roots_not_a_directory_exit_64(reactor: Any, tmp_path: Any, where: str) -> None:
    """trustRoots= names a directory: a file (or nothing) is one line, not a traceback."""
    pytest.importorskip("OpenSSL", reason="the tls extra is not installed")
    path = tmp_path / "ca.pem"
    if where == "file":
        path.write_text("not a directory\n")
    result = await run_cli(reactor, "call", "-c", f"tls:127.0.0.1:1:trustRoots={path}", "ping")
    assert result.code == 64, result
    assert "trustRoots= wants a directory of PEM certificates" in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest_twisted.ensureDeferred
async def test_timeout_exits_2_and_the_server_cancels(reactor: Any, server: Server) -> None:
    result = await run_cli(reactor, "call", "-c", server.endpoint, "--timeout", "0.5", "hang")
    assert (result.code, result.out) == (2, ""), result
    assert f"no reply from {server.endpoint} in time" in result.err
    assert result.seconds < 5
    await wait_until(reactor, lambda: server.cancelled == 1, "the handler cancelled")
    assert server.methods_seen() == ["hang", CANCEL_METHOD]


@pytest_twisted.ensureDeferred
async def test_notify_exits_0_and_the_server_sees_it(reactor: Any, server: Server) -> None:
    result = await run_cli(reactor, "notify", "-c", server.endpoint, "note", '"started"', "2")
    assert (result.code, result.out, result.err) == (0, "", ""), result
    named = await run_cli(reactor, "notify", "-c", server.endpoint, "note", "level=1")
    assert named.code == 0, named
    await wait_until(reactor, lambda: len(server.notes) == 2, "both notifications")
    assert server.notes == [["started", 2], {"level": 1}]
    seen = [v for v in server.factory.seen if v.get("method") == "note"]  # type: ignore[attr-defined]
    assert all("id" not in v for v in seen)  # notifications, not calls


@pytest_twisted.ensureDeferred
async def test_send_prints_the_plain_reply(reactor: Any, server: Server) -> None:
    message = '{"name": "John", "age": 30, "city": "New York"}'
    result = await run_cli(reactor, "send", message, "--connect", server.endpoint)
    assert (result.code, result.err) == (0, ""), result
    assert json.loads(result.out) == {"message": "Hello from server", "you_sent": json.loads(message)}
    assert result.out.endswith("}\n")


@pytest_twisted.ensureDeferred
async def test_help(reactor: Any) -> None:
    result = await run_cli(reactor, "--help")
    assert (result.code, result.err) == (0, ""), result
    for word in ("call", "notify", "send", "Exit status"):
        assert word in result.out
    sub = await run_cli(reactor, "call", "--help")
    assert sub.code == 0, sub
    assert "--connect" in sub.out
    assert "--timeout" in sub.out


@pytest_twisted.ensureDeferred
async def test_usage_errors_exit_64(reactor: Any) -> None:
    bare = await run_cli(reactor, "call", "echo", "hi")
    assert (bare.code, bare.out) == (64, ""), bare
    assert "'\"hi\"'" in bare.err  # says how to quote a string
    nothing = await run_cli(reactor)
    assert nothing.code == 64, nothing
    assert "usage: jsonservice" in nothing.err
    batch = await run_cli(reactor, "send", "[1, 2]")
    assert batch.code == 64, batch


def test_auth_token_file_is_read_and_checked(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert parse_args(["call", "--auth-token-file", str(token), "ping"]).auth_token == "s3cret"
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(UsageError, match="is empty"):
        parse_args(["call", "--auth-token-file", str(empty), "ping"])
    with pytest.raises(UsageError, match="No such file"):
        parse_args(["call", "--auth-token-file", str(tmp_path / "missing"), "ping"])


def test_a_servers_error_is_printed_escaped_and_cut(capsys: pytest.CaptureFixture[str]) -> None:
    """A hostile server's error message cannot drive the terminal, nor flood it."""
    from jsonservice.__main__ import _exit_for

    error = RPCError(1, "\x1b[31mred\x07", data="x" * 100_000)
    assert _exit_for(Failure(error), "tcp:127.0.0.1:1") == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\x07" not in err
    assert err.startswith("error 1: \\x1b[31mred\\x07: ")
    assert len(err) < 1100
    assert "(100,002 characters)" in err
