"""
JSON-RPC over HTTP (L{jsonservice.web}): the site of C{--http} driven over a
L{StringTransport} with a L{Clock} — real twisted.web parsing, no ports.
"""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from jsonservice import JSONServerFactory
from jsonservice.demo import make_demo_service
from jsonservice.service import CallContext
from jsonservice.web import JSONResource, make_site, status_for

try:
    from tests.web_helpers import (
        HOST,
        PEER,
        HTTPHarness,
        Recorder,
        http_harness,
        parse_responses,
        request_bytes,
        slow_service,
    )
except ImportError:  # pragma: no cover - tests/ on sys.path
    from web_helpers import (  # type: ignore[no-redef]
        HOST,
        PEER,
        HTTPHarness,
        Recorder,
        http_harness,
        parse_responses,
        request_bytes,
        slow_service,
    )

ECHO = b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}'


def test_request_answered_as_json() -> None:
    h = http_harness(make_demo_service())
    response = h.post(ECHO)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json == {"jsonrpc": "2.0", "result": 1, "id": 1}
    assert h.factory.connections == set()  # the exchange is over


def test_notification_is_204_with_no_body() -> None:
    h = http_harness(make_demo_service())
    response = h.post(b'{"jsonrpc":"2.0","method":"echo","params":[1]}')
    assert (response.status, response.body) == (204, b"")
    response = h.post(b'[{"jsonrpc":"2.0","method":"echo","params":[1]},{"jsonrpc":"2.0","method":"ping"}]')
    assert (response.status, response.body) == (204, b"")


def test_batch_plain_message_and_pretty_printed_body() -> None:
    h = http_harness(make_demo_service())
    batch = h.post(
        b'[{"jsonrpc":"2.0","method":"echo","params":[1],"id":1},{"jsonrpc":"2.0","method":"x","id":2}]'
    )
    assert batch.status == 200
    assert [item.get("result", item.get("error", {}).get("code")) for item in batch.json] == [1, -32601]
    assert h.post(b'{"name": "John"}').json == {"message": "Hello from server"}
    # The newlines of a pretty-printed body are whitespace: one value, not three lines.
    pretty = h.post(b'{\n  "jsonrpc": "2.0",\n  "method": "echo",\n  "params": ["a"],\n  "id": 7\n}\n')
    assert pretty.json == {"jsonrpc": "2.0", "result": "a", "id": 7}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1', 400, -32700),
        (b"[]", 400, -32600),
        (b'{"jsonrpc":"2.0","method":"nope","id":1}', 404, -32601),
        (b'{"jsonrpc":"2.0","method":"echo","params":[1,2],"id":1}', 400, -32602),
        (b'{"jsonrpc":"2.0","method":"fail","id":1}', 500, -32603),
        (b'{"jsonrpc":"2.0","method":"refuse","id":1}', 200, 7),
        (b"[" + b",".join([b"1"] * 1001) + b"]", 413, -32003),
        (b"[" * 2000 + b"]" * 2000, 400, -32700),
        (b"", 400, -32700),  # no message at all: not a notification's 204
        (b" \r\n\t", 400, -32700),
    ],
)
def test_error_statuses(body: bytes, status: int, code: int) -> None:
    h = http_harness(slow_service()[0])
    response = h.post(body)
    assert (response.status, response.json["error"]["code"]) == (status, code)


def test_status_for() -> None:
    assert status_for(b"") == 204
    assert status_for(b'{"jsonrpc":"2.0","result":1,"id":1}\n') == 200
    assert status_for(b'{"jsonrpc":"2.0","error":{"code":-32050,"message":"x"},"id":1}\n') == 500
    assert status_for(b'{"jsonrpc":"2.0","error":{"code":-32002,"message":"x"},"id":null}\n') == 413


def test_body_over_the_limit_is_413_and_not_kept() -> None:
    """Like a line too long: -32002 naming the limit, the body dropped, the connection goes on."""
    h = http_harness(make_demo_service(), max_line_length=1000)
    big = b'{"jsonrpc":"2.0","method":"echo","params":["' + b"x" * 5000 + b'"],"id":1}'
    request = request_bytes(big)
    head, body = request.split(b"\r\n\r\n")
    assert h.send(head + b"\r\n\r\n" + body[:3000]) == []
    [pending] = h.channel._channel.requests
    assert pending.content.tell() == 0  # nothing of it kept past the limit
    [response] = h.send(body[3000:])
    assert response.status == 413
    assert response.json["error"] == {
        "code": -32002,
        "message": "Message too large",
        "data": {"max_line_length": 1000},
    }
    assert h.post(ECHO).json["result"] == 1  # same connection, next request


