"""
The twistd plugin: real C{twistd -n jsonservice} processes talked to with
raw sockets like the classic example client, C{--help} listings, and the
options and C{makeService} of L{jsonservice.tap} without a process.

Every process runs in a temporary directory with C{--pidfile=}, is killed
in a C{finally}, and every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.python import usage

import jsonservice
from jsonservice import JSONService, Limits
from jsonservice.server import JSONServerService
from jsonservice.tap import DEFAULT_PORT, Options, makeService, port_description

#: Upper bound of every wait on a process or a socket.
WAIT = 10.0

BIN = Path(sys.executable).parent
TWISTD = BIN / "twistd"

#: Lines that would mean the server did not stop cleanly.
BAD_LOG = re.compile(r"Traceback|Unhandled|#(error|critical)\]|\[ERROR\]|\bCRITICAL\b")

#: The limit options: every L{Limits} field but the client-side call timeout.
LIMIT_OPTIONS = [
    "--" + field.name.replace("_", "-")
    for field in dataclasses.fields(Limits)
    if field.name != "call_timeout"
]

needs_twistd = pytest.mark.skipif(not TWISTD.exists(), reason=f"no twistd next to {sys.executable}")


def clean_env() -> dict[str, str]:
    """The environment for twistd, without PYTHONPATH: the cwd must do."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Twistd:
    """A running C{twistd -n jsonservice}, its port and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_listening(self) -> None:
        """Poll until the port accepts (at most L{WAIT} seconds)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"twistd exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        pytest.fail(f"twistd did not listen on {self.port} within {WAIT}s:\n{self.output()}")

    def terminate(self) -> int:
        """SIGTERM, then wait (bounded) for the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)

    def assert_clean_stop(self, status: int) -> None:
        output = self.output()
        assert status in (-signal.SIGTERM, 0), f"exit status {status}:\n{output}"
        bad = [line for line in output.splitlines() if BAD_LOG.search(line)]
        assert bad == [], output
        assert "Server Shut Down." in output


@contextmanager
def twistd(cwd: Path, port: int, *args: str) -> Iterator[Twistd]:
    """Start C{twistd -n jsonservice --port PORT ARGS} in C{cwd}; always kill it."""
    log = cwd / f"twistd-{port}.log"
    command = [str(TWISTD), "--pidfile=", "-n", "jsonservice", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        running = Twistd(proc, port, log)
        running.wait_listening()
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=WAIT)


def classic_client(port: int, message: Any) -> Any:
    """The classic example client, exactly: one json.dumps, no newline, recv(1024)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", port))
        sock.send(json.dumps(message).encode())
        return json.loads(sock.recv(1024).decode())


class LineSocket:
    """A blocking socket that reads newline-delimited JSON replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buffer = b""

    def send(self, *messages: Any) -> None:
        self.sock.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> Any:
        """One reply line (fails on EOF or after L{WAIT} seconds)."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed; unterminated rest: {self.buffer!r}"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def read_to_eof(self) -> list[Any]:
        """Every reply line until the server closes the connection."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        lines, self.buffer = self.buffer.splitlines(), b""
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> None:
        self.sock.close()


def rpc(method: str, params: Any = None, id: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id is not None:
        message["id"] = id
    return message


SERVICE_SOURCE = """
    from jsonservice import JSONService

    service = JSONService()

    @service.method
    def add(a, b):
        return a + b

    @service.message
    def on_message(message):
        return {"got": message, "from": "mysvc"}
"""


# -- real twistd processes ------------------------------------------------


@needs_twistd
def test_twistd_serves_a_service_module_from_the_cwd(
    service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    cwd = service_module(SERVICE_SOURCE, name="mysvc")
    with twistd(cwd, free_port(), "--service", "mysvc:service") as server:
        reply = classic_client(server.port, {"request": "hello", "n": [1, 2]})
        assert reply == {"got": {"request": "hello", "n": [1, 2]}, "from": "mysvc"}

        conn = LineSocket(server.port)
        try:
            conn.send(rpc("add", [2, 3], id=1), rpc("add", {"a": "x", "b": "y"}, id="two"))
            assert conn.read() == {"jsonrpc": "2.0", "result": 5, "id": 1}
            assert conn.read() == {"jsonrpc": "2.0", "result": "xy", "id": "two"}
        finally:
            conn.close()
        status = server.terminate()
    server.assert_clean_stop(status)
    assert "Received SIGTERM" in server.output()
    assert not (cwd / "twistd.pid").exists()


@needs_twistd
def test_twistd_demo_service(tmp_path: Path, free_port: Callable[..., int]) -> None:
    with twistd(tmp_path, free_port()) as server:
        assert classic_client(server.port, {"request": "hello"}) == {"message": "Hello from server"}

        conn = LineSocket(server.port)
        try:
            conn.send_raw(b'{"not": json}\n')
            error = conn.read()
            assert error["error"]["code"] == -32700
            assert error["id"] is None
            conn.send(rpc("echo", ["still here"], id=7), rpc("ping", id=8), "plain")
            assert conn.read() == {"jsonrpc": "2.0", "result": "still here", "id": 7}
            assert conn.read() == {"jsonrpc": "2.0", "result": "pong", "id": 8}
            assert conn.read() == {"message": "Hello from server"}
        finally:
            conn.close()
        status = server.terminate()
    server.assert_clean_stop(status)


SLOW_SOURCE = """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from jsonservice import JSONService

    def make():
        service = JSONService()

        @service.method
        def slow(index):
            return deferLater(reactor, 0.5, lambda: index)

        @service.method
        def ping():
            return "pong"

        return service
