"""Client-library workloads, each run as its own process (a reactor runs once per process).

``python -m bench.clients KIND --port N [--outstanding 100] [--warmup S] [--duration S]``
prints one JSON line: completed calls in the window, rate, and this process's CPU use.

Kinds:

* ``jsonservice`` — ``jsonservice.connect(reactor, "tcp:127.0.0.1:N")`` then ``proto.call("echo", x)``
  with ``outstanding`` calls kept pending.
* ``amp`` — Twisted AMP ``callRemote(Echo, value=x)`` the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.loadgen import CpuWindow
from bench.messages import SMALL, echo_payload
from bench.servers import raise_nofile_limit


def _drive(
    start_call: Callable[[Any], Any],
    connect: Callable[[Any], Any],
    outstanding: int,
    warmup: float,
    duration: float,
    server_pid: int,
) -> dict[str, Any]:
    """Keep ``outstanding`` calls pending on one connection; count completions in the window."""
    from twisted.internet import reactor as _reactor
    from twisted.python.failure import Failure

    reactor: Any = _reactor

    state: dict[str, Any] = {"done": 0, "errors": [], "running": True}
    window: dict[str, float] = {}
    cpu: dict[str, Any] = {}

    def completed(_result: object, proto: Any) -> None:
        state["done"] += 1
        if state["running"]:
            start_call(proto).addCallbacks(completed, failed, callbackArgs=(proto,))

    def failed(failure: Failure) -> None:
        if len(state["errors"]) < 5:
            state["errors"].append(failure.getErrorMessage())
        if state["running"]:
            state["running"] = False
            reactor.callLater(0, reactor.stop)

    def begin() -> None:
        window["t0"] = time.perf_counter()
        cpu["window"] = CpuWindow(server_pid)
        window["n0"] = state["done"]

    def end() -> None:
        window["t1"] = time.perf_counter()
        cpu.update(cpu.pop("window").finish())
        window["n1"] = state["done"]
        state["running"] = False
        reactor.callLater(0.2, reactor.stop)

    def connected(proto: Any) -> None:
        for _ in range(outstanding):
            start_call(proto).addCallbacks(completed, failed, callbackArgs=(proto,))
        reactor.callLater(warmup, begin)
        reactor.callLater(warmup + duration, end)

    d = connect(reactor)
    d.addCallbacks(connected, failed)
    reactor.callLater(warmup + duration + 30, reactor.stop)
    reactor.run()
    if "t1" not in window or "t0" not in window:
        return {"error": "; ".join(state["errors"]) or "did not finish"}
    elapsed = window["t1"] - window["t0"]
    calls = window["n1"] - window["n0"]
    return {
        "calls": calls,
        "elapsed": elapsed,
        "rate": calls / elapsed,
        **cpu,
        "errors": state["errors"],
    }


def run_jsonservice(
    port: int, outstanding: int, warmup: float, duration: float, server_pid: int
) -> dict[str, Any]:
    """``jsonservice.connect`` + ``call("echo", x)``."""
    import jsonservice

    payload = echo_payload(SMALL)
    connect_fn = jsonservice.connect

    def start_call(proto: Any) -> Any:
        return proto.call("echo", payload)

    def connect(reactor: Any) -> Any:
        return connect_fn(reactor, f"tcp:127.0.0.1:{port}")

    return _drive(start_call, connect, outstanding, warmup, duration, server_pid)


def run_amp(port: int, outstanding: int, warmup: float, duration: float, server_pid: int) -> dict[str, Any]:
    """Twisted AMP ``callRemote(Echo, value=x)``."""
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols import amp

    from bench.ampcommands import Echo

    payload = echo_payload(SMALL)

    def start_call(proto: Any) -> Any:
        return proto.callRemote(Echo, value=payload)

    def connect(reactor: Any) -> Any:
        return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), amp.AMP())

    return _drive(start_call, connect, outstanding, warmup, duration, server_pid)


CLIENTS = {"jsonservice": run_jsonservice, "amp": run_amp}


def main(argv: list[str] | None = None) -> None:
    """Run one client workload and print its result as one JSON line."""
    parser = argparse.ArgumentParser(description="client-library call() throughput")
    parser.add_argument("kind", choices=sorted(CLIENTS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outstanding", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=0.2)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--server-pid", type=int, default=0, help="to report the server's CPU use")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    try:
        result = CLIENTS[args.kind](args.port, args.outstanding, args.warmup, args.duration, args.server_pid)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
