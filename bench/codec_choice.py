"""
``python -m bench.codec_choice``: orjson or msgspec for the codec?

Measures, in one process and without sockets, for typical JSON-RPC lines
(a request with small positional params, a response, requests carrying a
1 KB and a 64 KB payload, a batch of 10 requests):

- ``decode``: one line to Python values;
- ``encode``: the same values back to one line (with its newline);
- ``echo``: the server's step: decode a request line, build the reply,
  encode the reply line (a response line is only decoded: nothing answers it).

for:

- ``orjson``: ``orjson.loads`` / ``orjson.dumps`` (dicts and lists);
- ``codec``: ``jsonservice.codec`` (orjson plus the strictness checks);
- ``msgspec``: ``msgspec.json`` into ``Any`` (dicts and lists);
- ``m.Struct``: ``msgspec.json`` into ``Request`` structs, falling back to
  ``Any`` for a line that is not a request (a response here);
  replies are ``Response`` structs.

Each figure is the median of several rounds, in microseconds per line.  A
second table checks msgspec against the codec's strictness rules (DESIGN.md
section 2), next to what ``jsonservice.codec`` does.  msgspec is needed:
``pip install msgspec``.  This is a measurement, not a test.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from jsonservice import codec
from jsonservice.errors import ParseError

ROUNDS = 7
TARGET_SECONDS = 0.05  # per round
LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


# --- the lines ------------------------------------------------------------------


def _payload(size: int) -> list[dict[str, Any]]:
    """A list of small records, about C{size} bytes of JSON."""
    items: list[dict[str, Any]] = []
    while len(orjson.dumps(items)) < size:
        i = len(items)
        items.append({"id": i, "name": f"item {i}", "price": 9.5 + i, "tags": ["a", "bc"], "ok": i % 2 == 0})
    return items


def _request(params: Any, ident: int = 1, method: str = "echo") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": ident}


LINES: dict[str, bytes] = {
    "request": orjson.dumps(_request([42, 23], method="subtract")),
    "response": orjson.dumps({"jsonrpc": "2.0", "result": 19, "id": 1}),
    "1 KB payload": orjson.dumps(_request([_payload(1024)])),
    "64 KB payload": orjson.dumps(_request([_payload(64 * 1024)])),
    "batch of 10": orjson.dumps([_request([i, "x"], i) for i in range(10)]),
}


# --- the contenders ------------------------------------------------------------------

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Request(msgspec.Struct, omit_defaults=True):
    """A JSON-RPC request; UNSET keeps a notification apart from C{"id": null}."""

    jsonrpc: str
    method: str
    params: list[Any] | dict[str, Any] | Unset = UNSET
    id: int | str | Unset | None = UNSET


class Response(msgspec.Struct, omit_defaults=True):
    """A JSON-RPC response (result or error)."""

    jsonrpc: str
    id: int | str | None
    result: Any = UNSET
    error: Any = UNSET


_any_decoder = msgspec.json.Decoder()
_struct_decoder = msgspec.json.Decoder(Request | list[Request])
_encoder = msgspec.json.Encoder()


def _reply_dict(request: Any) -> Any:
    params = request["params"]
    result = params[0] if isinstance(params, list) else params
    return {"jsonrpc": "2.0", "result": result, "id": request["id"]}


def _reply_dicts(message: Any) -> Any:
    if isinstance(message, list):
        return [_reply_dict(item) for item in message]
    return _reply_dict(message) if "method" in message else None


def _reply_struct(request: Request) -> Response:
    params = request.params
    result = params[0] if isinstance(params, list) else params
    return Response("2.0", None if isinstance(request.id, Unset) else request.id, result=result)


def _struct_decode(line: bytes) -> Any:
    try:
        return _struct_decoder.decode(line)
    except msgspec.ValidationError:
        return _any_decoder.decode(line)  # valid JSON, not a request


def _struct_replies(message: Any) -> Any:
    if isinstance(message, Request):
        return _reply_struct(message)
    if isinstance(message, list) and message and isinstance(message[0], Request):
        return [_reply_struct(item) for item in message]
    return None


def _msgspec_line(value: Any) -> bytes:
    return _encoder.encode(value) + b"\n"  # no append-newline option: one copy


_buffer = bytearray()


def _msgspec_into(value: Any) -> bytearray:
    _encoder.encode_into(value, _buffer)
    _buffer.extend(b"\n")
    return _buffer


def _echo(decode: Callable[[bytes], Any], reply: Callable[[Any], Any], encode: Callable[[Any], Any]) -> Any:
    def step(line: bytes) -> Any:
        answer = reply(decode(line))
        return None if answer is None else encode(answer)

    return step


#: name -> (decode, encode, echo step)
CONTENDERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], Any], Callable[[bytes], Any]]] = {
    "orjson": (
        orjson.loads,
        lambda v: orjson.dumps(v, option=LINE),
        _echo(orjson.loads, _reply_dicts, lambda v: orjson.dumps(v, option=LINE)),
    ),
    "codec": (codec.loads, codec.dumps_line, _echo(codec.loads, _reply_dicts, codec.dumps_line)),
    "msgspec": (_any_decoder.decode, _msgspec_line, _echo(_any_decoder.decode, _reply_dicts, _msgspec_line)),
    "msgspec into": (
        _any_decoder.decode,
        _msgspec_into,
        _echo(_any_decoder.decode, _reply_dicts, _msgspec_into),
    ),
    "m.Struct": (_struct_decode, _msgspec_line, _echo(_struct_decode, _struct_replies, _msgspec_line)),
}


# --- measuring ---------------------------------------------------------------------


def _loops(function: Callable[[Any], Any], argument: Any) -> int:
    """How many calls take about TARGET_SECONDS."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            function(argument)
        if time.perf_counter() - start > TARGET_SECONDS / 4:
            return loops * 4
        loops *= 2


