"""
deploy/'s systemd units: checked with C{systemd-analyze verify} where it
exists, and their C{ExecStart} run for real the way socket activation runs
it (the listening socket on fd 3, C{LISTEN_FDS}/C{LISTEN_PID} set).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .ops_helpers import TWISTD, WAIT, LineClient, kill, twistd_env

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SHIPPED_TWISTD = "/opt/jsonservice/venv/bin/twistd"


def unit_value(unit: str, key: str) -> str:
    """The (last) value of C{key} in a unit file."""
    values = [
        line.split("=", 1)[1].strip()
        for line in (DEPLOY / unit).read_text().splitlines()
        if line.startswith(f"{key}=")
    ]
    assert values, f"{unit} has no {key}="
    return values[-1]


def local_units(directory: Path) -> list[Path]:
    """The units, with ExecStart and WorkingDirectory pointing at this machine's paths."""
    paths = []
    for name in ("jsonservice.socket", "jsonservice.service"):
        text = (DEPLOY / name).read_text()
        text = text.replace(SHIPPED_TWISTD, str(TWISTD)).replace("/opt/jsonservice", str(directory))
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="no systemd-analyze here")
def test_systemd_units_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *map(str, local_units(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "Failed to" in output and "bus" in output.lower():
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()}")
    assert result.returncode == 0, output
    # Unknown keys and the like are only warnings: treat any as a failure.
    assert output.strip() == "", output


def test_units_agree() -> None:
    assert unit_value("jsonservice.socket", "ListenStream") == "127.0.0.1:8081"
    assert unit_value("jsonservice.socket", "Accept") == "no"
    exec_start = shlex.split(unit_value("jsonservice.service", "ExecStart"))
    assert exec_start[0] == SHIPPED_TWISTD
    assert "--listen" in exec_start
    assert exec_start[exec_start.index("--listen") + 1] == "systemd:domain=INET:index=0"
    assert "jsonservice.socket" in unit_value("jsonservice.service", "Requires")


@pytest.mark.skipif(not TWISTD.exists(), reason=f"no twistd next to {sys.executable}")
@pytest.mark.skipif(os.name != "posix", reason="socket activation is POSIX")
def test_exec_start_serves_an_activated_socket(tmp_path: Path, free_port: Callable[..., int]) -> None:
    """Run the unit's ExecStart as systemd would: socket on fd 3, LISTEN_PID = its own pid."""
    exec_start = shlex.split(unit_value("jsonservice.service", "ExecStart"))
    command = [str(TWISTD), *exec_start[1:]]
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    port = listening.getsockname()[1]
    # LISTEN_PID must be the pid of the process that reads it: set it after fork, then exec.
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='x.socket')\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )
    with (tmp_path / "twistd.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", launcher, str(listening.fileno()), *command],
            pass_fds=[listening.fileno()],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=twistd_env(),
        )
    listening.close()
    try:
        # Connections queue on the socket systemd (here: the test) bound: no wait for twistd.
        client = LineClient("127.0.0.1", port)
        try:
            assert client.call("ping") == "pong"
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) in (0, -signal.SIGTERM)
        assert "Traceback" not in (tmp_path / "twistd.log").read_text()
    finally:
        kill(proc)
