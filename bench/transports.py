"""HTTP and WebSocket next to the line protocol: ``python -m bench.transports``; ``make bench`` runs it.

One ``twistd -n jsonservice --port L --http tcp:H`` serves the demo over the three transports;
the alternatives a user would pick instead run as their own processes (:mod:`bench.servers`):
an aiohttp JSON handler (HTTP), the ``websockets`` library with ``json`` (WebSocket), and two
floors with no JSON at all, a bare ``twisted.web`` echo resource and a bare autobahn echo.
Every server is pinned to the first core; this process, the load generator, to the others.

The load generator is one loop for all three transports, so their figures compare: raw
sockets, one pre-encoded request (a line; an HTTP/1.1 ``POST``; a WebSocket frame, masked
with a zero key as RFC 6455 allows), N requests in flight per connection, replies counted by
their fixed length (the first reply, read and checked, gives it), never parsed. It reports its
own CPU over the window: a figure whose load generator is ≥ 90 % busy is flagged (†) as
possibly loader-bound. Where ``wrk`` is installed (Debian's ``wrk``, compiled C), the
50-connection HTTP figures are measured with it too.

Each figure is the median of the rounds, alternating between the cells. Ratios are to the
line protocol (the cost of the transport) and to the alternative (the ``x`` column).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import HOST, free_port, log, pinned, twistd_path

ECHO = b'{"jsonrpc":"2.0","method":"echo","params":["hello world, hello world"],"id":1}'
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
BUSY = 0.9  # a load generator this busy may be the ceiling
LOCAL_DIR = Path(__file__).resolve().parent / "results" / "local"


def request_for(transport: str, body: bytes = ECHO) -> bytes:
    """The bytes of one request over ``transport``."""
    if transport == "line":
        return body + b"\n"
    if transport == "http":
        head = b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    assert len(body) < 126, "one-byte payload length only"
    return bytes([0x81, 0x80 | len(body)]) + b"\0\0\0\0" + body  # FIN, text, masked with key 0


def _connect(port: int, transport: str) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if transport == "ws":
        sock.sendall(HANDSHAKE)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"handshake refused: {data!r}")
            data += chunk
        if b" 101 " not in data.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"handshake refused: {data[:200]!r}")
    return sock


def _reply_length(data: bytes, transport: str) -> int | None:
    """The length of the first complete reply in ``data``, if it is all there."""
    if transport == "line":
        end = data.find(b"\n")
        return end + 1 if end >= 0 else None
    if transport == "http":
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        match = re.search(rb"(?i)content-length: *(\d+)", data[:end])
        total = end + 4 + (int(match.group(1)) if match else 0)
        return total if len(data) >= total else None
    if len(data) < 2:
        return None
    size = data[1] & 0x7F
    head = 2 + (2 if size == 126 else 8 if size == 127 else 0)
    if len(data) < head:
        return None
    if size == 126:
        size = int.from_bytes(data[2:4], "big")
    elif size == 127:
        size = int.from_bytes(data[2:10], "big")
    return head + size if len(data) >= head + size else None


def probe(port: int, transport: str) -> bytes:
    """One request on a fresh connection: its reply, which must carry the echoed value."""
    with _connect(port, transport) as sock:
        sock.sendall(request_for(transport))
        data = b""
        while (length := _reply_length(data, transport)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
        if length != len(data) or b"hello world, hello world" not in data:
            raise RuntimeError(f"unexpected reply over {transport}: {data[:300]!r}")
        return data


@dataclass
class _Conn:
    sock: socket.socket
    outstanding: int = 0
    partial: int = 0
    sent_at: float = 0.0


def drive(
    port: int,
    transport: str,
    connections: int,
    inflight: int,
    warmup: float,
    duration: float,
    server_pid: int,
) -> dict[str, Any]:
    """Keep ``inflight`` requests on each of ``connections``; count replies in the window."""
    reply_len = len(probe(port, transport))
    request = request_for(transport)
    sel = selectors.DefaultSelector()
    conns = []
    clock = time.perf_counter
    for _ in range(connections):
        sock = _connect(port, transport)
        conn = _Conn(sock, inflight, 0, clock())
        sock.sendall(request * inflight)
        sock.setblocking(False)
        conns.append(conn)
        sel.register(sock, selectors.EVENT_READ, conn)
    latency = connections == 1 and inflight == 1
    samples: list[float] = []
    replies = 0
    t0 = clock() + warmup
    t_end = t0 + duration
    base = 0
    cpu0: tuple[float, float] | None = None
    while True:
        now = clock()
        if cpu0 is None and now >= t0:
            cpu0 = (time.process_time(), _proc_cpu(server_pid))
            base, t0, samples = replies, now, []
        if now >= t_end:
            break
        for key, _ in sel.select(0.2):
            conn = key.data
            data = conn.sock.recv(1 << 18)
            if not data:
                raise ConnectionError(f"the server closed a {transport} connection")
            total = conn.partial + len(data)
            n, conn.partial = divmod(total, reply_len)
            if n:
                replies += n
                if latency:
                    samples.append(clock() - conn.sent_at)
                conn.sent_at = clock()
                conn.sock.send(request * n)  # small: fits the socket buffer
    t1 = clock()
    assert cpu0 is not None
    loader_cpu = time.process_time() - cpu0[0]
    server_cpu = _proc_cpu(server_pid) - cpu0[1]
    for conn in conns:
        conn.sock.close()
    sel.close()
    elapsed = t1 - t0
    result: dict[str, Any] = {
        "rate": (replies - base) / elapsed,
        "loader_cpu": loader_cpu / elapsed,
        "server_cpu": server_cpu / elapsed,
    }
    if latency and samples:
        samples.sort()
        result["p50_us"] = samples[len(samples) // 2] * 1e6
        result["p99_us"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6
    return result


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive_wrk(url: str, connections: int, duration: float, server_pid: int) -> dict[str, Any] | None:
    """The same POST with ``wrk`` (compiled), where installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = LOCAL_DIR / "wrk-post.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(ECHO.decode())}\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0 = _proc_cpu(server_pid)
    started = time.perf_counter()
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=False,
    ).stdout
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if match is None or "Non-2xx" in out:
        log(f"wrk failed: {out[-300:]}")
        return None
    return {
        "rate": float(match.group(1)),
        "loader_cpu": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / elapsed,
        "server_cpu": (_proc_cpu(server_pid) - server0) / elapsed,
    }


