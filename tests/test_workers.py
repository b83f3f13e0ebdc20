"""
C{--workers N}: a supervisor, N worker processes on one listening socket.

The end-to-end test runs a real C{twistd --workers 3}: connections land on
several worker pids; a worker killed with SIGKILL loses no other worker's
requests and is replaced; SIGTERM stops everything cleanly.  The rest are
fast checks of the options, the restart backoff (on a fake clock) and the
inherited-socket service (in process).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.python.failure import Failure

import jsonservice
from jsonservice import workers
from jsonservice.demo import make_demo_service
from jsonservice.server import JSONServerFactory
from jsonservice.tap import Options, makeService
from jsonservice.workers import (
    MAX_RESTART_DELAY,
    RESTART_DELAY,
    InheritedPortService,
    TCPAddress,
    WorkerSupervisor,
    parse_tcp_description,
)

from .ops_helpers import (
    TWISTD,
    LineClient,
    alive,
    kill,
    kill_pids,
    proc_children,
    start_twistd,
    wait_for,
    wait_port,
)

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
needs_twistd = pytest.mark.skipif(not TWISTD.exists(), reason=f"no twistd next to {sys.executable}")

WORKER_SERVICE = """
import os

from twisted.internet import reactor
from twisted.internet.task import deferLater

from jsonservice import JSONService

service = JSONService()


@service.method
def pid():
    "The pid of the worker that answers."
    return os.getpid()


@service.method
def slow(seconds):
    "Answer the worker's pid after a while."
    return deferLater(reactor, seconds, os.getpid)
"""


# -- options ---------------------------------------------------------------


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_workers_default_to_one_process() -> None:
    options = parse("--port", "0")
    assert options["workers"] == 1
    assert options["inherit-fd"] is None
    assert "worker_address" not in options


def test_workers_take_the_port_and_interface() -> None:
    options = parse("--workers", "3", "--port", "8123", "--interface", "127.0.0.2")
    assert options["worker_address"] == TCPAddress("127.0.0.2", 8123)
    assert options["argv"] == ["--workers", "3", "--port", "8123", "--interface", "127.0.0.2"]


@pytest.mark.parametrize(
    ("description", "address"),
    [
        ("tcp:8080", TCPAddress("", 8080)),
        ("tcp:8080:interface=127.0.0.1", TCPAddress("127.0.0.1", 8080)),
        ("tcp:port=8080:backlog=128:interface=0.0.0.0", TCPAddress("0.0.0.0", 8080, 128)),
        (r"tcp6:8080:interface=\:\:1", TCPAddress("::1", 8080)),
        ("tcp6:8080", TCPAddress("::", 8080)),
    ],
)
def test_parse_tcp_description(description: str, address: TCPAddress) -> None:
    assert parse_tcp_description(description) == address


@pytest.mark.parametrize(
    "args",
    [
        ["--workers", "2", "--listen", "unix:/tmp/x.sock"],
        ["--workers", "2", "--listen", "ssl:8443:privateKey=k.pem"],
        ["--workers", "2", "--listen", "systemd:domain=INET:index=0"],
        ["--workers", "2", "--listen", "haproxy:tcp:8080"],
        ["--workers", "2", "--listen", "tcp:8080", "--listen", "tcp:8081"],
        ["--workers", "2", "--listen", "tcp:interface=127.0.0.1"],
        ["--workers", "0"],
        ["--workers", "two"],
        ["--inherit-fd", "x"],
    ],
)
def test_workers_refuse_what_they_cannot_share(args: list[str]) -> None:
    with pytest.raises(usage.UsageError, match=r"workers|inherit-fd|port|endpoint"):
        parse(*args)


def test_make_service_with_workers_is_a_supervisor() -> None:
    options = parse("--workers", "4", "--port", "0", "--shutdown-grace", "3")
    top = makeService(options)
    assert isinstance(top, MultiService)
    [supervisor] = list(top)
    assert isinstance(supervisor, WorkerSupervisor)
    assert supervisor.count == 4
    assert supervisor.shutdown_grace == 3.0
    command = supervisor.worker_command()
    assert command[:3] == [sys.executable, "-m", "jsonservice.workers"]
    # The plugin options as given, then the worker's own (the last one wins).
    given = ["--workers", "4", "--port", "0", "--shutdown-grace", "3"]
    assert command[3:] == [*given, "--workers=1", "--inherit-fd=3"]
    worker = parse(*command[3:])
    assert worker["workers"] == 1
    assert worker["inherit-fd"] == 3


# -- restart backoff on a fake clock --------------------------------------


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    """A clock that 'spawns' processes by numbering them."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[Any] = []

    def spawnProcess(self, proto: Any, executable: str, args: list[str], **kwargs: Any) -> FakeProcess:
        assert kwargs["childFDs"][3] >= 0
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append(proto)
        proto.makeConnection(process)
        return process


def die(proto: Any, code: int = 1) -> None:
    proto.processEnded(Failure(ProcessTerminated(exitCode=code)))


