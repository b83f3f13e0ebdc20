"""Processes of a benchmark run: servers under test, load-generator workers, machine probes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from bench.servers import raise_nofile_limit

HOST = "127.0.0.1"


def log(message: str) -> None:
    """Progress goes to stderr; the final table goes to stdout."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def pinned(cpus: set[int] | None) -> Callable[[], None]:
    """A ``preexec_fn``: raise RLIMIT_NOFILE and pin the child to ``cpus``."""

    def preexec() -> None:
        raise_nofile_limit()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return preexec


def free_port() -> int:
    """Return a port that was free a moment ago (for servers that need one given)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def profile_summary(path: Path, top: int = 30) -> Path | None:
    """Write the ``top`` entries by internal and by cumulative time of a cProfile stats file."""
    import io
    import pstats

    if not path.exists():
        return None
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    summary = path.with_name(path.name + ".txt")
    summary.write_text(out.getvalue())
    return summary


def machine_load(seconds: float = 1.0) -> float:
    """Busy cores, averaged over ``seconds``, before anything of ours runs."""
    from bench.loadgen import machine_busy_seconds

    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def rss_bytes(pid: int) -> int:
    """Return a process's resident set size (VmRSS) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerProcess:
    """One server under test, in its own process."""

    def __init__(self, name: str, cpus: set[int] | None, workdir: Path, profile: Path | None = None) -> None:
        self.name = name
        self.profile = profile
        self.cpus = cpus
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = workdir / f"{name}.log"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it accepts connections."""
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        if self.name == "jsonservice":
            self.port = free_port()
            cmd = [str(twistd_path()), "--pidfile="]
            if self.profile is not None:  # cProfile stats, written when twistd stops
                cmd += ["--profile", str(self.profile), "--profiler", "cprofile", "--savestats"]
            cmd += ["-n", "jsonservice", "--port", str(self.port)]
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=pinned(self.cpus),
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"twistd exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    socket.create_connection((HOST, self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
            raise RuntimeError(f"twistd did not listen on {self.port} within {timeout}s: {self.log_tail()}")
        cmd = [sys.executable, "-m", "bench.servers", self.name, "--host", HOST]
        self.proc = subprocess.Popen(
            cmd,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=log_file,
            preexec_fn=pinned(self.cpus),
        )
        assert self.proc.stdout is not None
        line = _readline_with_timeout(self.proc.stdout, timeout)
        if not line.startswith(b"READY "):
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {line!r} {self.log_tail()}")
        self.port = int(line.split()[1])

    def log_tail(self, chars: int = 600) -> str:
        """The end of the server's log, for error notes."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30 if self.profile else 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _readline_with_timeout(stream: IO[bytes], timeout: float) -> bytes:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return b""
    return stream.readline()


def twistd_path() -> Path:
    """The ``twistd`` next to the running interpreter (the project's venv)."""
    return Path(sys.executable).parent / "twistd"


def jsonservice_server_status() -> str | None:
    """Return ``None`` if the jsonservice twistd plugin is installed, else why it is skipped."""
    twistd = twistd_path()
    if not twistd.exists():
        return f"{twistd} not found"
    try:
        out = subprocess.run(
            [str(twistd), "--help"], capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`twistd --help` failed: {exc}"
    if "jsonservice" not in out.stdout:
        return "`twistd --help` does not list the jsonservice plugin yet (server core not written yet)"
    return None


def jsonservice_client_status() -> str | None:
    """Return ``None`` if ``jsonservice.connect`` exists, else why the client workload is skipped."""
    code = "import jsonservice, sys; sys.exit(0 if callable(getattr(jsonservice, 'connect', None)) else 3)"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"importing jsonservice failed: {exc}"
    if proc.returncode == 3:
        return "jsonservice.connect does not exist yet (client not written yet)"
    if proc.returncode:
        return f"importing jsonservice failed: {proc.stderr.strip()[-300:]}"
    return None


def connection_shares(total: int, workers: int) -> list[int]:
    """Split ``total`` connections as evenly as possible over ``workers`` load generators."""
    return [total // workers + (i < total % workers) for i in range(workers)]


def merge_spread(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the results of load generators that shared one throughput job: sum the rates.

    ``loader_cpu`` becomes the sum (cores used by all of them); ``loader_peak`` is the busiest
    one's fraction of its core, which says whether a load generator was the limit.
    """
    for r in results:
        if "error" in r:
            return r
    merged = dict(results[0])
    merged["loader_peak"] = max(r["loader_cpu"] for r in results)
    if len(results) > 1:
        for key in ("replies", "bytes", "rate", "loader_cpu"):
            merged[key] = sum(r[key] for r in results)
        if merged.get("other_cpu") is not None:  # the other loaders are not "other" load
            others = sum(r["loader_cpu"] for r in results[1:])
            merged["other_cpu"] = max(0.0, merged["other_cpu"] - others)
        merged["errors"] = [e for r in results for e in r["errors"]]
        for key in ("sent", "received"):
            if key in merged:
                merged[key] = sum(r[key] for r in results)
        if "count_ok" in merged:
            merged["count_ok"] = all(r["count_ok"] for r in results)
    return merged


class LoaderPool:
    """Load-generator worker processes, pinned away from the servers."""

    def __init__(self, count: int, cpus: set[int] | None) -> None:
        self.workers: list[subprocess.Popen[str]] = []
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen"],
                cwd=Path(__file__).resolve().parent.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=pinned(cpus),
            )
            assert proc.stdout is not None
            hello = json.loads(proc.stdout.readline())
            self.nofile = int(hello["nofile"])
            self.workers.append(proc)

    def _send(self, proc: subprocess.Popen[str], job: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()

    def _receive(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("load generator died")
        result: dict[str, Any] = json.loads(line)
        return result

    def one(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run a job on the first worker."""
        self._send(self.workers[0], job)
        return self._receive(self.workers[0])

    def spread(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run a throughput job with its connections spread over the workers; sum the rates."""
        shares = connection_shares(int(job["connections"]), len(self.workers))
        busy = [(w, s) for w, s in zip(self.workers, shares, strict=True) if s > 0]
        for worker, share in busy:
            self._send(worker, {**job, "connections": share})
        return merge_spread([self._receive(worker) for worker, _ in busy])

    def close(self) -> None:
        """Ask the workers to exit."""
        for proc in self.workers:
            with contextlib.suppress(OSError):
                self._send(proc, {"op": "exit"})
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def machine_description() -> dict[str, Any]:
    """CPU model, core count, OS, Python and library versions."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in ("jsonservice", "Twisted", "orjson", "aiorpcX", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
    }
