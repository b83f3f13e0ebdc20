"""
``python -m bench.client_meter``: the client library's cost per ``call()``,
deterministically, in one process without sockets.

It drives a client ``JSONProtocol`` built by ``JSONClientFactory`` (as
``jsonservice.connect`` builds it) over a memory transport that discards
what is written, exactly as ``bench/clients.py`` drives a real connection:
100 ``call("echo", payload)`` outstanding, the 100 matching responses fed
back in one ``dataReceived``, and each callback issuing the next call.

The responses are built before the loop, for ``--most`` calls whatever
``--calls`` is, so that a run with ``--calls 0`` costs the same start-up
and only the calls differ.  Instructions per call::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=a.out \\
        python -m bench.client_meter --calls 4000
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=b.out \\
        python -m bench.client_meter --calls 0

then (total of ``a.out`` - total of ``b.out``) / 4000; ``--callgrind``
does all that and prints the figure.  ``--profile`` prints a cProfile
summary of the loop instead, ``--time`` nanoseconds per call.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

OUTSTANDING = 100


class _Discard(StringTransport):
    def write(self, data: bytes) -> None:
        pass


def _responses(most: int, payload: str) -> list[bytes]:
    """The reads the server would send: ids 1..most, OUTSTANDING per read."""
    import orjson

    result = orjson.dumps(payload)
    return [
        b"".join(b'{"jsonrpc":"2.0","result":%s,"id":%d}\n' % (result, first + i) for i in range(OUTSTANDING))
        for first in range(1, most + 1, OUTSTANDING)
    ]


def prepare(calls: int, most: int) -> Any:
    """Build the client and its responses; return the loop to run (issuing C{calls} calls)."""
    from bench.messages import SMALL, echo_payload
    from jsonservice.client import JSONClientFactory

    payload = echo_payload(SMALL)
    reads = _responses(most, payload)
    factory = JSONClientFactory(clock=Clock())
    proto: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7000))
    proto.makeConnection(_Discard())  # type: ignore[no-untyped-call]
    state = {"issued": 0, "done": 0}

    def completed(_result: object) -> None:
        state["done"] += 1
        if state["issued"] < calls:
            state["issued"] += 1
            proto.call("echo", payload).addCallbacks(completed, failed)

    def failed(failure: Any) -> None:
        raise SystemExit(f"a call failed: {failure.getErrorMessage()}")

    def run() -> None:
        for _ in range(min(OUTSTANDING, calls)):
            state["issued"] += 1
            proto.call("echo", payload).addCallbacks(completed, failed)
        for read in reads[: (calls + OUTSTANDING - 1) // OUTSTANDING]:
            proto.dataReceived(read)
        if state["done"] != calls:
            raise SystemExit(f"{state['done']} of {calls} calls completed")

    return run


def _callgrind_total(calls: int, most: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.client_meter",
                "--calls",
                str(calls),
                "--most",
                str(most),
            ],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stderr=subprocess.DEVNULL,
        )
        with open(out) as f:
            text = f.read()
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if match is None:
        raise SystemExit("no total in the callgrind output")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> None:
    """Run the loop once (for callgrind), or measure it (see the options)."""
    description = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.client_meter", description=description)
    parser.add_argument("--calls", type=int, default=4000, help="calls to make (a multiple of 100)")
    parser.add_argument("--most", type=int, default=4000, help="responses to build (>= --calls)")
    parser.add_argument("--callgrind", action="store_true", help="print instructions per call")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary of the loop")
    parser.add_argument("--time", action="store_true", help="print nanoseconds per call (best of 7)")
    args = parser.parse_args(argv)
    most = max(args.most, args.calls)
    if args.callgrind:
        full = _callgrind_total(args.calls, most)
        empty = _callgrind_total(0, most)
        print(f"{(full - empty) / args.calls:,.0f} instructions per call ({args.calls} calls)")
        return
    if args.time:
        best = min(_timed(args.calls, most) for _ in range(7))
        print(f"{best:,.0f} ns per call")
        return
    run = prepare(args.calls, most)
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(run)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    run()


def _timed(calls: int, most: int) -> float:
    run = prepare(calls, most)
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / calls * 1e9


if __name__ == "__main__":
    main()