def test_chunked_body_over_the_limit() -> None:
    h = http_harness(make_demo_service(), max_line_length=100)
    chunk = b"x" * 80
    raw = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3
        + b"0\r\n\r\n"
    )
    [response] = h.send(raw)
    assert response.status == 413


def test_slow_request_is_cut_off() -> None:
    """A body trickled for longer than idle_timeout is a slowloris: the connection is aborted."""
    h = http_harness(make_demo_service(), idle_timeout=30)
    request = request_bytes(ECHO)
    for second in range(29):
        h.channel.dataReceived(request[second : second + 1])
        h.clock.advance(1)
    assert not h.transport.disconnecting
    h.clock.advance(1.5)
    assert h.transport.disconnecting


def test_request_timeout_is_504() -> None:
    service, running = slow_service()
    h = http_harness(service, request_timeout=5)
    h.channel.dataReceived(request_bytes(b'{"jsonrpc":"2.0","method":"slow","id":1}'))
    assert h.take() == []
    h.clock.advance(5)
    [response] = h.take()
    assert (response.status, response.json["error"]["code"]) == (504, -32000)
    assert running[0].called  # cancelled


def test_client_gone_cancels_the_handler() -> None:
    service, running = slow_service()
    h = http_harness(service)
    h.channel.dataReceived(request_bytes(b'{"jsonrpc":"2.0","method":"slow","id":1}'))
    assert len(h.factory.connections) == 1
    h.channel.connectionLost(Exception("gone"))
    assert running[0].called
    assert h.factory.connections == set()


def test_bearer_token() -> None:
    h = http_harness(make_demo_service(), auth_token="s3cret")
    unauthenticated = h.post(ECHO)
    assert (unauthenticated.status, unauthenticated.json["error"]["code"]) == (401, -32004)
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert h.post(b'{"jsonrpc":"2.0","method":"rpc.ping","id":1}').json["result"] == "pong"
    good = h.post(ECHO, headers={b"Authorization": b"Bearer s3cret"})
    assert good.json["result"] == 1


def test_wrong_bearer_token_runs_nothing() -> None:
    service, running = slow_service()
    h = http_harness(service, auth_token="s3cret")
    wrong = h.post(b'{"jsonrpc":"2.0","method":"slow","id":1}', headers={b"Authorization": b"Bearer nope"})
    assert (wrong.status, wrong.json["error"]["code"]) == (401, -32004)
    assert running == []
    assert h.factory.connections == set()


def test_observers_see_http_requests() -> None:
    h = http_harness(slow_service()[0], max_line_length=100)
    recorder = Recorder()
    h.factory.add_observer(recorder)
    h.post(ECHO)
    h.post(b'{"jsonrpc":"2.0","method":"nope","id":1}')
    h.post(b'"' + b"x" * 200 + b'"')
    assert recorder.done == [("echo", "ok"), ("<unknown>", "method_not_found")]
    assert recorder.breached == ["max_line_length"]


def test_notifications_to_the_client_are_dropped() -> None:
    """HTTP has no way back: the reply is the reply alone."""
    h = http_harness(slow_service()[0])
    response = h.post(b'{"jsonrpc":"2.0","method":"chatty","id":1}')
    assert response.json == {"jsonrpc": "2.0", "result": "done", "id": 1}


def test_draining_server_refuses_with_503() -> None:
    h = http_harness(make_demo_service())
    h.factory.drain()
    response = h.post(ECHO)
    assert (response.status, response.json["error"]["code"]) == (503, -32001)


def test_openrpc_and_explorer_files() -> None:
    h = http_harness(make_demo_service())
    [doc] = h.send(request_bytes(b"", b"/openrpc.json", method=b"GET"))
    assert {m["name"] for m in doc.json["methods"]} >= {"echo", "ping", "notify_me"}
    [page] = h.send(request_bytes(b"", b"/", method=b"GET"))
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert b'src="explorer.js"' in page.body
    assert b"http" not in page.body.replace(b"http-equiv", b"")  # nothing from the network
    [script] = h.send(request_bytes(b"", b"/explorer.js", method=b"GET"))
    assert b"rpc.discover" in script.body
    [get_rpc] = h.send(request_bytes(b"", b"/rpc", method=b"GET"))
    assert get_rpc.status == 405


def test_openrpc_needs_the_token_when_one_is_set() -> None:
    h = http_harness(make_demo_service(), auth_token="s3cret")
    [refused] = h.send(request_bytes(b"", b"/openrpc.json", method=b"GET"))
    assert refused.status == 401
    [ok] = h.send(request_bytes(b"", b"/openrpc.json", {b"Authorization": b"Bearer s3cret"}, method=b"GET"))
    assert ok.status == 200