"""


@needs_twistd
def test_sigterm_under_load_answers_every_request(
    service_module: Callable[..., Path], free_port: Callable[..., int]
) -> None:
    """
    20 slow requests on 2 connections, then SIGTERM: every request gets
    exactly one reply before its connection closes.  The first
    connection's requests are known to be running (a ping sent after them
    came back first), so they must finish with their result; the second
    connection's were sent just before the signal: result or -32800.
    """
    cwd = service_module(SLOW_SOURCE, name="slowsvc")
    with twistd(cwd, free_port(), "--service", "slowsvc:make") as server:
        conns = [LineSocket(server.port) for _ in range(2)]
        sent = [list(range(10)), list(range(10, 20))]
        try:
            conns[0].send(*(rpc("slow", [index], id=index) for index in sent[0]), rpc("ping", id="sync"))
            assert conns[0].read() == {"jsonrpc": "2.0", "result": "pong", "id": "sync"}
            conns[1].send(*(rpc("slow", [index], id=index) for index in sent[1]))
            status = server.terminate()
            replies = [conn.read_to_eof() for conn in conns]
        finally:
            for conn in conns:
                conn.close()
    assert replies[0] == [{"jsonrpc": "2.0", "result": index, "id": index} for index in sent[0]]
    assert sorted(reply["id"] for reply in replies[1]) == sent[1], replies[1]
    for reply in replies[1]:
        if "error" in reply:
            assert reply["error"]["code"] == -32800, reply
        else:
            assert reply["result"] == reply["id"], reply
    server.assert_clean_stop(status)


@needs_twistd
def test_twistd_help_lists_the_plugin_and_its_options(tmp_path: Path) -> None:
    def run(*args: str) -> str:
        done = subprocess.run(
            [str(TWISTD), *args],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            timeout=WAIT * 2,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    listing = run("--help")
    assert re.search(r"^\s+jsonservice\s+\S", listing, re.MULTILINE), listing
    help_text = run("jsonservice", "--help")
    for option in ["--port", "--listen", "--interface", "--service", *LIMIT_OPTIONS]:
        assert option in help_text, f"{option} missing from:\n{help_text}"
    assert "Hello from server" in " ".join(help_text.split())


# -- Options, without a process -------------------------------------------


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_bare_port_binds_the_interface() -> None:
    assert parse("--port", "9000")["endpoints"] == ["tcp:9000:interface=127.0.0.1:backlog=1024"]
    assert parse("-p", "9000", "-i", "0.0.0.0")["endpoints"] == ["tcp:9000:interface=0.0.0.0:backlog=1024"]


def test_ipv6_interface_is_escaped() -> None:
    assert parse("--port", "9000", "--interface", "::1")["endpoints"] == [
        r"tcp6:9000:interface=\:\:1:backlog=1024"
    ]
    assert port_description("1", "fe80::1%eth0") == r"tcp6:1:interface=fe80\:\:1%eth0:backlog=1024"


def test_port_description_kept() -> None:
    assert parse("--port", "tcp:1234")["endpoints"] == ["tcp:1234"]
    assert parse("--port", "unix:/tmp/x.sock")["endpoints"] == ["unix:/tmp/x.sock"]


def test_default_port() -> None:
    assert DEFAULT_PORT == 8080
    assert parse()["endpoints"] == ["tcp:8080:interface=127.0.0.1:backlog=1024"]


def test_listen_repeats() -> None:
    options = parse("--listen", "tcp:1:interface=127.0.0.1", "-l", r"tcp6:2:interface=\:\:1")
    assert options["endpoints"] == ["tcp:1:interface=127.0.0.1", r"tcp6:2:interface=\:\:1"]
    # --port and --listen together: both.
    both = parse("--listen", "unix:/tmp/a.sock", "--port", "3")
    assert both["endpoints"] == ["tcp:3:interface=127.0.0.1:backlog=1024", "unix:/tmp/a.sock"]
    # A fresh Options does not share the list.
    assert parse()["listen"] == []


def test_limit_options() -> None:
    limits = parse("--max-line-length", "2048", "--request-timeout", "2.5", "--max-batch", "3")["limits"]
    assert limits == Limits(max_line_length=2048, request_timeout=2.5, max_batch=3)
    assert parse()["limits"] == Limits()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-batch", "lots", "--max-batch takes a number"),
        ("--max-line-length", "1.5", "--max-line-length takes a number"),
        ("--request-timeout", "soon", "--request-timeout takes a number"),
        ("--max-batch", "-1", "must not be negative"),
        ("--max-batch", "0", "at least 1"),
        ("--max-depth", "5000", "max_depth"),
    ],
)
def test_bad_limit_values(option: str, value: str, message: str) -> None:
    with pytest.raises(usage.UsageError, match=re.escape(message)):
        parse(option, value)


# -- --service loading ----------------------------------------------------


@pytest.fixture
def in_module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """
    Write modules into C{tmp_path} (the cwd) under fresh names; undo the
    C{sys.path} change C{load_service} makes and forget the modules after.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    names: list[str] = []

    def write(source: str) -> str:
        name = f"svc_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


