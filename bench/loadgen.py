"""Load generator worker: raw sockets, pre-encoded requests, replies counted, never parsed.

Run as ``python -m bench.loadgen``; the harness writes one JSON job per line on its stdin and
reads one JSON result per line from its stdout. Jobs (``op``):

* ``throughput`` — ``connections`` sockets, each keeping ``inflight`` requests pipelined;
  every reply unit counted frees one slot, refilled at once with one slice of the pre-built
  request ring. Replies are counted by newline (``line``) or by fixed reply length (``amp``).
* ``latency`` — one blocking socket, one request in flight; per round trip times.
* ``idle_open`` / ``idle_close`` — open N connections (each answers one request, so the
  server has really accepted it) and hold them until ``idle_close``.

The worker reports its own CPU use over the measuring window and the server's (from
``/proc/PID/stat``), so a loader-bound figure shows as such.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.messages import MessageSpec, build_request, build_ring, parse_amp_box
from bench.servers import raise_nofile_limit

RECV_SIZE = 1 << 18
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds used so far by process ``pid`` (0.0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot (from ``/proc/stat``)."""
    with open("/proc/stat", "rb") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


class CpuWindow:
    """CPU used over a measuring window by this process, the server and everything else."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.t0 = time.perf_counter()
        self.own0 = time.process_time()
        self.server0 = process_cpu_seconds(server_pid) if server_pid else 0.0
        self.machine0 = machine_busy_seconds()

    def finish(self) -> dict[str, float | None]:
        """Return fractions of one core: ``loader_cpu``, ``server_cpu``, ``other_cpu``."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        own = (time.process_time() - self.own0) / elapsed
        server = (process_cpu_seconds(self.server_pid) - self.server0) / elapsed if self.server_pid else None
        machine = (machine_busy_seconds() - self.machine0) / elapsed
        other = None if server is None else max(0.0, machine - own - server)
        return {"loader_cpu": own, "server_cpu": server, "other_cpu": other}


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_one_reply(sock: socket.socket, proto: str) -> bytes:
    """Read exactly one reply unit from a blocking socket (used to probe and to time)."""
    buf = b""
    while True:
        if proto == "amp":
            parsed = parse_amp_box(buf)
            if parsed is not None:
                if parsed[1] != len(buf):
                    raise RuntimeError("AMP server sent more than one box")
                return buf
        else:
            nl = buf.find(b"\n")
            if nl >= 0:
                if nl != len(buf) - 1:
                    raise RuntimeError("server sent more than one line")
                return buf
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} bytes: {buf[:120]!r}")
        buf += chunk


def probe(host: str, port: int, request: bytes, proto: str) -> bytes:
    """Send one request on a fresh connection and return its reply (to check it, and its size)."""
    with _connect(host, port) as sock:
        sock.sendall(request)
        return read_one_reply(sock, proto)


@dataclass
class _Conn:
    sock: socket.socket
    position: int = 0
    outstanding: int = 0
    partial: int = 0
    pending: bytearray = field(default_factory=bytearray)
    writing: bool = False


def run_throughput(job: dict[str, Any]) -> dict[str, Any]:
    """Pipeline requests on several connections; count reply units in the window."""
    spec = MessageSpec.from_json(job["message"])
    host, port = job["host"], int(job["port"])
    window = int(job["inflight"])
    ring, ring_count, length = build_ring(spec, window)

    # Probe one request so the reply length is known (AMP replies are counted by length).
    first_reply = probe(host, port, ring[:length], spec.proto)
    reply_len = len(first_reply)

    sel = selectors.DefaultSelector()
    conns: list[_Conn] = []
    for _ in range(int(job["connections"])):
        sock = _connect(host, port)
        sock.setblocking(False)
        conn = _Conn(sock)
        conns.append(conn)
        sel.register(sock, selectors.EVENT_READ, conn)

    sending = True

    def queue(conn: _Conn, k: int) -> None:
        start = conn.position
        data = memoryview(ring)[start * length : (start + k) * length]
        conn.position = (start + k) % ring_count
        conn.outstanding += k
        if not conn.pending:
            try:
                sent = conn.sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        conn.pending += data
        if not conn.writing:
            conn.writing = True
            sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    for conn in conns:
        queue(conn, window)

    amp = spec.proto == "amp"
    replies = 0
    nbytes = 0
    started = time.perf_counter()
    t0 = started + float(job["warmup"])
    t_end = t0 + float(job["duration"])
    base_replies = base_bytes = 0
    server_pid = int(job.get("server_pid") or 0)
    cpu_window: CpuWindow | None = None
    errors: list[str] = []
    while True:
        now = time.perf_counter()
        if cpu_window is None and now >= t0:
            cpu_window = CpuWindow(server_pid)
            base_replies, base_bytes = replies, nbytes
            t0 = now
        if now >= t_end:
            break
        for key, mask in sel.select(0.2):
            conn = key.data
            if mask & selectors.EVENT_WRITE and conn.pending:
                try:
                    sent = conn.sock.send(conn.pending)
                except BlockingIOError:
                    sent = 0
                del conn.pending[:sent]
                if not conn.pending:
                    conn.writing = False
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if mask & selectors.EVENT_READ:
                try:
                    data = conn.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data = b""
                    errors.append(repr(exc))
                if not data:
                    errors.append("server closed a connection")
                    sel.unregister(conn.sock)
                    conn.outstanding = 0
                    continue
                nbytes += len(data)
                if amp:
                    total = conn.partial + len(data)
                    n = total // reply_len
                    conn.partial = total - n * reply_len
                else:
                    n = data.count(b"\n")
                replies += n
                conn.outstanding -= n
                if sending and n:
                    queue(conn, n)
        if errors and not sel.get_map():
            break
    t1 = time.perf_counter()
    cpu_use = (cpu_window or CpuWindow(server_pid)).finish()
    counted, counted_bytes = replies - base_replies, nbytes - base_bytes

    # Drain what is still in flight, so the next measurement starts from a quiet server.
    sending = False
    deadline = time.perf_counter() + 5.0
    while any(c.outstanding > 0 for c in conns) and sel.get_map() and time.perf_counter() < deadline:
        for key, mask in sel.select(0.2):
            conn = key.data
            if mask & selectors.EVENT_WRITE and conn.pending:
                with contextlib.suppress(BlockingIOError):
                    del conn.pending[: conn.sock.send(conn.pending)]
                if not conn.pending:
                    conn.writing = False
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if mask & selectors.EVENT_READ:
                try:
                    data = conn.sock.recv(RECV_SIZE)
                except (BlockingIOError, OSError):
                    continue
                if not data:
                    sel.unregister(conn.sock)
                    conn.outstanding = 0
                    continue
                if amp:
                    total = conn.partial + len(data)
                    conn.outstanding -= total // reply_len
                    conn.partial = total % reply_len
                else:
                    conn.outstanding -= data.count(b"\n")
    for conn in conns:
        conn.sock.close()
    sel.close()
    elapsed = t1 - t0
    return {
        "loader": "python",
        "replies": counted,
        "bytes": counted_bytes,
        "elapsed": elapsed,
        "rate": counted / elapsed if elapsed > 0 else 0.0,
        **cpu_use,
        "reply_len": reply_len,
        "first_reply": first_reply.decode("latin-1"),
        "first_request": ring[:length].decode("latin-1"),
        "errors": errors[:5],
    }


