"""
The README's examples, run as written: every Python block and every shell
session (C{$ command} lines followed by their output).  A README example that
breaks fails the suite.

What the harness changes, and only that: servers listen on a free port of
127.0.0.1 instead of 8080 (the examples' C{8080} becomes that port, and the CLI
finds it through C{JSONSERVICE_CONNECT}, which the README documents), and
C{.venv/bin/} means this interpreter's scripts directory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
STEP = 20.0  # seconds any one command may take


def python_blocks() -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```$", README, flags=re.S | re.M)


def block(containing: str) -> str:
    """The one Python block that contains C{containing}."""
    [found] = [code for code in python_blocks() if containing in code]
    return found


def sessions() -> list[list[tuple[str, list[str]]]]:
    """
    The README's shell sessions: indented blocks of C{$ command} lines, each
    with the output lines shown after it.
    """
    found: list[list[tuple[str, list[str]]]] = []
    for chunk in re.findall(r"(?:^    .*\n)+", README, flags=re.M):
        lines = [line[4:] for line in chunk.splitlines()]
        if not lines[0].startswith("$ "):
            continue
        steps: list[tuple[str, list[str]]] = []
        for line in lines:
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip():
                steps[-1][1].append(line)
        found.append(steps)
    return found


def session(starting: str) -> list[tuple[str, list[str]]]:
    """The one session whose first command starts with C{starting}."""
    [found] = [steps for steps in sessions() if steps[0][0].startswith(starting)]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}: {process.stdout.read()}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {port} within {STEP}s")


def wait_for_bind(port: int, process: subprocess.Popen[Any]) -> None:
    """Wait until something binds C{port}, without connecting (the classic server serves one connection)."""
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound {port} within {STEP}s")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding myservice.py as the Quick start writes it, with the login handler added."""
    where = tmp_path_factory.mktemp("readme")
    quick_start = block("# myservice.py")
    (where / "myservice.py").write_text(quick_start + "\n" + block("def login"), encoding="utf-8")
    return where


def environment(workdir: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(ROOT), env.get("PYTHONPATH", "")])
    env["JSONSERVICE_CONNECT"] = f"tcp:127.0.0.1:{port}"
    return env


class Running:
    """A background process of an example, stopped at the end."""

    def __init__(self, argv: list[str], workdir: Path, port: int, probe: bool = True) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=environment(workdir, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if probe:
            wait_for(port, self.process)
        else:
            wait_for_bind(port, self.process)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STEP)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        process.stop()


def _completed(argv: list[str], workdir: Path, port: int) -> str:
    """Run C{argv} for an example; it must succeed; its stdout."""
    done = subprocess.run(
        argv,
        cwd=workdir,
        env=environment(workdir, port),
        capture_output=True,
        text=True,
        timeout=STEP,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def run(command: str, workdir: Path, port: int) -> str:
    """Run one shown command (C{.venv/bin/} is this interpreter's) and return its stdout."""
    return _completed(shlex.split(command.replace(".venv/bin/", f"{BIN}/")), workdir, port)


def run_python(code: str, workdir: Path, port: int) -> list[str]:
    """Run a Python block as a program (8080 is the free port); its stdout lines."""
    return _completed([sys.executable, "-c", code.replace("8080", str(port))], workdir, port).splitlines()


def twistd(*args: str) -> list[str]:
    return [str(BIN / "twistd"), "--pidfile=", "-n", "jsonservice", *args]


def test_the_readme_has_the_examples_this_harness_runs() -> None:
    assert len(python_blocks()) == 13
    assert len(sessions()) == 4


def test_quick_start_session(workdir: Path, running: list[Running]) -> None:
    """The demo server of `make run`, and the two commands of "Try it"."""
    port = free_port()
    running.append(Running(twistd("--port", str(port)), workdir, port))
    for command, shown in session(".venv/bin/jsonservice call echo"):
        assert run(command, workdir, port).splitlines() == shown


def test_service_module_session(workdir: Path, running: list[Running]) -> None:
    """Quick start: serve myservice.py with twistd, call it from the CLI."""
    port = free_port()
    (start, shown_start), *calls = session(".venv/bin/twistd --pidfile= -n jsonservice --service")
    assert shown_start == []
    argv = shlex.split(start.replace(".venv/bin/", f"{BIN}/"))
    assert argv[-2:] == ["--port", "8080"]
    running.append(Running([*argv[:-1], str(port)], workdir, port))
    for command, shown in calls:
        assert run(command, workdir, port).splitlines() == shown


def test_classic_server_session(workdir: Path, running: list[Running]) -> None:
    """The classic example server (its documented HOST PORT arguments pick the port)."""
    port = free_port()
    (start, _), *rest = session("python examples/classic_server.py")
    assert start == "python examples/classic_server.py &"
    server = ROOT / "examples" / "classic_server.py"
    running.append(Running([sys.executable, str(server), "127.0.0.1", str(port)], workdir, port, probe=False))
    for command, shown in rest:
        assert run(command, workdir, port).splitlines() == shown


def test_embedding_client_and_reconnecting_client_blocks(workdir: Path, running: list[Running]) -> None:
    """The embedding example serves; the client-library and reconnecting examples call it."""
    port = free_port()
    embedding = block("reactor.run()")
    running.append(Running([sys.executable, "-c", embedding.replace("8080", str(port))], workdir, port))
    assert run_python(block("# or an endpoint object"), workdir, port) == [
        "19",
        "19",
        "{'message': 'Hello from server'}",
        "-32601 Method not found no method named 'nope'",
    ]
    assert run_python(block("ReconnectingClient"), workdir, port) == ["pong"]


def test_login_block(workdir: Path) -> None:
    """The context handler: state, a notification to the caller, the peer's address."""
    sys.path.insert(0, str(workdir))
    try:
        import myservice  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(workdir))
    from jsonservice import JSONService
    from jsonservice.testing import connected_pair

    heard: list[str] = []
    client_service = JSONService()
    client_service.add_method("welcome", heard.append)
    pair = connected_pair(myservice.service, client_service)
    greeting = pair.result_of(pair.client.call("login", "jo"))
    assert greeting.startswith("hello jo from ")
    assert heard == ["jo"]
    assert pair.server.state["user"] == "jo"


