"""
The soak run: C{python -m soak.run [--seconds 60] [--connections 50]}
(C{make soak}; C{SOAK_SECONDS} sets the default duration).

Starts C{twistd -n jsonservice --service soak.service:service} on a free
127.0.0.1 port, then keeps C{--connections} connections busy for
C{--seconds}: each keeps a small window of messages in flight, mixing good
requests (echo, a slow method, batches, notifications, plain messages) with
bad input (bad JSON, over-long lines, bad ids, wrong versions, unknown
methods, a failing handler); some connections drop at random (closed or
reset, sometimes mid-line) and are replaced.

Checks, for every connection that stayed up: every request id sent got
exactly one reply, with the right content; every message answered with
C{id: null} or a plain reply got exactly one.  On any connection: no reply
twice, no reply to an id never sent.  Then the server is stopped with
SIGTERM (a clean stop) and its log is checked for unhandled errors.

Reports requests served, errors by kind, connections, and the server's RSS
(C{/proc/PID/status}) at start, peak and end.  Exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

ROOT = Path(__file__).resolve().parent.parent

#: Messages each connection keeps in flight.
WINDOW = 8
#: The server's line limit for the run (over-long lines are sent on purpose).
MAX_LINE = 64 * 1024
#: How long connections that stayed up get to receive their last replies.
SETTLE = 15.0

ERROR_NAMES = {
    -32700: "parse error",
    -32600: "invalid request",
    -32601: "method not found",
    -32602: "invalid params",
    -32603: "internal error",
    -32000: "request timeout",
    -32001: "server busy",
    -32002: "message too large",
    -32003: "batch too large",
    -32800: "cancelled",
}


def rss_kib(pid: int) -> dict[str, int]:
    """C{VmRSS} and C{VmHWM} (peak) of process C{pid}, in KiB."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stats:
    """Everything counted during the run."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.replies: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.problems: list[str] = []
        self.connections = 0
        self.dropped = 0
        self.refused = 0
        self.served = 0  # successful results (each batch item counts)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)
        else:
            self.problems[-1] = f"... and more (last: {text})"


class SoakClient(Protocol):
    """
    One connection: keeps a window of messages in flight and checks the
    replies.  Requests with an id are matched by id; messages answered with
    C{id: null} (bad input) and plain messages are counted (their replies
    carry no id).
    """

    def __init__(self, runner: Runner, index: int, lifetime: float | None) -> None:
        self.runner = runner
        self.index = index
        self.lifetime = lifetime
        self.rng = random.Random(runner.rng.random())
        self.buffer = b""
        self.pending: dict[Any, tuple[str, Any]] = {}
        self.done: set[Any] = set()
        self.null_expected = 0  # replies with id null still due
        self.plain_expected = 0  # plain replies still due
        self.next = 0
        self.up = False
        self.dropped = False
        self.stopping = False

    # -- connection life ----------------------------------------------------

    def connectionMade(self) -> None:
        self.up = True
        self.started = time.monotonic()
        self.runner.stats.connections += 1
        self.fill()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.up = False
        self.runner.lost(self)
        if not self.dropped and not self.runner.finishing:
            # Only the run's end or our own drop may close a connection.
            self.runner.stats.problem(f"conn {self.index}: closed by the server: {reason.value}")

    def drop(self) -> None:
        """Go away at random: sometimes mid-line, sometimes with a reset."""
        self.dropped = True
        self.runner.stats.dropped += 1
        if self.rng.random() < 0.5:
            self.transport.write(b'{"jsonrpc":"2.0","method":"echo","par')
        if self.rng.random() < 0.5:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    # -- sending -------------------------------------------------------------

    def outstanding(self) -> int:
        return len(self.pending) + self.null_expected + self.plain_expected

    def fill(self) -> None:
        if not self.up or self.dropped or self.stopping:
            return
        if self.lifetime is not None and time.monotonic() - self.started > self.lifetime:
            self.drop()
            return
        lines = []
        while self.outstanding() < WINDOW:
            lines.append(self.one())
        if lines:
            self.transport.write(b"".join(lines))

    def new_id(self) -> Any:
        self.next += 1
        # Ids of every JSON-RPC type: strings, integers (some past 64 bits), null is for errors.
        kind = self.next % 3
        if kind == 0:
            return f"c{self.index}-{self.next}"
        if kind == 1:
            return self.next
        return 2**64 + self.next

    def request(self, kind: str, method: str, params: Any, expect: Any) -> bytes:
        id_ = self.new_id()
        self.pending[id_] = (kind, expect)
        self.runner.stats.sent[kind] += 1
        return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id_}).encode() + b"\n"

    def one(self) -> bytes:
        """One random message (newline-terminated) and its expected reply, recorded."""
        rng = self.rng
        sent = self.runner.stats.sent
        roll = rng.random()
        if roll < 0.45:
            value = rng.choice([rng.randint(-(2**70), 2**70), "héllo ✓", {"k": [1, 2.5, None, True]}, ""])
            return self.request("echo", "echo", [value], ("result", value))
        if roll < 0.55:
            value = rng.randint(0, 1000)
            return self.request("slow", "slow", [value, rng.uniform(0, 0.3)], ("result", value))
        if roll < 0.62:
            items = []
            for _ in range(rng.randint(1, 5)):
                id_ = self.new_id()
                self.pending[id_] = ("batch item", ("result", id_))
                items.append({"jsonrpc": "2.0", "method": "echo", "params": [id_], "id": id_})
            sent["batch"] += 1
            sent["batch item"] += len(items)
            # A notification in the batch: no reply element for it.
            items.append({"jsonrpc": "2.0", "method": "echo", "params": ["n"]})
            return json.dumps(items).encode() + b"\n"
        if roll < 0.67:
            sent["notification"] += 1
            return b'{"jsonrpc":"2.0","method":"echo","params":["nobody waits"]}\n'
        if roll < 0.72:
            sent["plain"] += 1
            self.plain_expected += 1
            return b'{"hello":"server"}\n'
        if roll < 0.77:
            return self.request("unknown method", "no.such.method", [], ("error", -32601))
        if roll < 0.80:
            return self.request("failing handler", "fail", [], ("error", -32603))
        if roll < 0.83:
            id_ = self.new_id()
            self.pending[id_] = ("wrong version", ("error", -32600))
            sent["wrong version"] += 1
            return json.dumps({"jsonrpc": "1.0", "method": "echo", "params": [1], "id": id_}).encode() + b"\n"
        # Bad input answered with id null.
        self.null_expected += 1
        bad = rng.random()
        if bad < 0.4:
            sent["bad json"] += 1
            # (Not '{"a":1}}': TCP may cut it after the value, and the server
            # then answers the value and the rest separately: a known bug.)
            return rng.choice([b"{", b"[1,]", b"[NaN]", b"\xff\xfe", b'"\\ud800"']) + b"\n"
        if bad < 0.7:
            sent["bad id"] += 1
            return rng.choice([b"true", b"{}", b"[1]"]).join(
                [b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":', b"}\n"]
            )
        if bad < 0.8:
            sent["oversize line"] += 1
            return b'["' + b"x" * (MAX_LINE + rng.randint(1, 4096)) + b'"]\n'
        sent["empty batch"] += 1
        return b"[]\n"

    # -- receiving ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            try:
                reply = json.loads(line)
            except ValueError:
                self.runner.stats.problem(f"conn {self.index}: unparsable reply {line[:80]!r}")
                continue
            if isinstance(reply, list):
                self.runner.stats.replies["batch"] += 1
                for item in reply:
                    self.check(item)
            else:
                self.check(reply)
        self.fill()

    def check(self, reply: Any) -> None:
        stats = self.runner.stats
        if not isinstance(reply, dict):
            stats.problem(f"conn {self.index}: odd reply {reply!r}")
            return
        if "jsonrpc" not in reply:
            stats.replies["plain"] += 1
            if self.plain_expected <= 0:
                stats.problem(f"conn {self.index}: unexpected plain reply {reply!r}")
            self.plain_expected -= 1
            return
        error = reply.get("error")
        if error is not None:
            stats.errors[ERROR_NAMES.get(error.get("code"), str(error.get("code")))] += 1
        id_ = reply.get("id")
        if id_ is None:
            stats.replies["id null"] += 1
            if self.null_expected <= 0:
                stats.problem(f"conn {self.index}: unexpected id-null reply {reply!r}")
            self.null_expected -= 1
            return
        entry = self.pending.pop(id_, None)
        if entry is None:
            what = "a second reply" if id_ in self.done else "a reply to an id never sent"
            stats.problem(f"conn {self.index}: {what}: {reply!r}")
            return
        self.done.add(id_)
        kind, (expect_kind, expected) = entry
        stats.replies[kind] += 1
        if expect_kind == "result":
            if "result" not in reply or reply["result"] != expected:
                stats.problem(f"conn {self.index}: {kind} {id_!r}: expected {expected!r}, got {reply!r}")
            else:
                stats.served += 1
        elif error is None or error.get("code") != expected:
            stats.problem(f"conn {self.index}: {kind} {id_!r}: expected error {expected}, got {reply!r}")


class SoakFactory(ClientFactory):
    def __init__(self, runner: Runner, index: int, lifetime: float | None) -> None:
        self.runner = runner
        self.index = index
        self.lifetime = lifetime

    def buildProtocol(self, addr: Any) -> SoakClient:
        proto = SoakClient(self.runner, self.index, self.lifetime)
        self.runner.live.add(proto)
        self.runner.all.append(proto)
        return proto

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.runner.stats.problem(f"conn {self.index}: could not connect: {reason.value}")
        self.runner.opening -= 1


class Runner:
    """Keeps C{connections} connections going until the deadline, then checks."""

    def __init__(self, reactor: Any, port: int, connections: int, seconds: float, seed: int) -> None:
        self.reactor = reactor
        self.port = port
        self.target = connections
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.live: set[SoakClient] = set()
        self.all: list[SoakClient] = []
        self.finishing = False
        self.opening = 0
        self.index = 0

    def open(self, replacing: bool = False) -> None:
        self.index += 1
        # About a third of the connections drop at a random time and are
        # replaced, mostly by connections that drop again (steady churn).
        churn = 0.7 if replacing else 0.35
        lifetime = self.rng.expovariate(1 / 4.0) if self.rng.random() < churn else None
        self.opening += 1
        self.reactor.connectTCP("127.0.0.1", self.port, SoakFactory(self, self.index, lifetime), timeout=5)

    def lost(self, proto: SoakClient) -> None:
        self.live.discard(proto)
        if not self.finishing and proto.dropped:
            self.open(replacing=True)

    async def run(self) -> None:
        from twisted.internet.task import deferLater

        for _ in range(self.target):
            self.open()
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            await deferLater(self.reactor, 0.05, lambda: None)
            for proto in list(self.live):
                proto.fill()  # drops the ones whose lifetime is over
        # Stop sending; let the connections that stayed up get their last replies.
        for proto in self.live:
            proto.stopping = True
        settle = time.monotonic() + SETTLE
        while time.monotonic() < settle and any(p.outstanding() for p in self.live):
            await deferLater(self.reactor, 0.05, lambda: None)
        self.finishing = True
        for proto in self.all:
            if proto.up and not proto.dropped and proto.outstanding():
                missing = [repr(i) for i in list(proto.pending)[:5]]
                self.stats.problem(
                    f"conn {proto.index}: stayed up but {len(proto.pending)} request(s) "
                    f"({', '.join(missing)}...), {proto.null_expected} id-null and "
                    f"{proto.plain_expected} plain reply(ies) never answered"
                )
        for proto in list(self.live):
            proto.transport.loseConnection()
        while self.live:
            await deferLater(self.reactor, 0.05, lambda: None)


def start_server(port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / "twistd.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    twistd = Path(sys.executable).with_name("twistd")
    command = [str(twistd)] if twistd.exists() else [sys.executable, "-m", "twisted"]
    command += [
        "-n",
        "--pidfile=",
        f"--logfile={log}",
        "jsonservice",
        "--port",
        str(port),
        "--interface",
        "127.0.0.1",
        "--service",
        "soak.service:service",
        "--max-line-length",
        str(MAX_LINE),
        "--request-timeout",
        "10",
        "--shutdown-grace",
        "5",
    ]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"twistd exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, log
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("twistd did not start listening within 20 s")


def stop_server(proc: subprocess.Popen[bytes]) -> int | None:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def unhandled_errors(log: Path) -> list[str]:
    """Lines of the server log that report errors nobody handled."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ["(no twistd log)"]
    return [line for line in text.splitlines() if "Unhandled" in line or "RecursionError" in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "60")))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        port = free_port()
        proc, log = start_server(port, Path(tmp))
        rss_start = rss_kib(proc.pid)
        runner = Runner(reactor, port, args.connections, args.seconds, seed)
        rss_samples: list[int] = []
        outcome: list[Any] = []

        def sample() -> None:
            rss_samples.append(rss_kib(proc.pid).get("VmRSS", 0))
            if not outcome:
                reactor.callLater(1.0, sample)

        def done(result: Any) -> None:
            outcome.append(result)
            reactor.stop()

        began = time.monotonic()
        reactor.callWhenRunning(sample)
        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(runner.run()).addBoth(done))
        reactor.run()
        elapsed = time.monotonic() - began
        rss_end = rss_kib(proc.pid)
        status = stop_server(proc)
        unhandled = unhandled_errors(log)
        if outcome and isinstance(outcome[0], Failure):
            runner.stats.problem(f"the runner failed: {outcome[0].getTraceback()}")
        if status not in (0, -signal.SIGTERM):
            runner.stats.problem(f"twistd exit status {status} (expected a clean stop: 0 or -15)")
        for line in unhandled[:10]:
            runner.stats.problem(f"server log: {line}")

    stats = runner.stats
    figures = {
        "seed": seed,
        "seconds": round(elapsed, 1),
        "connections": args.connections,
        "connections_opened": stats.connections,
        "random_disconnects": stats.dropped,
        "messages_sent": sum(v for k, v in stats.sent.items() if k != "batch item"),
        "requests_with_id": sum(
            v for k, v in stats.sent.items() if k not in ("batch", "notification", "plain")
        ),
        "requests_served": stats.served,
        "served_per_second": round(stats.served / max(elapsed, 1e-9)),
        "sent_by_kind": dict(sorted(stats.sent.items())),
        "replies_by_kind": dict(sorted(stats.replies.items())),
        "errors_by_kind": dict(sorted(stats.errors.items())),
        "rss_kib_start": rss_start.get("VmRSS"),
        "rss_kib_end": rss_end.get("VmRSS"),
        "rss_kib_peak": max([rss_end.get("VmHWM", 0), *rss_samples]),
        "twistd_exit_status": status,
        "problems": stats.problems,
    }
    print(f"soak: {figures['seconds']} s, {args.connections} connections, seed {seed}")
    print(
        f"  connections opened {stats.connections}, random disconnects {stats.dropped}; "
        f"messages sent {figures['messages_sent']}"
    )
    print(f"  requests served (results) {stats.served} ({figures['served_per_second']}/s)")
    print(f"  sent by kind:    {json.dumps(figures['sent_by_kind'])}")
    print(f"  errors by kind:  {json.dumps(figures['errors_by_kind'])}")
    print(
        f"  server RSS: start {figures['rss_kib_start']} KiB, end {figures['rss_kib_end']} KiB, "
        f"peak {figures['rss_kib_peak']} KiB; twistd exit status {status}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    if stats.problems:
        print(f"FAILED: {len(stats.problems)} problem(s):")
        for text in stats.problems:
            print(f"  - {text}")
        return 1
    print("OK: every request on a connection that stayed up got exactly one reply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