def test_resource_takes_a_service_or_a_factory() -> None:
    resource = JSONResource(make_demo_service(), max_line_length=10)
    assert resource.factory.limits.max_line_length == 10
    assert JSONResource(resource.factory).factory is resource.factory
    with pytest.raises(TypeError):
        JSONResource(resource.factory, max_line_length=5)


# -- twistd --http options, without a process ------------------------------------


def test_http_option_repeats_and_builds_a_site_per_endpoint() -> None:
    from twisted.application.internet import StreamServerEndpointService
    from twisted.web.server import Site

    from jsonservice.tap import Options, makeService

    options = Options()
    options.parseOptions(["--port", "0", "--http", "tcp:0:interface=127.0.0.1", "--http", "unix:/tmp/x.sock"])
    assert options["http"] == ["tcp:0:interface=127.0.0.1", "unix:/tmp/x.sock"]
    top = makeService(options)
    sites = [
        child.factory
        for child in top  # type: ignore[attr-defined]
        if isinstance(child, StreamServerEndpointService) and isinstance(child.factory, Site)
    ]
    assert len(sites) == 2
    assert sites[0] is sites[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http", "nonsense:1"], "endpoint 'nonsense:1'"),
        (["--workers", "2", "--http", "tcp:0"], "--http cannot be combined with --workers"),
    ],
)
def test_http_option_usage_errors(args: list[str], message: str) -> None:
    from twisted.python import usage

    from jsonservice.tap import Options

    with pytest.raises(usage.UsageError, match=message):
        Options().parseOptions(["--port", "0", *args])


def test_http_option_without_autobahn_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from twisted.python import usage

    from jsonservice.tap import Options

    monkeypatch.setitem(sys.modules, "autobahn", None)
    with pytest.raises(usage.UsageError) as caught:
        Options().parseOptions(["--port", "0", "--http", "tcp:0"])
    assert str(caught.value) == "--http needs autobahn (the WebSocket at /ws): install jsonservice[web]"


def test_calls_to_the_client_fail_at_once_over_http() -> None:
    from jsonservice import ConnectionClosed

    service = make_demo_service()

    @service.method(context=True)
    async def ask(ctx: CallContext) -> str:
        try:
            await ctx.call("client.name")
        except ConnectionClosed as exc:
            return f"no way back: {exc}"
        return "answered?"

    h = http_harness(service)
    h.channel.dataReceived(request_bytes(b'{"jsonrpc":"2.0","method":"ask","id":1}'))
    h.clock.advance(0)
    [response] = h.take()
    assert response.json["result"].startswith("no way back: HTTP has no way back to the client")


def test_missing_autobahn_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    for name in [name for name in sys.modules if name.split(".")[0] == "autobahn"] + ["autobahn"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "jsonservice.ws", raising=False)
    with pytest.raises(
        ImportError, match=r"^WebSocket support needs autobahn: pip install 'jsonservice\[web\]'$"
    ):
        importlib.import_module("jsonservice.ws")


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [
        (None, None, 200),  # curl, programs
        (b"http://127.0.0.1", None, 200),  # the site's own page (Host: 127.0.0.1)
        (b"https://evil.example", None, 403),  # any web page the user visits: refused
        (b"null", None, 403),
        (b"https://app.example", ["https://app.example"], 200),
        (b"https://evil.example", ["*"], 200),
    ],
)
def test_cross_origin_posts_are_refused(origin: bytes | None, allowed: list[str] | None, status: int) -> None:
    """A cross-site POST needs no preflight: without this, any page could call the service."""
    h = http_harness(make_demo_service())
    if allowed is not None:
        h.site.resource.putChild(b"rpc", JSONResource(h.factory, allowed_origins=allowed))
    headers = {b"Origin": origin} if origin is not None else {}
    response = h.post(ECHO, headers=headers)
    assert response.status == status
    if status == 403:
        assert response.json["error"]["code"] == -32600