def test_supervisor_restarts_with_backoff_and_not_while_stopping() -> None:
    reactor = FakeReactor()
    supervisor = WorkerSupervisor(TCPAddress("127.0.0.1", 0), [], 2, shutdown_grace=1.0, reactor=reactor)
    supervisor.privilegedStartService()
    supervisor.startService()
    try:
        assert len(reactor.spawned) == 2
        assert set(supervisor.workers) == {1000, 1001}
        delays = []
        for _ in range(7):
            die(reactor.spawned[-1] if len(reactor.spawned) > 2 else reactor.spawned[1])
            call = reactor.getDelayedCalls()[0]
            delays.append(call.getTime() - reactor.seconds())
            reactor.advance(delays[-1])
        assert delays == [RESTART_DELAY * 2**n for n in range(5)] + [MAX_RESTART_DELAY] * 2
        # A worker that lived long is restarted quickly again.
        reactor.advance(100)
        die(reactor.spawned[-1])
        assert reactor.getDelayedCalls()[0].getTime() - reactor.seconds() == RESTART_DELAY
        reactor.advance(RESTART_DELAY)
        assert len(supervisor.workers) == 2
        # Stopping: SIGTERM to each, no restart, SIGKILL after the grace + margin.
        live = list(supervisor.workers.values())
        deadline = reactor.seconds() + 1.0 + workers.KILL_MARGIN
        stopped = supervisor.stopService()
        assert [w.transport.signals for w in live] == [["TERM"], ["TERM"]]  # type: ignore[union-attr]
        die(live[0], 0)
        assert [call.getTime() for call in reactor.getDelayedCalls()] == [deadline]
        assert len(supervisor.workers) == 1
        reactor.advance(1.0 + workers.KILL_MARGIN)
        assert live[1].transport.signals == ["TERM", "KILL"]  # type: ignore[union-attr]
        assert not stopped.called
        die(live[1], -9)
        assert stopped.called
        assert not reactor.getDelayedCalls()
    finally:
        if supervisor.socket is not None:
            supervisor.socket.close()


# -- the inherited socket, in process ---------------------------------------


@pytest_twisted.ensureDeferred
async def test_inherited_port_service_serves_and_stops(reactor: Any) -> None:
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(10)
    port = listening.getsockname()[1]
    factory = JSONServerFactory(make_demo_service())
    service = InheritedPortService(os.dup(listening.fileno()), factory, reactor=reactor, watch_parent=False)
    listening.close()
    service.startService()
    proto = None
    try:
        d: Deferred[Any] = jsonservice.connect(reactor, f"tcp:127.0.0.1:{port}")
        proto = await d.addTimeout(5, reactor)
        assert await proto.call("echo", "hi").addTimeout(5, reactor) == "hi"
    finally:
        if proto is not None:
            proto.transport.loseConnection()
        await service.stopService()
        await factory.drain(grace=0).addTimeout(5, reactor)


# -- the real thing ---------------------------------------------------------