def test_testing_blocks(workdir: Path) -> None:
    """The pytest, trial and pytest-twisted examples pass as written."""
    (workdir / "test_pair.py").write_text(block("def test_subtract():"), encoding="utf-8")
    (workdir / "test_tcp.py").write_text(block("async def test_over_tcp"), encoding="utf-8")
    (workdir / "test_trial.py").write_text(block("SynchronousTestCase"), encoding="utf-8")
    env = environment(workdir, 0)
    for argv in (
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_pair.py", "test_tcp.py"],
        [sys.executable, "-m", "twisted.trial", "test_trial"],
    ):
        done = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_topics_blocks(workdir: Path, running: list[Running]) -> None:
    """The newsroom service under twistd; the subscriber block hears its event, the hook refuses."""
    (workdir / "newsroom.py").write_text(block("# newsroom.py"), encoding="utf-8")
    port = free_port()
    running.append(Running(twistd("--port", str(port), "--service", "newsroom:service"), workdir, port))
    assert run_python(block("@listener.on_event"), workdir, port) == [
        "True",
        "-32004 not allowed to subscribe to 'inbox.bob'",
        "news.tech {'text': 'hello'}",
    ]


def test_http_session_and_blocks(workdir: Path, running: list[Running]) -> None:
    """--http: curl and the CLI over WebSocket; the WebSocket client block; the mounting block."""
    port, http_port = free_port(), free_port()
    (start, _), *steps = session(".venv/bin/twistd --pidfile= -n jsonservice --port 8080 --http")
    argv = shlex.split(start.replace(".venv/bin/", f"{BIN}/").replace("8081", str(http_port)))
    running.append(Running([a.replace("8080", str(port)) for a in argv], workdir, port))
    wait_for(http_port, running[-1].process)
    for command, shown in steps:
        command = command.replace("8081", str(http_port))
        if command.startswith("curl ") and shutil.which("curl") is None:
            pytest.skip("no curl here")
        assert run(command, workdir, port).splitlines() == shown
    client = block('"ws://127.0.0.1:8081/ws"').replace("8081", str(http_port))
    assert run_python(client, workdir, port) == ["over WebSocket"]
    mounting = block("harden_site(Site(root), factory)")
    check = """
from twisted.internet.testing import StringTransport
from twisted.internet.address import IPv4Address
address = IPv4Address("TCP", "127.0.0.1", 1)
site.doStart()
channel = site.buildProtocol(address)
transport = StringTransport(address, address)
channel.makeConnection(transport)
body = b'{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}'
head = b"POST /rpc HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
channel.dataReceived(head + body)
print(transport.value().split(b"\\r\\n\\r\\n", 1)[1].decode().strip())
site.doStop()
"""
    assert run_python(mounting + check, workdir, port) == ['{"jsonrpc":"2.0","result":19,"id":1}']


def test_typed_handlers_block(workdir: Path) -> None:
    """The typed example runs as written and prints what the README shows after it."""
    code = block("# typed_users.py")
    shown = README.split(code, 1)[1].split("prints\n\n", 1)[1].split("\n\n", 1)[0]
    expected = [line[4:] for line in shown.splitlines()]
    assert expected[-1] == "-32602 $.user.name: expected str, got int"
    assert run_python(code, workdir, 0) == expected
