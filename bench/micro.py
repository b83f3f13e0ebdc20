"""
``python -m bench.micro``: where the time of one pipelined request goes, in
one process, without sockets.

Each figure is nanoseconds per message, the median of several rounds, for
a read of 100 pipelined ``echo`` requests fed to ``dataReceived`` on a
transport that discards its output:

- ``bare LineReceiver echo``: the floor of the socket benchmark (no JSON);
- ``orjson loads + dumps only``: a loop that decodes each line and encodes
  a reply with orjson and nothing else, the floor of *any* JSON server
  written in Python;
- ``jsonservice server``: ``JSONProtocol`` with the demo service;
- ``jsonservice client``: ``call()`` 100 times, then feed the 100 replies.

The socket benchmark's ratio to the bare echo is bounded by these: the
JSON work alone costs several times the bare echo's whole per-message cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver

from jsonservice.demo import make_demo_service
from jsonservice.protocol import JSONProtocol

N = 100
ROUNDS = 7
READS = 500
OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


class _Discard(StringTransport):
    def write(self, data: bytes) -> None:
        pass


class _Echo(LineReceiver):
    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        self.transport.write(line + b"\n")  # type: ignore[union-attr]


def _chunk(start: int) -> bytes:
    return b"".join(
        b'{"jsonrpc":"2.0","method":"echo","params":["hello world"],"id":%d}\n' % (start + i)
        for i in range(N)
    )


def _per_message(run: Callable[[int], None]) -> float:
    rounds = []
    for r in range(ROUNDS):
        started = time.perf_counter()
        for i in range(READS):
            run((r * READS + i) * N + 1_000_000)
        rounds.append((time.perf_counter() - started) / (READS * N) * 1e9)
    return statistics.median(rounds)


def measure() -> dict[str, float]:
    """Nanoseconds per message for each of the four loops."""
    chunk = _chunk(1_000_000)
    lines = chunk.split(b"\n")[:-1]

    echo = _Echo()
    echo.makeConnection(_Discard())

    def orjson_only(_: int) -> None:
        out = []
        for line in lines:
            value = orjson.loads(line)
            out.append(
                orjson.dumps(
                    {"jsonrpc": "2.0", "result": value["params"][0], "id": value["id"]}, option=OPTIONS
                )
            )
        b"".join(out)

    server = JSONProtocol(make_demo_service(), None, Clock())
    server.makeConnection(_Discard())
    client = JSONProtocol(None, None, Clock())
    client.makeConnection(_Discard())

    def client_round(start: int) -> None:
        got: list[Any] = []
        for _ in range(N):
            client.call("echo", "hello world").addCallback(got.append)
        first = client._core._next_id - N
        client.dataReceived(
            b"".join(b'{"jsonrpc":"2.0","result":"hello world","id":%d}\n' % (first + i) for i in range(N))
        )
        assert len(got) == N

    return {
        "bare LineReceiver echo": _per_message(lambda _: echo.dataReceived(chunk)),
        "orjson loads + dumps only": _per_message(orjson_only),
        "jsonservice server": _per_message(lambda _: server.dataReceived(chunk)),
        "jsonservice client call()": _per_message(client_round),
    }


def main() -> None:
    """Print the figures (ns per message) and their ratios to the bare echo."""
    description = "Where the time of one pipelined request goes, in one process, without sockets."
    argparse.ArgumentParser(prog="python -m bench.micro", description=description).parse_args()
    figures = measure()
    floor = figures["bare LineReceiver echo"]
    for name, ns in figures.items():
        print(f"{name:28s} {ns:8.0f} ns/message  {ns / floor:5.2f}x the bare echo")
    print(json.dumps({name: round(ns) for name, ns in figures.items()}))


if __name__ == "__main__":
    main()