@linux_only
@needs_twistd
def test_workers_share_survive_a_kill_and_stop_cleanly(
    service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    cwd = service_module(WORKER_SERVICE, name="wsvc")
    port = free_port()
    started = time.monotonic()
    proc = start_twistd(
        cwd,
        ["--workers", "3", "--port", str(port), "--service", "wsvc:service", "--shutdown-grace", "2"],
    )
    seen: set[int] = set()
    clients: list[LineClient] = []
    log = cwd / "twistd.log"
    try:
        first = wait_for(lambda: len(proc_children(proc.pid)) == 3 and proc_children(proc.pid), "3 workers")
        seen |= first
        wait_for(lambda: log.read_text().count("(inherited socket)") >= 3, "3 workers serving", 15)
        wait_port(port, proc)

        # ~30 connections land on several workers.
        by_pid: dict[int, list[LineClient]] = {}
        for _ in range(30):
            client = LineClient("127.0.0.1", port)
            clients.append(client)
            by_pid.setdefault(client.call("pid"), []).append(client)
        assert set(by_pid) <= first
        assert len(by_pid) >= 2, f"all 30 connections went to one worker: {by_pid.keys()}"

        # Requests in flight on worker `survivor` while worker `victim` is killed.
        survivor, victim = sorted(by_pid, key=lambda pid: -len(by_pid[pid]))[:2]
        busy = by_pid[survivor][0]
        ids = [busy.send("slow", 1.0) for _ in range(5)]
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        replies = [busy.receive() for _ in ids]
        assert sorted(reply["id"] for reply in replies) == ids
        assert {reply.get("result") for reply in replies} == {survivor}
        # The other connections of the survivors still work; the victim's are gone.
        for pid, conns in by_pid.items():
            for client in conns:
                if pid == victim:
                    with pytest.raises((ConnectionError, OSError)):
                        client.call("pid")
                else:
                    assert client.call("pid") == pid

        # A replacement worker starts, and serves.
        def replaced() -> set[int]:
            children = proc_children(proc.pid)
            return children if len(children) == 3 and children - first else set()

        now = wait_for(replaced, "a replacement worker")
        seen |= now
        [new] = now - first
        assert victim not in now
        wait_for(lambda: f"Worker {new} serving" in log.read_text(), "the replacement to serve")
        answered: set[int] = set()
        for _ in range(60):
            client = LineClient("127.0.0.1", port)
            clients.append(client)
            answered.add(client.call("pid"))
            if new in answered:
                break
        assert new in answered, f"the new worker {new} never answered ({answered})"

        # SIGTERM: every worker drains and exits, then the supervisor.
        for client in clients:
            client.close()
        clients.clear()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(2 + workers.KILL_MARGIN + 5)
        assert status in (0, -signal.SIGTERM), status
        assert not [pid for pid in now if alive(pid)]
        output = log.read_text()
        for pid in now:
            assert f"Worker {pid} stopped" in output
        assert f"Worker {victim} died" in output
        assert "Traceback" not in output, output
        assert time.monotonic() - started < 20
    finally:
        for client in clients:
            client.close()
        kill(proc)
        kill_pids({pid for pid in seen if alive(pid)})


@linux_only
@needs_twistd
def test_workers_exit_when_the_supervisor_is_killed(
    service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    cwd = service_module(WORKER_SERVICE, name="wsvc")
    port = free_port()
    proc = start_twistd(cwd, ["--workers", "2", "--port", str(port), "--service", "wsvc:service"])
    children: set[int] = set()
    try:
        children = wait_for(lambda: len(proc_children(proc.pid)) == 2 and proc_children(proc.pid), "workers")
        wait_for(lambda: (cwd / "twistd.log").read_text().count("(inherited socket)") >= 2, "serving", 15)
        proc.kill()
        proc.wait(5)
        wait_for(lambda: not [pid for pid in children if alive(pid)], "orphaned workers to exit")
    finally:
        kill(proc)
        kill_pids({pid for pid in children if alive(pid)})


def test_worker_log_lines_are_relayed_with_the_worker_pid() -> None:
    from twisted.logger import Logger, LogLevel, eventAsJSON, globalLogPublisher

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        supervisor = WorkerSupervisor(TCPAddress("127.0.0.1", 0), [], 1, shutdown_grace=1.0, reactor=Clock())
        proto = workers._WorkerProcess(supervisor, 0)
        proto.pid = 4242
        captured: list[dict[str, Any]] = []
        Logger(namespace="x", observer=captured.append).info("hello {who}", who="you")
        record = "\x1e" + eventAsJSON(captured[0]) + "\n"
        data = (record + "raw line\n").encode()
        proto.outReceived(data[:7])
        proto.outReceived(data[7:])
    finally:
        globalLogPublisher.removeObserver(events.append)
    relayed = [e for e in events if e.get("worker_pid") == 4242]
    assert len(relayed) == 1
    assert relayed[0]["log_system"] == "worker-4242"
    assert relayed[0]["log_level"] == LogLevel.info
    assert relayed[0]["who"] == "you"
    assert any(e.get("text") == "raw line" for e in events)
    assert re.search("hello", str(relayed[0]["log_format"]))


@linux_only
@needs_twistd
def test_metrics_with_workers_sum_every_worker(
    service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    """--metrics with --workers: the supervisor serves the sum of its workers' metrics."""
    pytest.importorskip("prometheus_client")
    import urllib.request

    cwd = service_module(WORKER_SERVICE, name="msvc")
    port, metrics_port = free_port(), free_port()
    proc = start_twistd(
        cwd,
        [
            "--workers", "2", "--port", str(port), "--service", "msvc:service",
            "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1", "--shutdown-grace", "2",
        ],
    )  # fmt: skip
    log = cwd / "twistd.log"
    clients: list[LineClient] = []
    try:
        wait_for(lambda: log.read_text().count("(inherited socket)") >= 2, "2 workers serving", 15)
        wait_port(port, proc)
        pids: set[int] = set()
        for _ in range(20):
            client = LineClient("127.0.0.1", port)
            clients.append(client)
            pids.add(client.call("pid"))
        assert len(pids) == 2, "every connection went to one worker"

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
                return str(page.read().decode())

        def requests_counted() -> float:
            text = scrape()
            counted = re.findall(r'jsonservice_requests_total\{method="pid",outcome="ok"\} (\S+)', text)
            return sum(float(value) for value in counted)

        wait_for(lambda: requests_counted() == 20, "20 requests summed over both workers", 10)
        wait_for(lambda: "jsonservice_connections 20.0" in scrape(), "20 open connections (gauges)", 10)
        # The topic gauges are summed too (both workers in process: publishing works).
        text = scrape()
        assert "jsonservice_pubsub_up 1.0" in text
        assert "jsonservice_events_dropped_total 0.0" in text
    finally:
        for client in clients:
            client.close()
        proc.terminate()  # a clean stop removes the supervisor's metrics directory
        try:
            proc.wait(15)
        finally:
            kill(proc)
