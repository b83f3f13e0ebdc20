"""Baseline servers, each run as its own process: ``python -m bench.servers KIND [--port N]``.

Kinds:

* ``bare`` — Twisted ``LineReceiver`` echo, ``delimiter = b"\\n"``; echoes each line unchanged.
  No JSON at all: the floor every other figure is divided by.
* ``naive`` — Twisted ``LineReceiver`` + stdlib ``json`` + ``maybeDeferred``: what people write
  first. One ``sendLine`` per reply, default ``json.dumps``.
* ``asyncio`` — asyncio streams + stdlib ``json``: ``readline``, dispatch, ``write``, ``drain``.
* ``aiorpcx`` — aiorpcX ``RPCSession`` served by ``serve_rs`` (newline framing), defaults kept.
* ``amp`` — Twisted AMP with ``Echo``/``Ping`` commands.

For the HTTP and WebSocket section (:mod:`bench.transports`):

* ``aiohttp`` — an aiohttp JSON handler: ``POST /rpc``, ``json.loads`` the body, dispatch,
  ``json.dumps`` the reply (what an aiohttp user writes for JSON-RPC over HTTP).
* ``websockets`` — the ``websockets`` library's asyncio server with stdlib ``json``: one
  JSON-RPC message per WebSocket message, answered in order.
* ``twistedweb`` — a bare ``twisted.web`` resource echoing the POST body: no JSON (a floor).
* ``autobahn`` — a bare autobahn WebSocket echo on Twisted: no JSON (a floor).

All JSON servers answer ``echo(value)``, ``ping()`` and — where they have plain messages —
``{"message": "Hello from server"}``. Each prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from collections.abc import Callable
from typing import Any

HELLO: dict[str, str] = {"message": "Hello from server"}
MAX_LINE = 1 << 20  # LineReceiver's default 16 KiB would drop 64 KiB messages


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _ready(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


def _echo(value: Any) -> Any:
    return value


def _ping() -> str:
    return "pong"


METHODS: dict[str, Callable[..., Any]] = {"echo": _echo, "ping": _ping}


def _error(code: int, message: str, ident: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": ident}


# -- Twisted ------------------------------------------------------------------------------


def run_bare(host: str, port: int) -> None:
    """Serve the bare LineReceiver echo (the floor)."""
    from twisted.internet import reactor as _reactor
    from twisted.internet.protocol import ServerFactory
    from twisted.protocols.basic import LineReceiver

    class BareEcho(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = MAX_LINE

        def lineReceived(self, line: bytes) -> None:
            self.sendLine(line)  # type: ignore[no-untyped-call]

    reactor: Any = _reactor
    listening = reactor.listenTCP(port, ServerFactory.forProtocol(BareEcho), interface=host)
    _ready(listening.getHost().port)
    reactor.run()


def run_naive(host: str, port: int) -> None:
    """Serve JSON-RPC the naive Twisted way: LineReceiver + json + maybeDeferred."""
    from twisted.internet import reactor as _reactor
    from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
    from twisted.internet.protocol import ServerFactory
    from twisted.protocols.basic import LineReceiver
    from twisted.python.failure import Failure

    class NaiveJSONRPC(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = MAX_LINE

        def lineReceived(self, line: bytes) -> None:
            try:
                message = json.loads(line)
            except ValueError:
                self._send(_error(-32700, "Parse error", None))
                return
            if isinstance(message, list):
                d = gatherResults([self._handle(item) for item in message])
                d.addCallback(lambda replies: self._send([r for r in replies if r is not None]))
            elif isinstance(message, dict) and "jsonrpc" in message:
                self._handle(message).addCallback(self._send)
            else:
                self._send(HELLO)

        def _send(self, reply: Any) -> None:
            if reply is not None:
                self.sendLine(json.dumps(reply).encode())  # type: ignore[no-untyped-call]

        def _handle(self, request: dict[str, Any]) -> Deferred[Any]:
            ident = request.get("id")
            method = METHODS.get(request.get("method", ""))
            if method is None:
                return succeed(_error(-32601, "Method not found", ident))
            params = request.get("params", [])
            if isinstance(params, dict):
                d = maybeDeferred(method, **params)
            else:
                d = maybeDeferred(method, *params)

            def ok(result: Any) -> dict[str, Any] | None:
                return {"jsonrpc": "2.0", "result": result, "id": ident} if "id" in request else None

            def failed(_failure: Failure) -> dict[str, Any]:
                return _error(-32603, "Internal error", ident)

            return d.addCallbacks(ok, failed)

    reactor: Any = _reactor
    listening = reactor.listenTCP(port, ServerFactory.forProtocol(NaiveJSONRPC), interface=host)
    _ready(listening.getHost().port)
    reactor.run()


def run_amp(host: str, port: int) -> None:
    """Serve Twisted AMP with the Echo and Ping commands."""
    from twisted.internet import reactor as _reactor
    from twisted.internet.protocol import ServerFactory

    from bench.ampcommands import EchoAMP

    reactor: Any = _reactor
    listening = reactor.listenTCP(port, ServerFactory.forProtocol(EchoAMP), interface=host)
    _ready(listening.getHost().port)
    reactor.run()


# -- asyncio ------------------------------------------------------------------------------


def _dispatch_sync(request: Any) -> Any:
    if not isinstance(request, dict):
        return _error(-32600, "Invalid Request", None)
    ident = request.get("id")
    method = METHODS.get(request.get("method", ""))
    if method is None:
        return _error(-32601, "Method not found", ident)
    params = request.get("params", [])
    try:
        result = method(**params) if isinstance(params, dict) else method(*params)
    except Exception:
        return _error(-32603, "Internal error", ident)
    return {"jsonrpc": "2.0", "result": result, "id": ident} if "id" in request else None


def run_asyncio(host: str, port: int) -> None:
    """Serve JSON-RPC with asyncio streams and stdlib json."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    reply: Any = _error(-32700, "Parse error", None)
                else:
                    if isinstance(message, list):
                        reply = [r for r in map(_dispatch_sync, message) if r is not None]
                    elif isinstance(message, dict) and "jsonrpc" in message:
                        reply = _dispatch_sync(message)
                    else:
                        reply = HELLO
                if reply is not None:
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, host, port, limit=MAX_LINE)
        _ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def run_aiorpcx(host: str, port: int) -> None:
    """Serve JSON-RPC with aiorpcX (``serve_rs``, ``RPCSession``, newline framing)."""
    import aiorpcx  # type: ignore[import-untyped]

    class EchoSession(aiorpcx.RPCSession):  # type: ignore[misc]
        async def handle_request(self, request: Any) -> Any:
            handler = {"echo": self.echo, "ping": self.ping}.get(request.method)
            coro = aiorpcx.handler_invocation(handler, request)()
            return await coro

        async def echo(self, value: Any) -> Any:
            return value

        async def ping(self) -> str:
            return "pong"

    async def main() -> None:
        server = await aiorpcx.serve_rs(EchoSession, host, port)
        _ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _dispatch_json(data: bytes | str) -> bytes | None:
    try:
        message = json.loads(data)
    except ValueError:
        return json.dumps(_error(-32700, "Parse error", None)).encode()
    reply = _dispatch_sync(message) if isinstance(message, dict) else None
    return None if reply is None else json.dumps(reply).encode()


