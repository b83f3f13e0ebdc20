"""
deploy/haproxy.cfg for real: three C{twistd jsonservice} instances listening
with Twisted's C{haproxy:} wrapper behind a real HAProxy (Debian's package)
running the shipped configuration, with only its ports (free ones) and its
check interval (faster) changed.  Requests through the proxy are answered,
spread over the instances, and the instances see the real client address
from the PROXY header; the JSON-RPC health check (rpc.ping) passes, and
notices a stopped instance, which is routed around.  The chat example runs
on two instances behind it, its events through a real Redis.  Skipped when
there is no haproxy binary (or, for the chat, no redis-server).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .ops_helpers import TWISTD, LineClient, kill, start_twistd, wait_for, wait_port
from .redis_helpers import REDIS_SERVER, RedisServer

HAPROXY = shutil.which("haproxy")
CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"

pytestmark = [
    pytest.mark.skipif(HAPROXY is None, reason="no haproxy binary on PATH (apt-get install haproxy)"),
    pytest.mark.skipif(not TWISTD.exists(), reason=f"no twistd next to {sys.executable}"),
]

BACKEND_SERVICE = """
import os

from jsonservice import JSONService

service = JSONService()


@service.method(context=True)
def where(ctx):
    "Which instance answers, and the client address it sees."
    return [os.getpid(), ctx.peer.host, ctx.peer.port]

"""


def test_deploy_config_is_valid() -> None:
    assert HAPROXY is not None
    result = subprocess.run([HAPROXY, "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def make_config(frontend: int, backends: list[int], admin: Path) -> str:
    """
    The shipped configuration with test ports and a quick check interval,
    plus a runtime API socket at C{admin} (to read the check results).
    """
    replacements = {
        "127.0.0.1:8080": f"127.0.0.1:{frontend}",
        "inter 2s": "inter 100ms",
        # Whatever the fd limit here (haproxy needs two per connection).
        "maxconn 8000": "maxconn 500",
    }
    for number, port in zip((8081, 8082, 8083), backends, strict=True):
        replacements[f"127.0.0.1:{number}"] = f"127.0.0.1:{port}"
    counts = dict.fromkeys(replacements, 0)
    lines = []
    for line in CONFIG.read_text().splitlines():
        if not line.lstrip().startswith("#"):
            for old, new in replacements.items():
                pattern = re.escape(old) + r"\b"
                counts[old] += len(re.findall(pattern, line))
                line = re.sub(pattern, new, line)
        lines.append(line)
        if line == "global":
            lines.append(f"    stats socket {admin} mode 600 level user")
    assert all(count == 1 for count in counts.values()), f"deploy/haproxy.cfg changed shape: {counts}"
    return "\n".join(lines) + "\n"


def check_statuses(admin: Path, field: str = "check_status") -> dict[str, str]:
    """The last health check result (or another C{show stat} field) of each backend server."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(admin))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    rows = list(csv.reader(io.StringIO(data.decode().lstrip("# "))))
    header = rows[0]
    statuses = {}
    for row in rows[1:]:
        record = dict(zip(header, row, strict=False))
        if record.get("pxname") == "jsonservice" and record.get("svname", "").startswith("app"):
            statuses[record["svname"]] = record.get(field, "").lstrip("* ")
    return statuses


@pytest.fixture
def cluster(
    tmp_path: Path, service_module: Callable[..., Path], free_port: Callable[..., int]
) -> Iterator[tuple[int, list[int], list[subprocess.Popen[bytes]]]]:
    """Three backends and haproxy in front: (frontend port, backend ports, backend processes)."""
    cwd = service_module(BACKEND_SERVICE, name="backend")
    backends = [free_port() for _ in range(3)]
    frontend = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for index, port in enumerate(backends):
            listen = f"haproxy:tcp:{port}:interface=127.0.0.1"
            procs.append(
                start_twistd(cwd, ["--listen", listen, "--service", "backend:service"], f"backend{index}.log")
            )
        for port, proc in zip(backends, procs, strict=True):
            wait_port(port, proc)
        config = tmp_path / "haproxy.cfg"
        config.write_text(make_config(frontend, backends, tmp_path / "admin.sock"))
        with (tmp_path / "haproxy.log").open("wb") as log:
            assert HAPROXY is not None
            haproxy = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(config)],
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        procs.append(haproxy)
        wait_port(frontend, haproxy)
        yield frontend, backends, procs[:3]
    finally:
        for proc in procs:
            kill(proc)


