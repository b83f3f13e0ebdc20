"""
Every example in C{examples/} is run here: loopback only, every wait
bounded, every server and process stopped at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

import jsonservice
from jsonservice.demo import make_demo_service
from jsonservice.testing import MemoryServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: The longest any single step may take before the test fails (not hangs).
STEP = 5.0


def load_example(name: str) -> ModuleType:
    """Import C{examples/<name>.py} as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def within(d: Deferred[Any], seconds: float = STEP) -> Deferred[Any]:
    """C{d} with a timeout, so that a broken test fails instead of hanging."""
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


def clean_env() -> dict[str, str]:
    """The environment for child processes: unbuffered, no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- web_and_json.py -----------------------------------------------------


# Twisted's own readBody warns about the HTTP/1.1 client transport it is given.
@pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")
@pytest_twisted.ensureDeferred
async def test_web_and_json_share_one_reactor() -> None:
    """The JSON service and the web site run side by side and share their notes."""
    from twisted.internet import reactor
    from twisted.web.client import Agent, HTTPConnectionPool, readBody

    example = load_example("web_and_json")
    loopback = "tcp:0:interface=127.0.0.1"
    json_port, web_port = await within(example.listen(reactor, loopback, loopback))
    client: jsonservice.JSONProtocol | None = None
    try:
        client = await within(jsonservice.connect(reactor, f"tcp:127.0.0.1:{json_port.getHost().port}"))
        assert await within(client.call("add_note", "buy <milk>")) == 1
        assert await within(client.call("add_note", "call Ada")) == 2
        assert await within(client.call("notes")) == ["buy <milk>", "call Ada"]

        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        base = f"http://127.0.0.1:{web_port.getHost().port}"
        response = await within(agent.request(b"GET", f"{base}/notes".encode()))
        assert response.code == 200
        assert json.loads(await within(readBody(response))) == ["buy <milk>", "call Ada"]
        response = await within(agent.request(b"GET", f"{base}/".encode()))
        page = (await within(readBody(response))).decode()
        assert "<li>buy &lt;milk&gt;</li><li>call Ada</li>" in page
        # The same service, mounted in the site: POST /rpc.
        from jsonservice.httpclient import HTTPClient

        over_http = HTTPClient(reactor, f"{base}/rpc")
        assert await within(over_http.call("add_note", "via HTTP")) == 3
        assert await within(over_http.call("notes")) == ["buy <milk>", "call Ada", "via HTTP"]
        await over_http.close()
    finally:
        if client is not None and client.transport is not None:
            client.transport.loseConnection()
        # The JSON port's factory drains: fires once the server side closed too.
        await within(json_port.factory.drain(grace=0))
        await within(json_port.stopListening())
        await within(web_port.stopListening())


def test_web_and_json_as_a_service() -> None:
    """make_service builds the .tac-style service tree: a drain and two listeners."""
    from twisted.application.internet import StreamServerEndpointService
    from twisted.internet import reactor

    from jsonservice import JSONServerService

    example = load_example("web_and_json")
    top = example.make_service(reactor)
    kinds = [type(child) for child in top]
    assert kinds == [JSONServerService, StreamServerEndpointService, StreamServerEndpointService]


# -- chat.py ---------------------------------------------------------------


def test_chat_in_memory_three_clients() -> None:
    """Events reach every subscriber of the room, through its client-side on_event handler."""
    chat = load_example("chat")
    server = MemoryServer(chat.make_chat_service())
    inbox: dict[str, list[tuple[str, str, str]]] = {"alice": [], "bob": [], "carol": []}
    pairs = {
        nick: server.connect(chat.make_listener(lambda *m, nick=nick: inbox[nick].append(m)))
        for nick in inbox
    }
    alice, bob, carol = pairs["alice"], pairs["bob"], pairs["carol"]
    # No nick yet: joining is refused by the authorization hook.
    refused = alice.failure_of(alice.client.call("rpc.subscribe", "room.lobby")).value
    assert (refused.code, refused.data) == (-32004, "choose a nick first: nick(name)")
    for nick, pair in pairs.items():
        pair.result_of(pair.client.call("nick", nick))
    assert alice.result_of(alice.client.call("rpc.subscribe", "room.lobby")) is True
    assert bob.result_of(bob.client.call("rpc.subscribe", topic="room.lobby")) is True
    carol.result_of(carol.client.call("rpc.subscribe", "room.kitchen"))
    # Rooms only.
    assert carol.failure_of(carol.client.call("rpc.subscribe", "admin.log")).value.code == -32004

    assert alice.result_of(alice.client.call("say", "lobby", "hi all")) is None
    assert inbox == {
        "alice": [("lobby", "alice", "hi all")],
        "bob": [("lobby", "alice", "hi all")],
        "carol": [],
    }
    # What bob's end received is an rpc.event notification (no id: nothing to answer).
    assert {
        "jsonrpc": "2.0",
        "method": "rpc.event",
        "params": {"topic": "room.lobby", "data": {"room": "lobby", "nick": "alice", "text": "hi all"}},
    } in bob.sent_by_server
    assert not [m for m in bob.sent_by_client if isinstance(m, dict) and "result" in m]

    # A subscriber that disconnects is forgotten; one that unsubscribes too.
    bob.disconnect()
    carol.result_of(carol.client.call("say", "lobby", "anyone?"))
    assert inbox["alice"][-1] == ("lobby", "carol", "anyone?")
    assert len(inbox["bob"]) == 1
    assert alice.result_of(alice.client.call("rpc.unsubscribe", "room.lobby")) is True
    carol.result_of(carol.client.call("say", "lobby", "gone?"))
    assert inbox["alice"][-1] == ("lobby", "carol", "anyone?")


@pytest_twisted.ensureDeferred
async def test_chat_over_loopback(jsonservice_server: Callable[..., Any]) -> None:
    """The same over real TCP: the event arrives before the say call returns."""
    chat = load_example("chat")
    server = jsonservice_server(chat.make_chat_service())
    heard: list[tuple[str, str, str]] = []
    got_it: Deferred[None] = Deferred()

    def on_message(*message: Any) -> None:
        heard.append(message)
        got_it.callback(None)

    listener = await server.connect(chat.make_listener(on_message))
    talker = await server.connect()
    for proto, nick in ((listener, "listener"), (talker, "talker")):
        await within(proto.call("nick", nick))
    await within(listener.call("rpc.subscribe", "room.lobby"))
    assert await within(talker.call("say", "lobby", "over TCP")) is None
    await within(got_it)
    assert heard == [("lobby", "talker", "over TCP")]


# -- service_module.py with twistd ---------------------------------------


def wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait until something accepts on 127.0.0.1:port (or the process died)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"twistd exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on port {port} in time")


def rpc_lines(port: int, *requests: Any) -> list[Any]:
    """Send requests on one connection; read one reply line per request."""
    with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        reader = sock.makefile("rb")
        return [json.loads(reader.readline()) for _ in requests]


@pytest.fixture
def twistd_service_module(
    free_port: Callable[..., int],
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """C{twistd -n jsonservice --service service_module:service} run in examples/."""
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
    port = free_port()
    log = EXAMPLES.parent / "build" / f"test-examples-twistd-{port}.log"
    log.parent.mkdir(exist_ok=True)
    command = [
        twistd,
        "-n",
        "--pidfile=",
        "jsonservice",
        "--service",
        "service_module:service",
        "--port",
        f"tcp:{port}:interface=127.0.0.1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=EXAMPLES, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, time.monotonic() + 15)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STEP)
        log.unlink(missing_ok=True)


def test_service_module_under_twistd(
    twistd_service_module: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    """The module loads from the cwd, its methods answer, SIGTERM stops twistd cleanly."""
    proc, port, log = twistd_service_module
    replies = rpc_lines(
        port,
        {"jsonrpc": "2.0", "method": "greet", "params": ["Ada"], "id": 1},
        {"jsonrpc": "2.0", "method": "greet", "params": {"name": "Bob", "greeting": "Hi"}, "id": 2},
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2, 3.5], "id": 3},
        {"jsonrpc": "2.0", "method": "divide", "params": [1, 0], "id": 4},
    )
    assert replies == [
        {"jsonrpc": "2.0", "result": "Hello, Ada!", "id": 1},
        {"jsonrpc": "2.0", "result": "Hi, Bob!", "id": 2},
        {"jsonrpc": "2.0", "result": 6.5, "id": 3},
        {
            "jsonrpc": "2.0",
            "error": {"code": 1, "message": "division by zero", "data": {"dividend": 1}},
            "id": 4,
        },
    ]
    # The classic client of the introduction works against it too.
    classic = subprocess.run(
        [sys.executable, str(EXAMPLES / "classic_client.py"), "localhost", str(port)],
        capture_output=True,
        text=True,
        timeout=STEP * 2,
        env=clean_env(),
    )
    assert classic.returncode == 0, classic.stderr
    assert "Hello from service_module" in classic.stdout

    proc.send_signal(signal.SIGTERM)
    status = proc.wait(STEP * 2)
    output = log.read_text(errors="replace")
    # twistd re-raises SIGTERM after a clean stop (DESIGN §8): -15 is success.
    assert status in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output
    assert "Main loop terminated." in output, output


# -- the classic client and server ---------------------------------------


@pytest_twisted.ensureDeferred
async def test_classic_client_against_jsonservice(jsonservice_server: Callable[..., Any]) -> None:
    """examples/classic_client.py, unchanged, against the demo service."""
    server = jsonservice_server(make_demo_service())
    command = [sys.executable, str(EXAMPLES / "classic_client.py"), "localhost", str(server.port)]
    run = await within(
        deferToThread(
            subprocess.run, command, capture_output=True, text=True, timeout=STEP * 2, env=clean_env()
        ),
        STEP * 3,
    )
    assert run.returncode == 0, run.stderr
    assert "Sent: " + json.dumps({"name": "John", "age": 30, "city": "New York"}) in run.stdout
    assert "JSON: {'message': 'Hello from server'}" in run.stdout


@pytest_twisted.ensureDeferred
async def test_jsonservice_client_against_classic_server(free_port: Callable[..., int]) -> None:
    """jsonservice's send() gets the classic server's unterminated reply (sent before it closes)."""
    from twisted.internet import reactor

    port = free_port()
    command = [sys.executable, "-u", str(EXAMPLES / "classic_server.py"), "127.0.0.1", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    try:
        assert proc.stdout is not None
        ready = await within(deferToThread(proc.stdout.readline))
        assert ready == b"Waiting for a client connection...\n"
        for message in ({"name": "John", "age": 30}, "just a string"):
            proto = await within(jsonservice.connect(reactor, f"tcp:127.0.0.1:{port}"))
            assert await within(proto.send(message)) == {"message": "Hello from server"}
    finally:
        proc.terminate()
        out, err = await within(deferToThread(proc.communicate, timeout=STEP))
    assert b"JSON: {'name': 'John', 'age': 30}" in out, out + err
    assert b"JSON: just a string" in out, out + err
