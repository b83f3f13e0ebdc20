"""Pre-encoded requests and reply checks shared by the load generator and the harness.

Every request of one workload has the same length in bytes: ids are fixed-width, so a
window of ``k`` requests is one slice of a pre-built buffer and the load generator never
encodes anything while it measures.

Two wire protocols are spoken:

* ``line`` — newline-delimited JSON (JSON-RPC 2.0 or plain messages); replies are counted by
  newline.
* ``amp`` — Twisted AMP boxes; every reply to a given workload has the same length (fixed-width
  ``_ask`` tags), so replies are counted as ``received bytes // reply length``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

#: Message kinds a workload can send.
KINDS = ("echo", "plain", "batch", "ping")
#: Items in one batch line.
BATCH_ITEMS = 100
#: Line size of the default echo request (bytes, newline included).
SMALL = 64
#: The classic plain message, and the demo service's answer to it.
PLAIN_MESSAGE: dict[str, Any] = {"name": "John", "age": 30, "city": "New York"}
PLAIN_REPLY: dict[str, Any] = {"message": "Hello from server"}

_ID_BASE = 1_000_000  # 7-digit ids: fixed width for up to 9,000,000 requests


@dataclass(frozen=True)
class MessageSpec:
    """What one workload sends: the kind of message, its size and the wire protocol."""

    kind: str
    size: int = SMALL
    proto: str = "line"

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-able form (to hand to a load-generator process)."""
        return {"kind": self.kind, "size": self.size, "proto": self.proto}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageSpec:
        """Inverse of :meth:`to_json`."""
        return cls(kind=str(data["kind"]), size=int(data["size"]), proto=str(data["proto"]))


def _echo_object(index: int, size: int) -> tuple[dict[str, Any], str]:
    """Return a JSON-RPC echo request whose compact encoding plus newline is ``size`` bytes."""
    ident = _ID_BASE + index
    envelope = len(_compact({"jsonrpc": "2.0", "method": "echo", "params": [""], "id": ident})) + 1
    pad = max(1, size - envelope)
    payload = "x" * pad
    return {"jsonrpc": "2.0", "method": "echo", "params": [payload], "id": ident}, payload


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def echo_payload(size: int) -> str:
    """Return the string an echo request of line size ``size`` carries."""
    return _echo_object(0, size)[1]


def amp_box(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """Serialise one AMP box (16-bit big-endian length-prefixed keys and values)."""
    out = bytearray()
    for key, value in pairs:
        out += struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value
    out += b"\x00\x00"
    return bytes(out)


def parse_amp_box(data: bytes) -> tuple[dict[bytes, bytes], int] | None:
    """Parse one AMP box from the start of ``data``: ``(box, bytes used)`` or ``None`` if partial."""
    box: dict[bytes, bytes] = {}
    pos = 0
    while True:
        if pos + 2 > len(data):
            return None
        (klen,) = struct.unpack_from("!H", data, pos)
        pos += 2
        if klen == 0:
            return box, pos
        if pos + klen + 2 > len(data):
            return None
        key = data[pos : pos + klen]
        pos += klen
        (vlen,) = struct.unpack_from("!H", data, pos)
        pos += 2
        if pos + vlen > len(data):
            return None
        box[key] = data[pos : pos + vlen]
        pos += vlen


def build_request(spec: MessageSpec, index: int) -> bytes:
    """Return request number ``index`` of a workload, fully framed."""
    if spec.proto == "amp":
        tag = str(_ID_BASE + index).encode()
        if spec.kind == "echo":
            payload = echo_payload(spec.size).encode()
            return amp_box([(b"_ask", tag), (b"_command", b"Echo"), (b"value", payload)])
        if spec.kind == "ping":
            return amp_box([(b"_ask", tag), (b"_command", b"Ping")])
        raise ValueError(f"AMP has no {spec.kind!r} workload")
    if spec.kind == "echo":
        return _compact(_echo_object(index, spec.size)[0]) + b"\n"
    if spec.kind == "ping":
        return _compact({"jsonrpc": "2.0", "method": "ping", "id": _ID_BASE + index}) + b"\n"
    if spec.kind == "plain":
        return _compact(PLAIN_MESSAGE) + b"\n"
    if spec.kind == "batch":
        items = [_echo_object(index * BATCH_ITEMS + j, SMALL)[0] for j in range(BATCH_ITEMS)]
        return _compact(items) + b"\n"
    raise ValueError(f"unknown message kind {spec.kind!r}")


def build_ring(spec: MessageSpec, window: int) -> tuple[bytes, int, int]:
    """Build a ring of distinct, equal-length requests, stored twice in a row.

    Returns ``(buffer, count, length)``: any run of up to ``count`` consecutive requests
    starting at ring position ``i`` is ``buffer[i * length : (i + k) * length]``.
    """
    first = build_request(spec, 0)
    length = len(first)
    count = max(2 * window, min(1024, (4 << 20) // length))
    requests = [build_request(spec, i) for i in range(count)]
    if any(len(r) != length for r in requests):
        raise AssertionError("requests of one workload must have equal lengths")
    ring = b"".join(requests)
    return ring + ring, count, length


def units_per_reply(spec: MessageSpec) -> int:
    """How many requests one reply unit stands for (a batch reply answers 100)."""
    return BATCH_ITEMS if spec.kind == "batch" else 1


def check_reply(server: str, spec: MessageSpec, request: bytes, reply: bytes) -> str | None:
    """Check one reply to ``request``; return ``None`` if right, else what is wrong."""
    if server == "bare":
        return None if reply == request else f"bare echo changed the line: {reply[:80]!r}"
    if spec.proto == "amp":
        parsed = parse_amp_box(reply)
        sent = parse_amp_box(request)
        if parsed is None or sent is None:
            return f"unparseable AMP reply {reply[:80]!r}"
        box, sbox = parsed[0], sent[0]
        if box.get(b"_answer") != sbox.get(b"_ask"):
            return f"AMP reply for the wrong tag: {reply[:80]!r}"
        want = sbox.get(b"value", b"pong") if spec.kind == "echo" else b"pong"
        return None if box.get(b"value") == want else f"wrong AMP value: {reply[:80]!r}"
    try:
        got = json.loads(reply)
    except ValueError:
        return f"reply is not JSON: {reply[:80]!r}"
    sent_value = json.loads(request)
    if spec.kind == "plain":
        return None if got == PLAIN_REPLY else f"unexpected plain reply {reply[:80]!r}"
    if spec.kind == "batch":
        if not isinstance(got, list) or len(got) != len(sent_value):
            return f"batch reply of the wrong shape: {reply[:80]!r}"
        by_id = {item.get("id"): item for item in got if isinstance(item, dict)}
        for item in sent_value:
            answer = by_id.get(item["id"])
            if answer is None or answer.get("result") != item["params"][0]:
                return f"batch item {item['id']} answered wrongly: {answer!r:.80}"
        return None
    result = sent_value["params"][0] if spec.kind == "echo" else "pong"
    if not isinstance(got, dict) or got.get("id") != sent_value["id"] or got.get("result") != result:
        return f"wrong JSON-RPC reply {reply[:80]!r}"
    if got.get("jsonrpc") != "2.0":
        return f"reply lacks jsonrpc 2.0: {reply[:80]!r}"
    return None