class NeverReadTransport(StringTransport):
    """What a TCP transport reports when its peer reads nothing: every byte written is unsent."""

    offset = 0
    _tempDataLen = 0
    aborted = False

    @property
    def dataBuffer(self) -> bytes:
        return self.io.getvalue()

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def test_pipelined_requests_wait_while_replies_are_unread() -> None:
    """
    A peer pipelining requests for big replies and reading none: each next
    request waits until the output is under max_unsent (twisted.web would run
    them all and queue every reply), and after write_stall_timeout the
    connection is aborted.
    """
    service = make_demo_service()
    ran: list[int] = []

    @service.method
    def big(n: int) -> str:
        ran.append(n)
        return "x" * n

    clock = Clock()
    factory = JSONServerFactory(service, clock=clock, max_unsent=10_000, write_stall_timeout=10)
    h = HTTPHarness(make_site(factory), factory, clock, NeverReadTransport(HOST, PEER))
    body = b'{"jsonrpc":"2.0","method":"big","params":[20000],"id":1}'
    h.channel.dataReceived(request_bytes(body) * 20)
    assert ran == [20000]  # the first reply is over max_unsent: the rest wait
    clock.advance(5)
    assert ran == [20000]
    first = h.take()  # the peer reads: room again
    assert len(first) == 1
    assert first[0].json["result"] == "x" * 20000
    clock.advance(0.1)
    assert ran == [20000, 20000]
    clock.advance(11)  # never read again: aborted after write_stall_timeout
    assert h.transport.aborted
    assert ran == [20000, 20000]


def test_idle_http_connections_count_toward_max_connections() -> None:
    """
    Every HTTP connection counts once, idle keep-alive ones too (uncounted,
    they could use up the file descriptors): past the cap a new one gets 503
    with -32001, and a line connection is refused as well.
    """
    clock = Clock()
    factory = JSONServerFactory(make_demo_service(), clock=clock, max_connections=3)
    site = make_site(factory)
    site.doStart()
    channels = []
    for _ in range(3):
        transport = StringTransport(HOST, PEER)
        channel = site.buildProtocol(PEER)
        channel.makeConnection(transport)
        channels.append((channel, transport))
    assert factory.http_channels == 3
    # A request on a counted connection is not refused, nor counted again.
    channel, transport = channels[0]
    channel.dataReceived(request_bytes(ECHO))
    assert b'"result":1' in transport.value()
    refused = StringTransport(HOST, PEER)
    site.buildProtocol(PEER).makeConnection(refused)
    assert refused.value() == b""  # it answers once the client has spoken
    assert factory.buildProtocol(PEER).__class__.__name__ == "_Busy"
    channel.connectionLost(Failure(ConnectionDone()))
    assert factory.http_channels == 2
    assert factory.buildProtocol(PEER).__class__.__name__ == "JSONProtocol"
    site.doStop()


def test_busy_http_answers_503_then_closes() -> None:
    clock = Clock()
    factory = JSONServerFactory(make_demo_service(), clock=clock, max_connections=1)
    site = make_site(factory)
    site.doStart()
    site.buildProtocol(PEER).makeConnection(StringTransport(HOST, PEER))
    busy = site.buildProtocol(PEER)
    transport = StringTransport(HOST, PEER)
    busy.makeConnection(transport)
    busy.dataReceived(request_bytes(ECHO))
    [response] = parse_responses(transport.value())
    assert (response.status, response.json["error"]["code"]) == (503, -32001)
    assert transport.disconnecting
    silent = site.buildProtocol(PEER)
    quiet = StringTransport(HOST, PEER)
    silent.makeConnection(quiet)
    clock.advance(1)
    assert quiet.disconnecting  # said nothing: aborted
    site.doStop()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"127.0.0.1:8081", 200),
        (b"localhost:8081", 200),
        (b"[::1]:8081", 200),
        (b"evil.example:8081", 403),  # a page whose name was re-pointed at 127.0.0.1
    ],
)
def test_dns_rebinding_is_refused_on_loopback(host: bytes, status: int) -> None:
    """
    DNS rebinding: an attacker's page re-points its own name at 127.0.0.1,
    so its Origin and the Host its browser sends agree.  On a loopback
    listener the page's name must be a loopback one.
    """
    h = http_harness(make_demo_service())
    origin = b"http://" + host
    raw = request_bytes(ECHO, headers={b"Origin": origin}).replace(b"Host: 127.0.0.1", b"Host: " + host)
    [response] = h.send(raw)
    assert response.status == status


def test_requests_count_toward_max_connections_on_a_site_without_harden_site() -> None:
    """Mounted in a plain twisted.web Site, each running request still counts toward the cap."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    service, running = slow_service()
    clock = Clock()
    factory = JSONServerFactory(service, clock=clock, max_connections=1)
    root = Resource()
    root.putChild(b"rpc", JSONResource(factory))
    site = Site(root)
    h = HTTPHarness(site, factory, clock)
    other = HTTPHarness(site, factory, clock)
    assert h.send(request_bytes(b'{"jsonrpc":"2.0","method":"slow","id":1}')) == []
    [refused] = other.send(request_bytes(ECHO))
    assert (refused.status, refused.json["error"]["code"]) == (503, -32001)
    running[0].callback("done")
    [answered] = h.take()
    assert answered.json["result"] == "done"
    assert other.post(ECHO).json["result"] == 1