class Servers:
    """The server processes of the section, each pinned to the server core."""

    def __init__(self, cpus: set[int] | None, workdir: Path) -> None:
        self.cpus = cpus
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[tuple[str, str], int] = {}  # (server, transport) -> port
        self.pids: dict[str, int] = {}

    def start(self) -> None:
        line, http = free_port(), free_port()
        cmd = [str(twistd_path()), "--pidfile=", "-n", "jsonservice", "--port", str(line)]
        cmd += ["--http", f"tcp:{http}:interface={HOST}"]
        log_file = open(self.workdir / "jsonservice-http.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=pinned(self.cpus)
        )
        self.procs["jsonservice"] = proc
        for port in (line, http):
            _wait_port(port, proc)
        self.ports.update(
            {("jsonservice", "line"): line, ("jsonservice", "http"): http, ("jsonservice", "ws"): http}
        )
        for name, transport in (
            ("aiohttp", "http"),
            ("websockets", "ws"),
            ("twistedweb", "http"),
            ("autobahn", "ws"),
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.servers", name, "--host", HOST],
                cwd=Path(__file__).resolve().parent.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                preexec_fn=pinned(self.cpus),
            )
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            if not ready.startswith(b"READY "):
                log(f"{name} did not start: {ready!r}")
                proc.kill()
                continue
            self.procs[name] = proc
            self.ports[(name, transport)] = int(ready.split()[1])
        self.pids = {name: proc.pid for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"twistd exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port}")


#: (row title, connections, in flight per connection, cells: (server, transport)).
ROWS: tuple[tuple[str, int, int, tuple[tuple[str, str], ...]], ...] = (
    (
        "echo, 50 connections x 1 in flight (req/s)",
        50,
        1,
        (("jsonservice", "line"), ("jsonservice", "http"), ("aiohttp", "http"), ("twistedweb", "http"),
         ("jsonservice", "ws"), ("websockets", "ws"), ("autobahn", "ws")),
    ),
    (
        "echo, 1 connection x 100 in flight, pipelined (req/s)",
        1,
        100,
        (("jsonservice", "line"), ("jsonservice", "ws"), ("websockets", "ws"), ("autobahn", "ws")),
    ),
    (
        "latency, 1 connection x 1 in flight (p50 / p99 µs)",
        1,
        1,
        (("jsonservice", "line"), ("jsonservice", "http"), ("aiohttp", "http"), ("twistedweb", "http"),
         ("jsonservice", "ws"), ("websockets", "ws"), ("autobahn", "ws")),
    ),
)  # fmt: skip

