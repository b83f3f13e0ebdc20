"""
The command-line client: C{jsonservice call|notify|send}, also run as
C{python -m jsonservice}::

    jsonservice call echo '"hi"'                 # positional params: JSON values
    jsonservice call subtract minuend=42 subtrahend=23
    jsonservice notify --connect unix:/run/x.sock log '"started"'
    jsonservice send '{"name": "John", "age": 30, "city": "New York"}'
    jsonservice subscribe news.tech --count 10  # one JSON line per rpc.event
    jsonservice call --connect ws://127.0.0.1:8081/ws echo 1      # WebSocket
    jsonservice call --connect http://127.0.0.1:8081/rpc echo 1   # HTTP POST

Exit status: 0 on success, 1 when the peer answers with a JSON-RPC error
(printed to stderr with its code and message), 2 when it cannot connect,
the connection drops, or the reply does not come in time; 64 for bad
arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Final, NoReturn

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError
from twisted.python.failure import Failure

from .client import JSONClientFactory, authenticate
from .codec import EncodeError, dumps, loads
from .errors import ParseError, RPCError
from .protocol import JSONProtocol

__all__ = ["DEFAULT_ENDPOINT", "ENDPOINT_VARIABLE", "main", "parse_args", "parse_params"]

DEFAULT_ENDPOINT: Final = "tcp:127.0.0.1:8080"
#: The environment variable that sets the default of C{--connect}
#: (C{PORT=9000 make run}, then C{export JSONSERVICE_CONNECT=tcp:127.0.0.1:9000}).
ENDPOINT_VARIABLE: Final = "JSONSERVICE_CONNECT"
DEFAULT_TIMEOUT: Final = 10.0

EXIT_OK: Final = 0
EXIT_RPC_ERROR: Final = 1
EXIT_UNAVAILABLE: Final = 2
EXIT_USAGE: Final = 64

_NAMED: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


class UsageError(Exception):
    """Arguments that do not make a request."""


def _json(text: str, what: str) -> Any:
    try:
        return loads(text.encode("utf-8", "surrogatepass"))
    except ParseError as exc:
        hint = f" (a string is quoted: '\"{text}\"')" if text and text[0] not in '[{"-0123456789' else ""
        raise UsageError(f"{what} {text!r} is not a JSON value: {exc.data}{hint}") from None


def parse_params(args: list[str]) -> list[Any] | dict[str, Any] | None:
    """
    Turn command-line ARGs into JSON-RPC params: each a JSON value
    (positional) or C{name=JSONVALUE} (named); not both kinds at once.
    """
    positional: list[Any] = []
    named: dict[str, Any] = {}
    for arg in args:
        try:
            positional.append(loads(arg.encode("utf-8", "surrogatepass")))
            continue
        except ParseError:
            pass
        match = _NAMED.match(arg)
        if match is None:
            _json(arg, "argument")  # raises with the reason
        name, value = match.groups()  # type: ignore[union-attr]
        named[name] = _json(value, f"value of {name}")
    if positional and named:
        raise UsageError("give params positionally or by name (name=VALUE), not both")
    if named:
        return named
    return positional or None


class _Parser(argparse.ArgumentParser):
    """Bad arguments exit 64 (EX_USAGE), not argparse's 2, which here means "cannot connect"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jsonservice",
        description="Call, notify or message a JSON / JSON-RPC 2.0 service.",
        epilog="Exit status: 0 success, 1 JSON-RPC error, 2 cannot connect or no reply in time, 64 usage.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, timeout: bool = True) -> None:
        sub.add_argument(
            "--connect",
            "-c",
            default=os.environ.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT,
            metavar="ENDPOINT",
            help="client endpoint description, or a ws:// or http:// URL"
            f" [default: ${ENDPOINT_VARIABLE}, else {DEFAULT_ENDPOINT}]",
        )
        sub.add_argument(
            "--auth-token-file",
            metavar="FILE",
            help="authenticate with the token in FILE (for a server run with --auth-token-file)",
        )
        if timeout:
            sub.add_argument(
                "--timeout",
                "-t",
                type=float,
                default=DEFAULT_TIMEOUT,
                metavar="S",
                help=f"seconds to wait for the connection and the reply [default: {DEFAULT_TIMEOUT:g}]",
            )

    call = commands.add_parser("call", help="call a method and print its result")
    common(call)
    call.add_argument("method", metavar="METHOD")
    call.add_argument("args", nargs="*", metavar="ARG", help="a JSON value, or name=JSONVALUE")
    notify = commands.add_parser("notify", help="send a notification (no reply)")
    common(notify)
    notify.add_argument("method", metavar="METHOD")
    notify.add_argument("args", nargs="*", metavar="ARG", help="a JSON value, or name=JSONVALUE")
    send = commands.add_parser("send", help="send a plain JSON message and print the reply")
    common(send)
    send.add_argument("message", metavar="JSON")
    subscribe = commands.add_parser(
        "subscribe", help="subscribe to topics (rpc.subscribe) and print each event as a JSON line"
    )
    common(subscribe)
    subscribe.add_argument("topics", nargs="+", metavar="TOPIC")
    subscribe.add_argument(
        "--count", "-n", type=int, default=0, metavar="N", help="exit after N events [default: 0, never]"
    )
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line; C{params}/C{message} come out decoded."""
    args = _parser().parse_args(argv)
    if args.command == "send":
        args.message = message = _json(args.message, "message")
        if isinstance(message, list) or (isinstance(message, dict) and "jsonrpc" in message):
            raise UsageError(
                "send takes a plain message: an array or a 'jsonrpc' object is JSON-RPC (use call)"
            )
    elif args.command == "subscribe":
        if args.count < 0:
            raise UsageError("--count must not be negative")
    else:
        args.params = parse_params(args.args)
    if args.auth_token_file:
        from twisted.python import usage

        from .tap import read_token

        try:
            args.auth_token = read_token(args.auth_token_file).decode("utf-8")
        except usage.UsageError as exc:
            raise UsageError(str(exc)) from None
        except UnicodeDecodeError:
            raise UsageError(f"--auth-token-file: {args.auth_token_file} is not UTF-8") from None
    if getattr(args, "timeout", 1) <= 0:
        raise UsageError("--timeout must be positive")
    return args


def _print_json(value: Any) -> None:
    try:
        text = dumps(value).decode("utf-8")
    except EncodeError:
        text = repr(value)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


#: The most characters of a server's words (an error's message, its data) printed.
_MOST_SHOWN = 1000


def _shown(text: str) -> str:
    """
    A server's words as printed: control characters escaped (a hostile
    server must not drive the terminal), cut at L{_MOST_SHOWN} characters.
    """
    if len(text) > _MOST_SHOWN:
        text = f"{text[:_MOST_SHOWN]}… ({len(text):,} characters)"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _exit_for(failure: Failure, endpoint: str) -> int:
    if failure.check(RPCError):
        error: RPCError = failure.value  # type: ignore[assignment]
        detail = f": {_shown(dumps(error.data).decode())}" if error.data is not None else ""
        sys.stderr.write(f"error {error.code}: {_shown(str(error.message))}{detail}\n")
        return EXIT_RPC_ERROR
    if failure.check(TimeoutError):
        sys.stderr.write(f"no reply from {endpoint} in time\n")
    elif failure.check(ConnectError, DNSLookupError):
        sys.stderr.write(f"cannot connect to {endpoint}: {failure.getErrorMessage()}\n")
    elif failure.check(ConnectionLost):
        reason = failure.getErrorMessage()
        if "certificate verify failed" in reason:
            sys.stderr.write(
                f"cannot connect to {endpoint}: TLS: the server's certificate failed verification"
                " (tls: checks it against the system's trust store; trustRoots=DIR names a private CA)\n"
            )
        elif "SSL routines" in reason:
            sys.stderr.write(f"cannot connect to {endpoint}: TLS handshake failed: {reason}\n")
        else:
            sys.stderr.write(f"connection to {endpoint} closed before the reply\n")
    else:
        sys.stderr.write(f"failed: {_shown(failure.getErrorMessage())}\n")
    return EXIT_UNAVAILABLE


def _no_tls(endpoint: str) -> int:
    sys.stderr.write(f"cannot connect to {endpoint}: TLS needs pyOpenSSL: pip install 'jsonservice[tls]'\n")
    return EXIT_UNAVAILABLE


class _ClientFactory(JSONClientFactory):
    """A client factory that says when its connection has closed."""

    def __init__(self, clock: Any, service: Any = None) -> None:
        super().__init__(service, clock=clock)
        self.lost: Deferred[None] = Deferred()

    def connection_lost(self, proto: JSONProtocol) -> None:
        super().connection_lost(proto)
        if not self.lost.called:
            self.lost.callback(None)


class _Events:
    """C{subscribe}: prints each C{rpc.event} as a JSON line; done after C{count} (0: never)."""

    def __init__(self, count: int) -> None:
        from .service import JSONService

        self.count = count
        self.seen = 0
        self.done: Deferred[None] = Deferred()
        self.service = JSONService()
        self.service.on_event(self.event)

    def event(self, topic: str, data: Any) -> None:
        _print_json({"topic": topic, "data": data})
        self.seen += 1
        if self.count and self.seen >= self.count and not self.done.called:
            self.done.callback(None)

    async def until_done(self, lost: Deferred[None]) -> None:
        """Until C{count} events came, or the connection closed."""
        from twisted.internet.defer import DeferredList

        await DeferredList([self.done, lost], fireOnOneCallback=True)


async def _close(reactor: Any, proto: JSONProtocol, lost: Deferred[None], timeout: float) -> bool:
    """
    Close the connection once what was written is sent, so that a
    notification (or a C{$/cancelRequest}) is not lost when the process
    exits.  Returns whether it closed in time (else it is aborted).
    """
    proto.transport.loseConnection()  # type: ignore[union-attr]
    try:
        await lost.addTimeout(timeout, reactor)
    except TimeoutError:
        proto.transport.abortConnection()  # type: ignore[union-attr]
        return False
    return True


async def _run_http(reactor: Any, args: argparse.Namespace) -> int:
    """One POST per command (C{--connect http://host:port/rpc})."""
    from .httpclient import HTTPClient

    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    client = HTTPClient(reactor, args.connect, auth_token=getattr(args, "auth_token", None))
    code, result = EXIT_OK, None
    try:
        if args.command == "notify":
            await client.notify_params(args.method, args.params).addTimeout(timeout, reactor)
        elif args.command == "call":
            result = await client.request(args.method, args.params, timeout=timeout)
        else:
            result = await client.send(args.message, timeout=timeout)
    except Exception:
        code = _exit_for(Failure(), args.connect)
    await client.close()
    if code == EXIT_OK and args.command != "notify":
        _print_json(result)
    return code


def _connecting(reactor: Any, description: str, factory: _ClientFactory) -> Deferred[Any] | int:
    """Start connecting: a Deferred firing with the protocol, or an exit status."""
    if description.startswith(("ws://", "wss://")):
        try:
            from .ws import connect_ws
        except ImportError as exc:
            sys.stderr.write(f"jsonservice: {exc}\n")
            return EXIT_USAGE
        return connect_ws(reactor, description, factory)
    from twisted.internet.endpoints import clientFromString

    try:
        endpoint = clientFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as exc:
        sys.stderr.write(f"jsonservice: bad endpoint description {description!r}: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:  # tls:...:trustRoots= naming a file, or nothing
        reason = exc.strerror or exc.__class__.__name__
        sys.stderr.write(f"jsonservice: bad endpoint description {description!r}: {reason}")
        hint = " (trustRoots= wants a directory of PEM certificates)" if "trustRoots=" in description else ""
        sys.stderr.write(hint + "\n")
        return EXIT_USAGE
    except (ImportError, NameError):  # Twisted's TLS endpoints without pyOpenSSL
        return _no_tls(description)
    connecting: Deferred[Any] = endpoint.connect(factory)
    return connecting


async def _run(reactor: Any, args: argparse.Namespace) -> int:
    if args.connect.startswith(("http://", "https://")):
        if args.command == "subscribe":
            sys.stderr.write("jsonservice: subscribe needs a connection that stays open, not HTTP\n")
            return EXIT_USAGE
        return await _run_http(reactor, args)
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    events = _Events(args.count) if args.command == "subscribe" else None
    factory = _ClientFactory(reactor, events.service if events is not None else None)
    try:
        connecting = _connecting(reactor, args.connect, factory)
    except (ImportError, NameError):
        return _no_tls(args.connect)
    if isinstance(connecting, int):
        return connecting
    try:
        proto: JSONProtocol = await connecting.addTimeout(timeout, reactor)
    except (ImportError, NameError):
        return _no_tls(args.connect)
    except Exception:
        return _exit_for(Failure(), args.connect)
    code, result = EXIT_OK, None
    try:
        if args.auth_token_file:
            await authenticate(proto, args.auth_token)
        if args.command == "notify":
            proto.notify_params(args.method, args.params)
        elif args.command == "call":
            result = await proto.request(args.method, args.params, timeout=timeout)
        elif events is not None:
            for topic in args.topics:
                await proto.request("rpc.subscribe", [topic], timeout=timeout)
            sys.stderr.write(f"subscribed to {', '.join(args.topics)}\n")
            sys.stderr.flush()
            await events.until_done(factory.lost)
            if not events.done.called:
                sys.stderr.write(f"connection to {args.connect} closed\n")
                return EXIT_UNAVAILABLE
            await _close(reactor, proto, factory.lost, timeout)
            return EXIT_OK
        else:
            result = await proto.send(args.message, timeout=timeout)
    except Exception:
        code = _exit_for(Failure(), args.connect)
    closed = await _close(reactor, proto, factory.lost, timeout)
    if code != EXIT_OK:
        return code
    if args.command == "notify":
        if not closed:
            sys.stderr.write(f"could not deliver the notification to {args.connect} in time\n")
            return EXIT_UNAVAILABLE
        return EXIT_OK
    _print_json(result)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Run the command line client (the C{jsonservice} script)."""
    from twisted.internet.task import react

    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"jsonservice: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None

    async def run(reactor: Any) -> None:
        code = await _run(reactor, args)
        if code:
            raise SystemExit(code)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
