"""
The JSON-RPC conformance cases — every example of the specification
(section 7, L{spec_examples}) and the limits — over the three transports,
parametrized: the line protocol (a L{StringTransport}), HTTP (the C{--http}
site over a L{StringTransport}) and WebSocket (real loopback, the
C{websockets} library as the client).  Every transport must give the same
answers, since all go through the one connection core.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from websockets.sync.client import connect as ws_connect

try:
    from tests.memory_helpers import parse_lines, server_on_string_transport
    from tests.spec_examples import EXAMPLES, NO_RESPONSE, SpecExample
    from tests.test_spec_protocol import check_reply, spec_service
    from tests.web_helpers import STEP, WebServer, http_harness, within
except ImportError:  # pragma: no cover - tests/ on sys.path
    from memory_helpers import parse_lines, server_on_string_transport  # type: ignore[no-redef]
    from spec_examples import EXAMPLES, NO_RESPONSE, SpecExample  # type: ignore[no-redef]
    from test_spec_protocol import check_reply, spec_service  # type: ignore[no-redef]
    from web_helpers import STEP, WebServer, http_harness, within  # type: ignore[no-redef]

#: Limits small enough to breach in a test; the spec examples fit in them.
LIMITS: dict[str, Any] = {"max_line_length": 4096, "max_batch": 10, "max_depth": 64}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": None}


#: Beyond the spec's examples: the limits and the strictness, the same everywhere.
LIMIT_CASES = (
    SpecExample(
        "too_long", "over max_line_length", b'"' + b"x" * 5000 + b'"\n', _error(-32002, "Message too large")
    ),
    SpecExample(
        "batch_too_large",
        "over max_batch",
        b"[" + b",".join([b'{"jsonrpc":"2.0","method":"sum","id":1}'] * 11) + b"]\n",
        _error(-32003, "Batch too large"),
    ),
    SpecExample("too_deep", "over max_depth", b"[" * 100 + b"]" * 100 + b"\n", _error(-32700, "Parse error")),
    SpecExample(
        "not_utf8",
        "invalid UTF-8",
        b'{"jsonrpc":"2.0","method":"\xff","id":1}\n',
        _error(-32700, "Parse error"),
    ),
    SpecExample(
        "nan",
        "NaN is not JSON",
        b'{"jsonrpc":"2.0","method":"sum","params":[NaN],"id":1}\n',
        _error(-32700, "Parse error"),
    ),
    SpecExample(
        "pretty_printed",
        "newlines inside a message are whitespace",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}\n',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
)

CASES = EXAMPLES + LIMIT_CASES
IDS = [case.name for case in CASES]
#: Sent after a case that gets no reply, to prove none came before it.
MARKER = b'{"jsonrpc":"2.0","method":"rpc.ping","id":"marker"}'


def body_of(case: SpecExample) -> bytes:
    """The message itself: without the line end (and pretty-printed where the case says)."""
    data = case.request.rstrip(b"\n")
    if case.name == "pretty_printed":
        data = json.dumps(json.loads(data), indent=2).encode()
        assert b"\n" in data
    return data


def over_lines(case: SpecExample) -> bytes:
    proto, transport, _ = server_on_string_transport(spec_service(), **LIMITS)
    proto.dataReceived(case.request)  # (a line cannot hold a raw newline: pretty_printed goes compact)
    return transport.value()


def over_http(case: SpecExample) -> bytes:
    h = http_harness(spec_service(), **LIMITS)
    response = h.post(body_of(case))
    if case.response is NO_RESPONSE:
        assert (response.status, response.body) == (204, b"")
    else:
        # The status follows the conventions: a single error is never 2xx here.
        single_error = isinstance(case.response, dict) and "error" in case.response
        assert (response.status >= 400) is single_error, (case.name, response.status)
        assert response.headers["content-type"] == "application/json"
    h.close()
    return response.body


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("transport", ["line", "http"])
def test_in_memory_transports(transport: str, case: SpecExample) -> None:
    written = over_lines(case) if transport == "line" else over_http(case)
    check_reply(case, written)


@pytest_twisted.ensureDeferred
async def test_websocket_transport() -> None:
    """Every case, each on a fresh WebSocket connection of a real server."""
    server = await WebServer(spec_service(), **LIMITS).start()

    def client(url: str) -> dict[str, bytes]:
        written: dict[str, bytes] = {}
        for case in CASES:
            with ws_connect(url) as ws:
                data = body_of(case)
                try:
                    ws.send(data.decode("utf-8"))  # a text message, as browsers send
                except UnicodeDecodeError:
                    ws.send(data)  # binary: a text message must be UTF-8 (RFC 6455)
                ws.send(MARKER.decode())
                replies = []
                while True:
                    message = ws.recv(timeout=STEP)
                    if json.loads(message) == {"jsonrpc": "2.0", "result": "pong", "id": "marker"}:
                        break
                    replies.append(message.encode() if isinstance(message, str) else message)
                written[case.name] = b"".join(reply + b"\n" for reply in replies)
        return written

    try:
        written = await within(deferToThread(client, server.url()), 30)
    finally:
        await server.stop()
    for case in CASES:
        check_reply(case, written[case.name])
        assert len(parse_lines(written[case.name])) <= 1, case.name