#: What each jsonservice transport is compared with.
ALTERNATIVE = {"http": "aiohttp", "ws": "websockets"}


def run(rounds: int, warmup: float, duration: float, workdir: Path) -> dict[str, Any]:
    """Measure every row; return the results (also written next to the main ones)."""
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, loader_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else (None, None)
    if loader_cpus:
        os.sched_setaffinity(0, loader_cpus)
    servers = Servers(server_cpus, workdir)
    results: dict[str, Any] = {"rows": [], "rounds": rounds, "duration": duration}
    try:
        servers.start()
        for title, connections, inflight, cells in ROWS:
            cells = tuple(cell for cell in cells if cell in servers.ports)
            samples: dict[tuple[str, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
            for _ in range(rounds):
                for cell in cells:
                    server, transport = cell
                    samples[cell].append(
                        drive(
                            servers.ports[cell],
                            transport,
                            connections,
                            inflight,
                            warmup,
                            duration,
                            servers.pids[server],
                        )
                    )
            row: dict[str, Any] = {"title": title, "cells": {}}
            for (server, transport), got in samples.items():
                row["cells"][f"{server}/{transport}"] = {
                    key: statistics.median(g[key] for g in got) for key in got[0]
                }
            results["rows"].append(row)
            log(f"{title}: done")
        for connections in (50,):
            row = {
                "title": f"HTTP echo, {connections} connections, wrk (compiled load generator) (req/s)",
                "cells": {},
            }
            for server in ("jsonservice", "aiohttp", "twistedweb"):
                if (server, "http") not in servers.ports:
                    continue
                got = [
                    drive_wrk(
                        f"http://{HOST}:{servers.ports[(server, 'http')]}/rpc",
                        connections,
                        duration,
                        servers.pids[server],
                    )
                    for _ in range(rounds)
                ]
                if all(g is not None for g in got):
                    row["cells"][f"{server}/http"] = {
                        key: statistics.median(g[key] for g in got) for key in got[0]
                    }  # type: ignore[index]
            if row["cells"]:
                results["rows"].append(row)
            else:
                results["notes"] = ["wrk is not installed (apt-get install wrk): no compiled HTTP figures"]
    finally:
        servers.stop()
    return results


def markdown(results: dict[str, Any]) -> str:
    """The section's table: each cell with its ratio to the line protocol and to the alternative."""
    lines = [
        "## HTTP and WebSocket",
        "",
        f"Median of {results['rounds']} rounds of {results['duration']} s. In brackets: the ratio to "
        "jsonservice's line protocol in the same row, and for jsonservice's HTTP and WebSocket the "
        "ratio to the alternative (aiohttp, websockets) after x. CPU: server / load generator, in "
        f"cores; † = load generator ≥ {BUSY:.0%} busy (may be the ceiling).",
        "",
        "| workload | transport/server | figure | ratios | CPU |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for row in results["rows"]:
        cells = row["cells"]
        line_cell = cells.get("jsonservice/line")
        for name, cell in cells.items():
            latency = "p50_us" in cell
            figure = f"{cell['p50_us']:,.0f} / {cell['p99_us']:,.0f}" if latency else f"{cell['rate']:,.0f}"
            key = "p50_us" if latency else "rate"
            ratios = []
            if line_cell is not None and name != "jsonservice/line":
                ratios.append(f"{cell[key] / line_cell[key]:.2f}x line")
            server, transport = name.split("/")
            alternative = cells.get(f"{ALTERNATIVE.get(transport)}/{transport}")
            if server == "jsonservice" and alternative is not None:
                ratios.append(f"{cell[key] / alternative[key]:.2f}x {ALTERNATIVE[transport]}")
            dagger = " †" if cell["loader_cpu"] >= BUSY else ""
            lines.append(
                f"| {row['title']} | {name} | {figure}{dagger} | {', '.join(ratios)} | "
                f"{cell['server_cpu']:.2f} / {cell['loader_cpu']:.2f} |"
            )
    lines += ["", *results.get("notes", [])]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-transports-") as where:
        yield Path(where)


def main(argv: list[str] | None = None) -> int:
    """Run the section alone and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=LOCAL_DIR)
    args = parser.parse_args(argv)
    with _workdir() as workdir:
        results = run(args.rounds, args.warmup, args.duration, workdir)
    text = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transports.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "transports.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
