"""
Fan-out benchmark (``make bench`` runs it after the main suite;
``python -m bench.fanout``): one publisher, 1, 100 and 1,000 subscribers,
messages delivered per second, measured at the subscribers.

Columns:

- jsonservice, in process: ``twistd -n jsonservice`` (default backend); the
  publisher is a handler (``blast``) publishing as fast as it can.
- jsonservice via Redis: the same with ``--pubsub redis://``: each event goes
  to Redis and back, then to the local subscribers.
- plain Redis client (the physical reference): redis-py pipelines ``PUBLISH``
  to a channel the same number of raw RESP subscriber connections subscribe
  to; Redis itself does the fan-out.

The subscribers are raw sockets in this process (one ``epoll`` loop, counting
messages, no decoding), the same for every column, pinned to the last CPU;
the jsonservice server is pinned to the first; redis-server is not pinned.
Nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import HOST, free_port, log, pinned, twistd_path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "local"
SUBSCRIBERS = (1, 100, 1000)
#: Deliveries per measurement (events x subscribers), per subscriber count.
DELIVERIES = {1: 100_000, 100: 200_000, 1000: 200_000}
SIZE = 64  # bytes of payload per event (the line is ~130 bytes)
QUIET = 5.0  # seconds without a message ends a measurement short of its count
FIRST = 60.0  # seconds to wait for the first message (a burst is encoded and queued first)
REDIS_MARK = b"$7\r\nmessage\r\n"


class Subscribers:
    """N connections read by one epoll loop, counting messages by a marker."""

    def __init__(self, count: int, port: int, mark: bytes, hello: bytes, ack: bytes) -> None:
        self.mark = mark
        self.socks = []
        for _ in range(count):
            sock = socket.create_connection((HOST, port), timeout=10)
            sock.sendall(hello)
            self.socks.append(sock)
        for sock in self.socks:  # every subscription confirmed before anything is published
            data = b""
            while ack not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("subscriber connection closed")
                data += chunk
            sock.setblocking(False)

    def count(self, expected: int, started: float) -> tuple[int, float]:
        """
        Read until ``expected`` messages arrived (or QUIET seconds of silence):
        (count, seconds from ``started``, when publishing began, to the last one).
        """
        selector = selectors.DefaultSelector()
        tails = {}
        for sock in self.socks:
            selector.register(sock, selectors.EVENT_READ)
            tails[sock] = b""
        received = 0
        last = started
        keep = len(self.mark) - 1
        while received < expected:
            ready = selector.select(QUIET if received else FIRST)
            if not ready:
                break
            for key, _ in ready:
                sock = key.fileobj
                try:
                    data = sock.recv(262144)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(sock)
                    continue
                data = tails[sock] + data
                got = data.count(self.mark)
                tails[sock] = data[-keep:] if keep else b""
                if got:
                    last = time.perf_counter()
                    received += got
        selector.close()
        return received, max(last - started, 1e-9)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--client-output-buffer-limit", "pubsub", "256mb", "64mb", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port, proc)
    return proc, port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {port}")


def start_jsonservice(workdir: Path, cpus: set[int] | None, pubsub: str | None) -> tuple[Any, int]:
    port = free_port()
    args = [str(twistd_path()), "--pidfile=", "-n", "jsonservice", "--port", str(port)]
    args += ["--service", "bench.fanout_service:service", "--request-timeout", "0"]
    if pubsub:
        args += ["--pubsub", pubsub]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log_file = (workdir / f"jsonservice-{'redis' if pubsub else 'local'}.log").open("ab")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=pinned(cpus))  # fmt: skip
    wait_port(port, proc)
    if pubsub:  # connected to Redis before measuring
        deadline = time.monotonic() + 10
        while "Connected to Redis" not in (workdir / "jsonservice-redis.log").read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("jsonservice did not connect to Redis")
            time.sleep(0.05)
    return proc, port


def jsonservice_round(port: int, subscribers: int, topic: str) -> dict[str, Any]:
    hello = json.dumps({"jsonrpc": "2.0", "method": "rpc.subscribe", "params": [topic], "id": 1}).encode()
    subs = Subscribers(subscribers, port, b"\n", hello + b"\n", b'"id":1}')
    try:
        events = max(1, DELIVERIES[subscribers] // subscribers)
        per_turn = 200  # events per reactor turn: coalesced into one send per subscriber
        with socket.create_connection((HOST, port), timeout=60) as publisher:
            call = {"jsonrpc": "2.0", "method": "blast", "params": [topic, events, SIZE, per_turn], "id": 7}
            started = time.perf_counter()
            publisher.sendall(json.dumps(call).encode() + b"\n")
            received, seconds = subs.count(events * subscribers, started)
            reply = json.loads(publisher.makefile("rb").readline())
        result = reply.get("result") or {}
        return {"delivered": received, "expected": events * subscribers, "seconds": seconds, **result}
    finally:
        subs.close()


def redis_round(port: int, subscribers: int, channel: str) -> dict[str, Any]:
    hello = b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel.encode())
    subs = Subscribers(subscribers, port, REDIS_MARK, hello, b"subscribe")
    try:
        events = max(1, DELIVERIES[subscribers] // subscribers)
        payload = (
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "rpc.event",
                    "params": {"topic": channel, "data": [0, "x" * SIZE]},
                }
            ).encode()
            + b"\n"
        )
        # The publisher in its own process (the subscribers' loop is this one).
        script = (
            "import redis, sys\n"
            f"r = redis.Redis(host={HOST!r}, port={port})\n"
            f"p = r.pipeline(transaction=False)\n"
            "r.ping()\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            f"for n in range({events}):\n"
            f"    p.publish({channel!r}, {payload!r})\n"
            "    if n % 1000 == 999: p.execute()\n"
            "p.execute()\n"
        )
        publisher = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert publisher.stdin is not None
        assert publisher.stdout is not None
        publisher.stdout.readline()  # connected: start the clock and go
        started = time.perf_counter()
        publisher.stdin.write(b"go\n")
        publisher.stdin.flush()
        received, seconds = subs.count(events * subscribers, started)
        publisher.wait(60)
        return {"delivered": received, "expected": events * subscribers, "seconds": seconds}
    finally:
        subs.close()


def rate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["delivered"] / r["seconds"] for r in rounds]
    lost = sum(r["expected"] - r["delivered"] for r in rounds)
    return {"median": statistics.median(rates), "rounds": rounds, "lost": lost}


def fmt(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    text = f"{cell['median'] / 1000:,.0f}k/s"
    return text + (f" ({cell['lost']:,} not delivered)" if cell["lost"] else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (median; default 3)")
    parser.add_argument("--out", type=Path, default=OUT, help="where fanout.md/.json go")
    args = parser.parse_args(argv)
    try:
        import redis  # noqa: F401
    except ImportError:
        raise SystemExit("the fan-out benchmark needs redis-py: pip install -e '.[bench]'") from None
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = {cpus[0]} if len(cpus) > 1 else None
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[-1]})
    started = time.monotonic()
    results: dict[str, dict[int, Any]] = {"local": {}, "redis": {}, "plain": {}}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        workdir = Path(tmp)
        redis_server = start_redis(workdir)
        if redis_server is None:
            notes.append(
                "no redis-server on PATH: the Redis columns are empty (apt-get install redis-server)"
            )
        procs = [redis_server[0]] if redis_server else []
        try:
            backends = [("local", None)]
            if redis_server:
                backends.append(("redis", f"redis://{HOST}:{redis_server[1]}/0"))
            for name, pubsub in backends:
                proc, port = start_jsonservice(workdir, server_cpus, pubsub)
                procs.append(proc)
                for count in SUBSCRIBERS:
                    rounds = [jsonservice_round(port, count, f"fan{count}.{n}") for n in range(args.rounds)]
                    results[name][count] = rate(rounds)
                    log(f"jsonservice {name}, {count} subscribers: {fmt(results[name][count])}")
            if redis_server:
                for count in SUBSCRIBERS:
                    rounds = [
                        redis_round(redis_server[1], count, f"plain{count}.{n}") for n in range(args.rounds)
                    ]
                    results["plain"][count] = rate(rounds)
                    log(f"plain Redis, {count} subscribers: {fmt(results['plain'][count])}")
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    lines = [
        "# Fan-out: one publisher, N subscribers (messages delivered per second, median of "
        f"{args.rounds} rounds)",
        "",
        "| subscribers | jsonservice, in process | jsonservice via Redis | plain Redis client (reference) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for count in SUBSCRIBERS:
        cells = [fmt(results[column].get(count)) for column in ("local", "redis", "plain")]
        lines.append(f"| {count:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Events of {SIZE} bytes of payload (~130-byte lines); time from the start of publishing to "
        "the last message received; subscribers are raw sockets in one epoll loop; 'not delivered' "
        "counts events a slow subscriber missed (dropped, max_event_backlog) or that were refused.",
        *[f"Note: {note}" for note in notes],
        f"Took {time.monotonic() - started:.0f} s.",
    ]
    markdown = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fanout.md").write_text(markdown)
    (args.out / "fanout.json").write_text(json.dumps({"results": results, "notes": notes}, indent=2) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