def test_requests_through_haproxy(
    cluster: tuple[int, list[int], list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    started = time.monotonic()
    frontend, _, procs = cluster

    # The JSON-RPC health check (rpc.ping, after a PROXY header) passes on every
    # instance: haproxy reports a layer 7 success for each.
    def checks_passed() -> bool:
        statuses = check_statuses(tmp_path / "admin.sock")
        return sorted(statuses) == ["app1", "app2", "app3"] and set(statuses.values()) == {"L7OK"}

    wait_for(checks_passed, "the health checks to pass", 5)
    log = tmp_path / "haproxy.log"

    # Six connections at once: least-connections spreads them over the three.
    clients = [LineClient("127.0.0.1", frontend) for _ in range(6)]
    try:
        pids = set()
        for client in clients:
            ids = [client.send("where") for _ in range(5)]
            replies = [client.receive() for _ in ids]
            assert [reply["id"] for reply in replies] == ids
            answers = {tuple(reply["result"]) for reply in replies}
            assert len(answers) == 1, answers
            [(pid, host, port)] = answers
            # The real client address, from the PROXY header haproxy sent.
            assert (host, port) == client.sock.getsockname()
            pids.add(pid)
        assert pids == {proc.pid for proc in procs}
    finally:
        for client in clients:
            client.close()

    # An instance goes away: its check fails and the others take the traffic.
    procs[0].send_signal(signal.SIGTERM)
    procs[0].wait(10)
    wait_for(lambda: "jsonservice/app1 is DOWN" in log.read_text(), "the check to notice", 5)
    for _ in range(6):
        client = LineClient("127.0.0.1", frontend)
        try:
            pid, host, _ = client.call("where")
        finally:
            client.close()
        assert pid in {procs[1].pid, procs[2].pid}
        assert host == "127.0.0.1"
    assert time.monotonic() - started < 20


def test_proxy_header_is_required_by_backends(
    cluster: tuple[int, list[int], list[subprocess.Popen[bytes]]],
) -> None:
    _, backends, _ = cluster
    with socket.create_connection(("127.0.0.1", backends[0]), timeout=5) as sock:
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
        assert sock.recv(100) == b""


@pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server on PATH (apt-get install redis-server)")
def test_chat_example_on_two_instances_behind_haproxy(tmp_path: Path, free_port: Callable[..., int]) -> None:
    """examples/chat.py on two instances behind deploy/haproxy.cfg, events through Redis."""
    started = time.monotonic()
    redis = RedisServer(tmp_path)
    redis.start()
    (tmp_path / "chat.py").write_text((CONFIG.parent.parent / "examples" / "chat.py").read_text())
    backends = [free_port() for _ in range(3)]  # the third stays down: two instances
    frontend = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[LineClient] = []
    try:
        for index, port in enumerate(backends[:2]):
            args = [
                "--listen",
                f"haproxy:tcp:{port}:interface=127.0.0.1",
                "--service",
                "chat:make_chat_service",
            ]
            procs.append(start_twistd(tmp_path, [*args, "--pubsub", redis.url], f"chat{index}.log"))
        for port, proc in zip(backends, procs, strict=False):
            wait_port(port, proc)
        config = tmp_path / "haproxy.cfg"
        config.write_text(make_config(frontend, backends, tmp_path / "admin.sock"))
        assert HAPROXY is not None
        with (tmp_path / "haproxy.log").open("wb") as log:
            procs.append(
                subprocess.Popen([HAPROXY, "-db", "-f", str(config)], cwd=tmp_path, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            )  # fmt: skip
        wait_port(frontend, procs[-1])

        def two_up() -> bool:
            statuses = check_statuses(tmp_path / "admin.sock")
            return statuses.get("app1") == "L7OK" and statuses.get("app2") == "L7OK"

        wait_for(two_up, "both chat instances to pass the health check", 5)
        alice, bob = LineClient("127.0.0.1", frontend), LineClient("127.0.0.1", frontend)
        clients += [alice, bob]
        assert alice.call("nick", "alice") == "alice"
        assert bob.call("nick", "bob") == "bob"
        # Least connections: one client on each instance.
        sessions = check_statuses(tmp_path / "admin.sock", "scur")
        assert (sessions["app1"], sessions["app2"]) == ("1", "1"), sessions
        assert alice.call("rpc.subscribe", "room.lobby") is True
        assert bob.call("say", "lobby", "hello from the other instance") is None
        message = alice.receive()
        assert message == {
            "jsonrpc": "2.0",
            "method": "rpc.event",
            "params": {
                "topic": "room.lobby",
                "data": {"room": "lobby", "nick": "bob", "text": "hello from the other instance"},
            },
        }
        assert time.monotonic() - started < 20
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            kill(proc)
        redis.stop()