def _per_call(calls: dict[str, tuple[Callable[[Any], Any], Any]]) -> dict[str, float]:
    """
    Median over rounds of microseconds per call, for each contender; the
    contenders take turns within each round, so a busy moment hits them all.
    """
    loops = {name: _loops(function, argument) for name, (function, argument) in calls.items()}
    results: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, (function, argument) in calls.items():
            start = time.perf_counter()
            for _ in range(loops[name]):
                function(argument)
            results[name].append((time.perf_counter() - start) / loops[name] * 1e6)
    return {name: statistics.median(times) for name, times in results.items()}


def _same_values(name: str, line: bytes) -> None:
    """Every contender reads and writes the line the same way (fair comparison)."""
    expected = orjson.loads(line)
    for contender, (decode, encode, _) in CONTENDERS.items():
        value = decode(line)
        if contender == "m.Struct":
            value = msgspec.to_builtins(value)
        assert value == expected, (name, contender)
        assert bytes(encode(expected)) == line + b"\n", (name, contender)


def measure() -> list[tuple[str, str, dict[str, float]]]:
    rows = []
    for name, line in LINES.items():
        _same_values(name, line)
        value = orjson.loads(line)
        for op in ("decode", "encode", "echo"):
            if op == "echo" and name == "response":
                continue  # nothing answers a response
            calls: dict[str, tuple[Callable[[Any], Any], Any]] = {}
            for contender, (decode, encode, echo) in CONTENDERS.items():
                if op == "encode":
                    argument = value
                    if contender == "m.Struct":  # it would hold structs
                        structs = Response if name == "response" else Request | list[Request]
                        argument = msgspec.convert(value, structs)
                    calls[contender] = (encode, argument)
                else:
                    calls[contender] = (decode if op == "decode" else echo, line)
            rows.append((name, op, _per_call(calls)))
    return rows


# --- strictness ---------------------------------------------------------------------

STRICTNESS: list[tuple[str, bytes]] = [
    ("NaN literal", b"[NaN]"),
    ("1e400 (overflow)", b"1e400"),
    ("1e-400 (underflow)", b"1e-400"),
    ("invalid UTF-8", b'"\xff"'),
    ("UTF-8 surrogate bytes", b'"\xed\xa0\x80"'),
    ("lone \\ud800", b'"\\ud800"'),
    ("lone \\udc00", b'["\\udc00"]'),
    ("depth 1024", b"[" * 1024 + b"]" * 1024),
    ("depth 1025", b"[" * 1025 + b"]" * 1025),
    ("depth 100000", b"[" * 100_000 + b"]" * 100_000),
    ("2**64 exact", b"18446744073709551616"),
    ("4300-digit int", b"7" * 4300),
    ("5000-digit int", b"1" * 5000),
    ("duplicate keys", b'{"a":1,"a":2}'),
    ("trailing garbage", b"[1] x"),
    ("error position", '["é", x]'.encode()),
]


def _outcome(decode: Callable[[bytes], Any], data: bytes) -> str:
    try:
        value = decode(data)
    except (ParseError, msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        text = exc.data if isinstance(exc, ParseError) else str(exc)
        return f"{type(exc).__name__}: {text}"[:72]
    shown = repr(value) if len(data) < 30 else f"{type(value).__name__} ok"
    return f"value {shown}"[:72]


def _encode_outcome(encode: Callable[[Any], Any], value: Any) -> str:
    try:
        return f"wrote {bytes(encode(value))!r}"[:72]
    except (ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"[:72]


def strictness() -> list[tuple[str, str, str]]:
    rows = [
        (name, _outcome(codec.loads, data), _outcome(_any_decoder.decode, data)) for name, data in STRICTNESS
    ]
    for name, value in [("encode NaN", [float("nan")]), ("encode a set", {1}), ("encode 10**5000", 10**5000)]:
        rows.append((name, _encode_outcome(codec.dumps, value), _encode_outcome(_encoder.encode, value)))
    return rows


def main() -> None:
    print(f"Python {sys.version.split()[0]}, orjson {orjson.__version__}, msgspec {msgspec.__version__}")
    print("microseconds per line (median of rounds); lower is better\n")
    names = list(CONTENDERS)
    print(f"{'line':15s} {'step':7s} " + " ".join(f"{n:>12s}" for n in names) + "   msgspec/orjson")
    for name, op, figures in measure():
        ratio = figures["msgspec"] / figures["orjson"]
        cells = " ".join(f"{figures[n]:12.2f}" for n in names)
        print(f"{name:15s} {op:7s} {cells}   {ratio:6.2f}")
    print(f"\n{'strictness':24s} {'jsonservice.codec':72s} msgspec.json (Any)")
    for name, ours, theirs in strictness():
        print(f"{name:24s} {ours:72s} {theirs}")


if __name__ == "__main__":
    main()
