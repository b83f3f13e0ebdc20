"""The compiled load generator (``bench/loadgen.c``): built once per run, one process per job.

A Python load generator is itself the ceiling near 520k lines/s on a small machine, below what
a bare LineReceiver echo serves, so the harness drives every line-protocol throughput and
latency measurement with this C one and keeps :mod:`bench.loadgen` for what only it does (AMP
framing, idle connections). The binary is not committed: :func:`build` compiles it with the
system C compiler into ``build/bench/`` (git-ignored) when the source is newer than it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.loadgen import probe
from bench.messages import MessageSpec, build_ring
from bench.procs import connection_shares, merge_spread, pinned

SOURCE = Path(__file__).resolve().with_name("loadgen.c")
BUILD_DIR = SOURCE.parent.parent / "build" / "bench"
CFLAGS = ("-O2", "-Wall", "-Wextra")
DRAIN_SECONDS = 5.0  # as DRAIN_SECONDS in loadgen.c


def compiler() -> list[str] | None:
    """The C compiler command: ``$CC`` if set, else the first of cc, gcc, clang found."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def build(build_dir: Path = BUILD_DIR) -> tuple[Path | None, str]:
    """Compile ``loadgen.c`` if the binary is missing or older than it.

    Returns ``(binary, warnings)``, or ``(None, why not)`` when it cannot be built.
    """
    binary = build_dir / "loadgen"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary, ""
    cc = compiler()
    if cc is None:
        return None, "no C compiler found (cc, gcc, clang or $CC)"
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = build_dir / f"loadgen.{os.getpid()}.tmp"  # renamed into place when complete
    try:
        proc = subprocess.run(
            [*cc, *CFLAGS, "-o", str(partial), str(SOURCE)], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{' '.join(cc)} failed: {exc}"
    if proc.returncode:
        partial.unlink(missing_ok=True)
        return None, f"{' '.join(cc)} failed: {proc.stderr.strip()[-500:]}"
    partial.replace(binary)
    return binary, proc.stderr.strip()


class CLoader:
    """Runs the compiled load generator, pinned to the load-generator CPUs.

    Throughput jobs are split over ``processes`` concurrent copies (as :class:`bench.procs.
    LoaderPool` splits them over its workers) and merged the same way.
    """

    def __init__(self, binary: Path, processes: int, cpus: set[int] | None, workdir: Path) -> None:
        self.binary = binary
        self.processes = max(1, processes)
        self.cpus = cpus
        self.workdir = workdir
        self._files: dict[tuple[MessageSpec, int], tuple[Path, bytes]] = {}

    def _requests(self, spec: MessageSpec, window: int) -> tuple[Path, bytes]:
        """The request file of a workload (the Python loader's ring, one per line) and its first line."""
        key = (spec, window)
        if key not in self._files:
            ring, count, length = build_ring(spec, window)
            path = self.workdir / f"requests-{spec.kind}-{spec.size}-{window}.txt"
            path.write_bytes(ring[: count * length])
            self._files[key] = (path, ring[:length])
        return self._files[key]

    def _command(self, job: dict[str, Any], requests: Path, connections: int) -> list[str]:
        cmd = [str(self.binary), "--host", job["host"], "--port", str(job["port"])]
        cmd += ["--requests", str(requests), "--server-pid", str(job.get("server_pid") or 0)]
        cmd += ["--warmup", str(job["warmup"]), "--duration", str(job["duration"])]
        if job["op"] == "latency":
            return [*cmd, "--latency"]
        return [*cmd, "--connections", str(connections), "--inflight", str(job["inflight"])]

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run a ``throughput`` or ``latency`` job (the same dict as the Python loader's)."""
        spec = MessageSpec.from_json(job["message"])
        if spec.proto != "line":
            raise ValueError("the C load generator counts reply lines; it does not speak AMP")
        requests, first_request = self._requests(spec, int(job["inflight"]))
        try:  # one request checked before the measurement, as the Python loader does
            first_reply = probe(job["host"], int(job["port"]), first_request, spec.proto)
        except (OSError, RuntimeError) as exc:
            return {"error": f"probe failed: {type(exc).__name__}: {exc}"}
        shares = [1] if job["op"] == "latency" else connection_shares(int(job["connections"]), self.processes)
        procs = [
            subprocess.Popen(
                self._command(job, requests, share),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=pinned(self.cpus),
            )
            for share in shares
            if share > 0
        ]
        timeout = 60 + float(job["warmup"]) + float(job["duration"]) + DRAIN_SECONDS
        results = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                err = f"timed out after {timeout:.0f} s. {err}"
            lines = out.strip().splitlines()
            if not lines:
                return {"error": f"C load generator exited {proc.returncode}: {err.strip()[-300:]}"}
            results.append(json.loads(lines[-1]))
        merged = merge_spread(results)
        if "error" not in merged:
            merged["reply_len"] = len(first_reply)
            merged["first_reply"] = first_reply.decode("latin-1")
            merged["first_request"] = first_request.decode("latin-1")
        return merged