MODULE = """
from jsonservice import JSONService

service = JSONService()

@service.method
def hello():
    return "hi"

class Holder:
    inner = service

def make():
    made = JSONService()
    made.add_method("made", lambda: 1)
    return made

def not_a_service():
    return 42

number = 7
"""


def test_service_object_from_the_cwd(in_module_dir: Callable[[str], str]) -> None:
    name = in_module_dir(MODULE)
    service = parse("--service", f"{name}:service")["service_object"]
    assert isinstance(service, JSONService)
    assert "hello" in service
    assert parse("--service", f"{name}:Holder.inner")["service_object"] is service


def test_service_factory(in_module_dir: Callable[[str], str]) -> None:
    name = in_module_dir(MODULE)
    service = parse("--service", f"{name}:make")["service_object"]
    assert "made" in service
    assert "hello" not in service


def test_default_service_is_the_demo() -> None:
    service = parse()["service_object"]
    assert {"echo", "ping"} <= set(service)
    assert service.message_handler is not None


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("number", "is int, not a JSONService or a callable returning one"),
        ("not_a_service", "is int, not a JSONService or a callable returning one"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_not_a_service(in_module_dir: Callable[[str], str], attr: str, message: str) -> None:
    name = in_module_dir(MODULE)
    with pytest.raises(usage.UsageError, match=re.escape(message)) as info:
        parse("--service", f"{name}:{attr}")
    assert str(info.value).startswith(f"--service {name}:{attr}: ")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon_here", "expected package.module:attr"),
        (":attr", "expected package.module:attr"),
        ("module:", "expected package.module:attr"),
        ("surely_not_a_module_xyz:service", "No module named 'surely_not_a_module_xyz'"),
    ],
)
def test_bad_service_spec(spec: str, message: str) -> None:
    with pytest.raises(usage.UsageError, match=re.escape(message)):
        parse("--service", spec)


# -- makeService ----------------------------------------------------------


def test_make_service_builds_listeners_and_drain() -> None:
    options = parse("--port", "0", "--listen", "tcp:0:interface=127.0.0.1", "--max-batch", "5")
    top = makeService(options)
    assert isinstance(top, MultiService)
    children = list(top)
    assert isinstance(children[0], JSONServerService)
    factory = children[0].factory
    assert factory.limits.max_batch == 5
    assert factory.service is options["service_object"]
    listeners = children[1:]
    assert len(listeners) == 2
    for listener in listeners:
        assert isinstance(listener, StreamServerEndpointService)
        assert listener.factory is factory


@pytest_twisted.ensureDeferred
async def test_make_service_serves_and_drains_in_process() -> None:
    from twisted.internet import reactor

    top = makeService(parse("--port", "0"))
    drain, listener = list(top)
    factory = drain.factory
    top.startService()
    try:
        port = await listener._waitingForPort.addTimeout(WAIT, reactor)
        proto = await jsonservice.connect(reactor, f"tcp:127.0.0.1:{port.getHost().port}").addTimeout(
            WAIT, reactor
        )
        assert await proto.call("ping").addTimeout(WAIT, reactor) == "pong"
        assert len(factory.connections) == 1
    finally:
        await top.stopService().addTimeout(WAIT, reactor)
    assert factory.draining
    assert not factory.connections


def test_max_connections_past_the_descriptor_limit_is_warned(monkeypatch: Any) -> None:
    import resource

    from twisted.logger import globalLogPublisher

    from jsonservice import tap

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        tap._warn_if_descriptors_short(10_000)
        tap._warn_if_descriptors_short(500)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    warned = [e for e in seen if "file descriptors" in e.get("log_format", "")]
    assert [e["wanted"] for e in warned] == [10_000]


@pytest.mark.parametrize(
    ("description", "said"),
    [
        ("bogus:1", "Unknown endpoint type"),
        ("tcp:abc", "invalid literal"),
        ("tcp6:8080:interface=::1", "escape colons"),
    ],
)
def test_bad_endpoints_are_usage_errors(description: str, said: str) -> None:
    with pytest.raises(usage.UsageError, match=said):
        parse("--listen", description)
    with pytest.raises(usage.UsageError, match=said):
        parse("--port", description)


def test_systemd_descriptions_are_left_to_start_time() -> None:
    assert parse("--listen", "systemd:domain=INET:index=0")["endpoints"][-1] == "systemd:domain=INET:index=0"
