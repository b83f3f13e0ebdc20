"""The servers under test and the workloads: one row of the results table each."""

from __future__ import annotations

from dataclasses import dataclass

from bench.messages import SMALL, MessageSpec

#: Column order of every table: this project first, then the floor, then the baselines.
SERVERS = ("jsonservice", "bare", "naive", "asyncio", "aiorpcx", "amp")
LABELS = {
    "jsonservice": "jsonservice",
    "bare": "bare LineReceiver echo (floor)",
    "naive": "naive Twisted + json",
    "asyncio": "asyncio streams + json",
    "aiorpcx": "aiorpcX",
    "amp": "Twisted AMP",
}
JSON_SERVERS = ("jsonservice", "bare", "naive", "asyncio", "aiorpcx")


@dataclass(frozen=True)
class Workload:
    """One row of the results table."""

    name: str
    title: str
    kind: str  # "throughput", "latency", "idle" or "client"
    message: str = "echo"
    size: int = SMALL
    connections: int = 1
    inflight: int = 100
    servers: tuple[str, ...] = SERVERS
    group: str = "table"

    def spec(self, server: str) -> MessageSpec:
        """The message this workload sends to ``server`` (AMP servers get AMP boxes)."""
        return MessageSpec(self.message, self.size, "amp" if server == "amp" else "line")


WORKLOADS: tuple[Workload, ...] = (
    Workload("echo-1", "JSON-RPC echo, 1 connection, 100 in flight", "throughput"),
    Workload(
        "echo-50", "JSON-RPC echo, 50 connections x 10 in flight", "throughput", connections=50, inflight=10
    ),
    Workload(
        "plain",
        'plain messages {"name":"John",...}, 1 conn, 100 in flight',
        "throughput",
        message="plain",
        servers=("jsonservice", "bare", "naive", "asyncio"),
    ),
    Workload("latency", "ping-pong latency, 1 in flight", "latency", message="ping", inflight=1),
    Workload(
        "batch",
        "batches of 100 echo calls, 1 conn, 10 batches in flight (calls/s)",
        "throughput",
        message="batch",
        inflight=10,
        servers=JSON_SERVERS,
    ),
    Workload("big-64k", "64 KiB echo messages, 1 conn, 10 in flight", "throughput", size=65536, inflight=10),
    Workload("conns-1", "echo 64 B, 1 conn x 10 in flight", "throughput", inflight=10, group="sweep"),
    Workload(
        "conns-10",
        "echo 64 B, 10 conns x 10 in flight",
        "throughput",
        connections=10,
        inflight=10,
        group="sweep",
    ),
    Workload(
        "size-1k", "echo 1 KiB, 1 conn x 10 in flight", "throughput", size=1024, inflight=10, group="sweep"
    ),
    Workload(
        "size-16k", "echo 16 KiB, 1 conn x 10 in flight", "throughput", size=16384, inflight=10, group="sweep"
    ),
    Workload(
        "client",
        "client library call() echo, 1 conn, 100 outstanding",
        "client",
        servers=("jsonservice", "bare", "amp"),
    ),
    Workload(
        "idle", "idle connections: server RSS per connection", "idle", message="ping", connections=10_000
    ),
)


def select_workloads(only: list[str]) -> list[Workload]:
    """Pick workloads by name or group (``table``, ``sweep``); all when ``only`` is empty."""
    if not only:
        return list(WORKLOADS)
    wanted = {w.strip() for item in only for w in item.split(",") if w.strip()}
    known = {w.name for w in WORKLOADS} | {w.group for w in WORKLOADS}
    unknown = wanted - known
    if unknown:
        raise SystemExit(
            f"unknown workload(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    return [w for w in WORKLOADS if w.name in wanted or w.group in wanted]