def run_latency(job: dict[str, Any]) -> dict[str, Any]:
    """Ping-pong with one request in flight; return round-trip percentiles in microseconds."""
    spec = MessageSpec.from_json(job["message"])
    ring, ring_count, length = build_ring(spec, 1)
    requests = [ring[i * length : (i + 1) * length] for i in range(ring_count)]
    sock = _connect(job["host"], int(job["port"]))
    sock.sendall(requests[0])
    first_reply = read_one_reply(sock, spec.proto)
    samples: list[int] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    t0 = started + float(job["warmup"])
    t_end = t0 + float(job["duration"])
    server_pid = int(job.get("server_pid") or 0)
    window: CpuWindow | None = None
    i = 0
    while True:
        now = time.perf_counter()
        if window is None and now >= t0:
            window = CpuWindow(server_pid)
            t0 = now
        if now >= t_end:
            break
        i = (i + 1) % ring_count
        begin = clock()
        sock.sendall(requests[i])
        read_one_reply(sock, spec.proto)
        if window is not None:
            samples.append(clock() - begin)
    elapsed = time.perf_counter() - t0
    cpu_use = (window or CpuWindow(server_pid)).finish()
    sock.close()
    samples.sort()

    def pct(p: float) -> float:
        if not samples:
            return 0.0
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000.0

    return {
        "loader": "python",
        "count": len(samples),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": sum(samples) / len(samples) / 1000.0 if samples else 0.0,
        "rate": len(samples) / elapsed if elapsed > 0 else 0.0,
        **cpu_use,
        "first_reply": first_reply.decode("latin-1"),
        "first_request": requests[0].decode("latin-1"),
    }


_idle: list[socket.socket] = []


def run_idle_open(job: dict[str, Any]) -> dict[str, Any]:
    """Open ``connections`` sockets, each answered once, and hold them open."""
    spec = MessageSpec.from_json(job["message"])
    request = build_request(spec, 0)
    total = int(job["connections"])
    step = int(job.get("step", 32))  # below the smallest listen backlog (Twisted's 50)
    failed = 0
    errors: list[str] = []
    started = time.perf_counter()
    while len(_idle) + failed < total:
        batch: list[socket.socket] = []
        for _ in range(min(step, total - len(_idle) - failed)):
            try:
                sock = _connect(job["host"], int(job["port"]))
                sock.sendall(request)
                batch.append(sock)
            except OSError as exc:
                failed += 1
                errors.append(repr(exc))
        for sock in batch:
            try:
                read_one_reply(sock, spec.proto)
            except (OSError, RuntimeError) as exc:
                failed += 1
                errors.append(repr(exc))
                sock.close()
                continue
            # Abortive close later: no TIME_WAIT pile-up across rounds.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _idle.append(sock)
        if failed > max(10, total // 100):
            break
    return {
        "opened": len(_idle),
        "failed": failed,
        "elapsed": time.perf_counter() - started,
        "errors": errors[:5],
    }


def run_idle_close(_job: dict[str, Any]) -> dict[str, Any]:
    """Close every connection opened by ``idle_open``."""
    count = len(_idle)
    for sock in _idle:
        sock.close()
    _idle.clear()
    return {"closed": count}


OPS = {
    "throughput": run_throughput,
    "latency": run_latency,
    "idle_open": run_idle_open,
    "idle_close": run_idle_close,
}


def main() -> None:
    """Serve jobs from stdin until EOF or ``{"op": "exit"}``."""
    limit = raise_nofile_limit()
    sys.stdout.write(json.dumps({"ready": True, "nofile": limit}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        job = json.loads(line)
        if job.get("op") == "exit":
            break
        try:
            result = OPS[job["op"]](job)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
