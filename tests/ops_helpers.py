"""
Helpers of the operations tests (workers, PROXY protocol, haproxy): real
C{twistd} processes in a temporary directory, blocking JSON-RPC over raw
sockets, and Linux process-tree look-ups.  Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Upper bound of a single wait on a process or a socket.
WAIT = 10.0

TWISTD = Path(sys.executable).parent / "twistd"


def twistd_env() -> dict[str, str]:
    """The environment for a child twistd: unbuffered, no PYTHONPATH games."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_twistd(cwd: Path, args: list[str], log_name: str = "twistd.log") -> subprocess.Popen[bytes]:
    """Start C{twistd --pidfile= -n jsonservice ARGS} in C{cwd}, logging to a file there."""
    log = (cwd / log_name).open("wb")
    try:
        return subprocess.Popen(
            [str(TWISTD), "--pidfile=", "-n", "jsonservice", *args],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=twistd_env(),
        )
    finally:
        log.close()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll C{predicate} until it returns something true; fail after C{timeout}."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, host: str = "127.0.0.1") -> None:
    """Wait until C{host:port} accepts connections (and C{proc} still runs)."""

    def accepting() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(accepting, f"{host}:{port} to accept")


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL C{proc} if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(WAIT)


def kill_pids(pids: set[int]) -> None:
    """SIGKILL each of C{pids} that still exists (processes a test started)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LineClient:
    """A blocking JSON-RPC client on one TCP connection."""

    def __init__(self, host: str, port: int, *, preamble: bytes = b"") -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.buffer = b""
        self.next_id = 0
        if preamble:
            self.sock.sendall(preamble)

    def send(self, method: str, *params: Any) -> int:
        """Send a request; return its id."""
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)}
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        return self.next_id

    def receive(self) -> dict[str, Any]:
        """The next reply line, decoded; fails on EOF."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, method: str, *params: Any) -> Any:
        """Send a request and return its result (fails on an error reply)."""
        request_id = self.send(method, *params)
        reply = self.receive()
        assert reply.get("id") == request_id, reply
        assert "result" in reply, reply
        return reply["result"]

    def close(self) -> None:
        self.sock.close()


def proc_children(pid: int) -> set[int]:
    """The pids whose parent is C{pid} (Linux /proc), zombies excluded."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether C{pid} exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