def run_aiohttp(host: str, port: int) -> None:
    """JSON-RPC over HTTP with an aiohttp handler: POST /rpc."""
    from aiohttp import web

    async def rpc(request: web.Request) -> web.Response:
        reply = _dispatch_json(await request.read())
        if reply is None:
            return web.Response(status=204)
        return web.Response(body=reply, content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=MAX_LINE)
        app.router.add_post("/rpc", rpc)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        _ready(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def run_websockets(host: str, port: int) -> None:
    """JSON-RPC over WebSocket with the websockets library and stdlib json."""
    from websockets.asyncio.server import serve

    async def handle(ws: Any) -> None:
        async for message in ws:
            reply = _dispatch_json(message)
            if reply is not None:
                await ws.send(reply.decode())

    async def main() -> None:
        async with serve(handle, host, port, max_size=MAX_LINE, compression=None) as server:
            _ready(next(iter(server.sockets)).getsockname()[1])
            await server.serve_forever()

    asyncio.run(main())


def run_twistedweb(host: str, port: int) -> None:
    """A bare twisted.web resource echoing the POST body (no JSON)."""
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Echo(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"application/json")
            body: bytes = request.content.read()
            return body

    listening = reactor.listenTCP(port, Site(Echo()), interface=host)  # type: ignore[attr-defined]
    _ready(listening.getHost().port)
    reactor.run()  # type: ignore[attr-defined]


def run_autobahn(host: str, port: int) -> None:
    """A bare autobahn WebSocket echo on Twisted (no JSON)."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor

    class Echo(WebSocketServerProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, is_binary: bool) -> None:
            self.sendMessage(payload, is_binary)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    listening = reactor.listenTCP(port, factory, interface=host)  # type: ignore[attr-defined]
    _ready(listening.getHost().port)
    reactor.run()  # type: ignore[attr-defined]


SERVERS: dict[str, Callable[[str, int], None]] = {
    "bare": run_bare,
    "naive": run_naive,
    "asyncio": run_asyncio,
    "aiorpcx": run_aiorpcx,
    "amp": run_amp,
    "aiohttp": run_aiohttp,
    "websockets": run_websockets,
    "twistedweb": run_twistedweb,
    "autobahn": run_autobahn,
}


def main(argv: list[str] | None = None) -> None:
    """Run one baseline server until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral (printed as READY <port>)")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    SERVERS[args.kind](args.host, args.port)


if __name__ == "__main__":
    main()
