"""The benchmark harness: starts the servers, drives the workloads, writes the results.

``python -m bench [--quick] [--only NAME[,NAME]] [--rounds N] [--duration S] [--update-latest]``

Every server (jsonservice's twistd plugin and the baselines of :mod:`bench.servers`) runs in
its own process pinned to one core; the load generators and the client workloads run pinned to
the other core(s). Line-protocol throughput and latency are driven by the compiled load
generator (``bench/loadgen.c``, :mod:`bench.cloadgen`), AMP and idle connections by the Python
one (:mod:`bench.loadgen`). Each workload is measured in rounds that alternate between the
servers (A B C A B C ...), and each figure is the median of its rounds, divided by the bare
LineReceiver echo's figure from the same run.

Results go to ``bench/results/local/`` (git-ignored); ``--update-latest`` also writes the
tracked ``bench/results/latest.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import cloadgen
from bench.messages import check_reply, units_per_reply
from bench.procs import (
    HOST,
    LoaderPool,
    ServerProcess,
    jsonservice_client_status,
    jsonservice_server_status,
    log,
    machine_description,
    machine_load,
    pinned,
    profile_summary,
    rss_bytes,
)
from bench.servers import raise_nofile_limit
from bench.workloads import LABELS, SERVERS, WORKLOADS, Workload, select_workloads

QUIET = 0.2  # busy cores from other processes above which figures are disturbed
RESULTS_DIR = Path(__file__).resolve().parent / "results"  # the tracked latest.* (--update-latest)
LOCAL_DIR = RESULTS_DIR / "local"  # every run's results (git-ignored)


@dataclass
class Cell:
    """The measurements of one (workload, server) pair."""

    rounds: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok", "skipped", "error"


@dataclass
class Config:
    """How long and how often to measure."""

    rounds: int
    warmup: float
    duration: float
    idle_connections: int
    loaders: int
    quick: bool
    retries: int
    profile: Path | None = None
    loader: str = "c"  # "c": the compiled load generator where it applies; "python": never


class Harness:
    """Runs the workloads against the servers and collects :class:`Cell` results."""

    def __init__(self, config: Config, server_names: list[str], workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.notes: list[str] = []
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            self.server_cpus: set[int] | None = {cpus[0]}
            self.loader_cpus: set[int] | None = set(cpus[1:])
            os.sched_setaffinity(0, self.loader_cpus)
        else:
            self.server_cpus = self.loader_cpus = None
            self.notes.append("only one CPU: servers and load generator share it; ratios still comparable")
        self.server_names = server_names
        self.servers: dict[str, ServerProcess] = {}
        self.unavailable: dict[str, str] = {}
        self.client_unavailable: str | None = None
        self.loaders = LoaderPool(config.loaders, self.loader_cpus)
        self.cloader: cloadgen.CLoader | None = None
        #: Why the compiled load generator is not used although it was asked for (else None).
        self.cloader_missing: str | None = None
        if config.loader == "c":
            binary, message = cloadgen.build()
            if binary is None:
                self.cloader_missing = message
                self._loud_fallback(message)
            else:
                if message:
                    log(f"compiler warnings for {cloadgen.SOURCE.name}:\n{message}")
                self.cloader = cloadgen.CLoader(binary, config.loaders, self.loader_cpus, workdir)
        self.results: dict[str, dict[str, Cell]] = {}

    def _loud_fallback(self, why: str) -> None:
        banner = "!" * 78
        log(
            f"{banner}\nC load generator unavailable: {why}\n"
            "FALLING BACK to the Python load generator (bench/loadgen.py). It tops out near 520k "
            "lines/s on a\nsmall machine: throughput figures near that and their ratios may be "
            f"loader-bound.\n{banner}"
        )
        self.notes.insert(
            0,
            f"**The C load generator was not available ({why}); every figure was driven by the Python "
            "load generator, which is itself a ceiling near 520k lines/s: ratios near the top may be "
            "loader-bound (‡).**",
        )

    # -- servers ---------------------------------------------------------------------------

    def start_servers(self) -> None:
        """Start every server once (idle workloads start their own fresh copies)."""
        if "jsonservice" in self.server_names:
            why = jsonservice_server_status()
            if why:
                self.unavailable["jsonservice"] = why
        for name in self.server_names:
            if name in self.unavailable:
                continue
            profile = self.config.profile if name == "jsonservice" else None
            server = ServerProcess(name, self.server_cpus, self.workdir, profile)
            try:
                server.start()
            except RuntimeError as exc:
                self.unavailable[name] = str(exc)
                continue
            self.servers[name] = server
            if name == "jsonservice":
                # The server logs which core it runs (make bench builds the compiled one).
                started = server.log_tail(4000)
                core = "compiled (mypyc)" if "compiled (mypyc) core" in started else "pure-Python"
                self.notes.append(f"jsonservice server: {core} core")
                log(f"  jsonservice server: {core} core")
        for name, why in self.unavailable.items():
            self.notes.append(f"{LABELS[name]} skipped: {why}")
            log(f"  skip {name}: {why}")
        if "jsonservice" in self.server_names:
            self.client_unavailable = jsonservice_client_status()
            if self.client_unavailable:
                self.notes.append(f"client workload for jsonservice skipped: {self.client_unavailable}")
                log(f"  skip jsonservice client: {self.client_unavailable}")

    def stop_servers(self) -> None:
        """Stop every server and the load generators."""
        for server in self.servers.values():
            server.stop()
        self.loaders.close()

    # -- workloads -------------------------------------------------------------------------

    def run(self, workloads: list[Workload]) -> None:
        """Measure ``workloads`` in alternating rounds."""
        for workload in workloads:
            started = time.monotonic()
            cells = {name: Cell() for name in workload.servers if name in self.server_names}
            self.results[workload.name] = cells
            for name, cell in cells.items():
                if name in self.unavailable:
                    cell.status = "skipped"
                    cell.notes.append(self.unavailable[name])
                elif workload.kind == "client" and name == "jsonservice" and self.client_unavailable:
                    cell.status = "skipped"
                    cell.notes.append(self.client_unavailable)
            for _ in range(self.config.rounds):
                for name, cell in cells.items():
                    if cell.status != "ok":
                        continue
                    try:
                        self._measure_quietly(workload, name, cell)
                    except Exception as exc:
                        cell.status = "error"
                        cell.notes.append(f"{type(exc).__name__}: {exc}")
            log(f"  {workload.name:<9} {time.monotonic() - started:5.1f}s  {self._summary(workload, cells)}")

    def _measure_quietly(self, workload: Workload, name: str, cell: Cell) -> None:
        """Measure one round; if other processes disturbed it, measure again and keep the quieter.

        The choice is made on the disturbance alone, never on the figure, so it does not bias it.
        """
        self._measure(workload, name, cell)
        for _ in range(self.config.retries):
            if cell.status != "ok" or not cell.rounds:
                return
            last = cell.rounds[-1]
            if (last.get("other_cpu") or 0.0) <= QUIET:
                return
            time.sleep(0.5)
            self._measure(workload, name, cell)
            if cell.status != "ok" or len(cell.rounds) < 2:
                return
            again = cell.rounds.pop()
            kept = min(last, again, key=lambda r: r.get("other_cpu") or 0.0)
            kept["retried"] = kept.get("retried", 0) + 1
            cell.rounds[-1] = kept

    def _summary(self, workload: Workload, cells: dict[str, Cell]) -> str:
        parts = []
        for name, cell in cells.items():
            value = median_value(workload, cell)
            parts.append(f"{name}={format_value(workload, value) if value is not None else cell.status}")
        return " ".join(parts)

    def _measure(self, workload: Workload, name: str, cell: Cell) -> None:
        if workload.kind == "throughput":
            self._throughput(workload, name, cell)
        elif workload.kind == "latency":
            self._latency(workload, name, cell)
        elif workload.kind == "idle":
            self._idle(workload, name, cell)
        else:
            self._client(workload, name, cell)

    def _job(self, workload: Workload, name: str, server: ServerProcess, op: str) -> dict[str, Any]:
        return {
            "op": op,
            "host": HOST,
            "port": server.port,
            "server_pid": server.pid,
            "message": workload.spec(name).to_json(),
            "connections": workload.connections,
            "inflight": workload.inflight,
            "warmup": self.config.warmup,
            "duration": self.config.duration,
        }

    def _check(self, workload: Workload, name: str, result: dict[str, Any], cell: Cell) -> bool:
        if "error" in result:
            raise RuntimeError(result["error"])
        spec = workload.spec(name)
        wrong = check_reply(
            name, spec, result["first_request"].encode("latin-1"), result["first_reply"].encode("latin-1")
        )
        if wrong:
            cell.status = "error"
            cell.notes.append(f"wrong reply, not measured: {wrong}")
            return False
        return True

    def _drive(self, workload: Workload, name: str, op: str) -> dict[str, Any]:
        """Run a throughput or latency job on the C load generator if it speaks the protocol."""
        job = self._job(workload, name, self.servers[name], op)
        if self.cloader is not None and workload.spec(name).proto == "line":
            return self.cloader.run(job)
        return self.loaders.spread(job) if op == "throughput" else self.loaders.one(job)

    def _throughput(self, workload: Workload, name: str, cell: Cell) -> None:
        result = self._drive(workload, name, "throughput")
        if not self._check(workload, name, result, cell):
            return
        if result["errors"]:
            cell.notes.append(f"during load: {result['errors'][0]}")
        if result.get("count_ok") is False:
            cell.notes.append(
                f"reply count check failed: {result['sent']} requests sent, {result['received']} "
                "reply lines received"
            )
        if result["replies"]:
            per_reply = result["bytes"] / result["replies"]
            if abs(per_reply - result["reply_len"]) > 0.05 * result["reply_len"]:
                cell.notes.append(
                    f"suspect: replies averaged {per_reply:.0f} B, "
                    f"the checked reply was {result['reply_len']} B"
                )
        result["value"] = result["rate"] * units_per_reply(workload.spec(name))
        del result["first_reply"], result["first_request"]
        cell.rounds.append(result)

    def _latency(self, workload: Workload, name: str, cell: Cell) -> None:
        result = self._drive(workload, name, "latency")
        if not self._check(workload, name, result, cell):
            return
        result["value"] = result["p99_us"]
        del result["first_reply"], result["first_request"]
        cell.rounds.append(result)

    def _idle(self, workload: Workload, name: str, cell: Cell) -> None:
        # A fresh server each round: memory a process has grown does not shrink back.
        server = ServerProcess(name, self.server_cpus, self.workdir)
        server.start()
        try:
            job = self._job(workload, name, server, "idle_open")
            warm = self.loaders.one({**job, "connections": 1})
            self.loaders.one({"op": "idle_close"})
            if warm.get("failed") or "error" in warm:
                raise RuntimeError(f"warm-up connection failed: {warm}")
            time.sleep(0.3)
            before = rss_bytes(server.pid)
            wanted = min(self.config.idle_connections, self.loaders.nofile - 100)
            opened = self.loaders.one({**job, "connections": wanted})
            time.sleep(0.5)
            after = rss_bytes(server.pid)
            self.loaders.one({"op": "idle_close"})
        finally:
            server.stop()
        if "error" in opened:
            raise RuntimeError(opened["error"])
        if opened["failed"]:
            cell.notes.append(f"{opened['failed']} of {wanted} connections failed: {opened['errors'][:1]}")
        if not opened["opened"]:
            raise RuntimeError("no connection could be opened")
        cell.rounds.append(
            {
                "value": (after - before) / opened["opened"],
                "connections": opened["opened"],
                "rss_before": before,
                "rss_after": after,
                "open_seconds": opened["elapsed"],
            }
        )

    def _client(self, workload: Workload, name: str, cell: Cell) -> None:
        if name == "bare":  # the floor: raw pipelined load on the bare echo, same shape
            floor = Workload("client-floor", "", "throughput", inflight=workload.inflight)
            self._throughput(floor, name, cell)
            return
        server = self.servers[name]
        cmd = [sys.executable, "-m", "bench.clients", name, "--port", str(server.port)]
        cmd += ["--outstanding", str(workload.inflight), "--warmup", str(self.config.warmup)]
        cmd += ["--duration", str(self.config.duration), "--server-pid", str(server.pid)]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=60 + self.config.duration,
            cwd=self.workdir,
            preexec_fn=pinned(self.loader_cpus),
        )
        lines = proc.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"client exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        if "error" in result:
            raise RuntimeError(result["error"])
        if result["errors"]:
            cell.notes.append(f"call errors: {result['errors'][0]}")
        result["value"] = result["rate"]
        cell.rounds.append(result)


# -- figures --------------------------------------------------------------------------------


def median_value(workload: Workload, cell: Cell, key: str = "value") -> float | None:
    """Median of one measured quantity over a cell's rounds (``None`` if not measured)."""
    values = [r[key] for r in cell.rounds if r.get(key) is not None]
    if cell.status != "ok" or not values:
        return None
    return float(statistics.median(values))


def format_value(workload: Workload, value: float) -> str:
    """Human form of a median (rate, microseconds or bytes per connection)."""
    if workload.kind == "latency":
        return f"{value:,.0f} µs"
    if workload.kind == "idle":
        return f"{value / 1024:,.1f} KiB"
    return f"{value:,.0f}/s"


def summarise(harness: Harness, workloads: list[Workload]) -> list[dict[str, Any]]:
    """Turn raw cells into the JSON-able per-workload summary with medians and ratios."""
    out = []
    for workload in workloads:
        cells = harness.results.get(workload.name, {})
        floor_cell = cells.get("bare")
        floor = median_value(workload, floor_cell) if floor_cell else None
        servers: dict[str, Any] = {}
        for name, cell in cells.items():
            value = median_value(workload, cell)
            entry: dict[str, Any] = {
                "status": cell.status,
                "median": value,
                "ratio": value / floor if value is not None and floor else None,
                "notes": cell.notes,
                "rounds": cell.rounds,
            }
            for key in ("p50_us", "loader_cpu", "loader_peak", "server_cpu", "other_cpu"):
                extra = median_value(workload, cell, key)
                if extra is not None:
                    entry[key] = extra
            loaders = sorted({r["loader"] for r in cell.rounds if "loader" in r})
            if loaders:
                entry["loader"] = "+".join(loaders)
            if workload.kind == "latency" and floor_cell is not None:
                p50_floor = median_value(workload, floor_cell, "p50_us")
                if entry.get("p50_us") is not None and p50_floor:
                    entry["p50_ratio"] = entry["p50_us"] / p50_floor
            servers[name] = entry
        out.append(
            {
                "name": workload.name,
                "title": workload.title,
                "kind": workload.kind,
                "group": workload.group,
                "message": workload.message,
                "size": workload.size,
                "connections": workload.connections if workload.kind != "idle" else None,
                "inflight": workload.inflight,
                "servers": servers,
            }
        )
    return out


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jsonservice-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--quick", action="store_true", help="short rounds, 1,000 idle connections (smoke test)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="WORKLOAD", help="name or group; repeatable"
    )
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of servers")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure (default 3)")
    parser.add_argument("--duration", type=float, help="measuring window per round, seconds")
    parser.add_argument("--warmup", type=float, help="unmeasured time before each window, seconds")
    parser.add_argument("--idle-connections", type=int, help="default 10,000 (1,000 with --quick)")
    parser.add_argument("--loaders", type=int, help="load-generator processes (default: cores-1, at most 4)")
    parser.add_argument(
        "--out",
        type=Path,
        default=LOCAL_DIR,
        help="directory for latest.json/.md/.png (default bench/results/local/, git-ignored)",
    )
    parser.add_argument(
        "--update-latest",
        action="store_true",
        help="also write the tracked bench/results/latest.json/.md/.png",
    )
    parser.add_argument(
        "--loader",
        choices=("c", "python"),
        default="c",
        help="load generator for line-protocol throughput and latency: the compiled one (default; "
        "falls back to Python, loudly, without a C compiler) or the Python one (to compare)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        metavar="S",
        help="wait up to S seconds for other processes to leave the machine quiet (default 30)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-measure a round disturbed by other processes up to N times, keep the quietest (default 1)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the jsonservice server under cProfile (twistd --profile) and save its stats to FILE; "
        "a top-30 summary is written next to it (FILE.txt). Profiling slows the server: figures "
        "from such a run are not for quoting",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    return parser.parse_args(argv)


def _transports_section(config: Config) -> str:
    """The HTTP and WebSocket section (bench/transports.py), as Markdown."""
    from bench import transports

    with _workdir() as workdir:
        results = transports.run(config.rounds, config.warmup, max(1.0, config.duration), workdir)
    return transports.markdown(results)


def _transports_only(args: argparse.Namespace) -> int:
    from bench import transports

    argv = ["--rounds", str(max(1, args.rounds)), "--out", str(args.out)]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    return transports.main(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; write ``latest.json``, ``latest.md`` and ``latest.png``; print the table."""
    from bench import report

    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:<10} [{w.group}] {w.title}")
        print("transports [transports] HTTP and WebSocket next to the line protocol (bench/transports.py)")
        return 0
    # "transports" is the HTTP and WebSocket section (bench/transports.py), run after the table.
    with_transports = not args.only or any("transports" in item.split(",") for item in args.only)
    only = [w for item in args.only for w in item.split(",") if w and w != "transports"]
    if args.only and not only:
        return _transports_only(args)
    workloads = select_workloads(only)
    server_names = [s for s in args.servers.split(",") if s]
    bad = set(server_names) - set(SERVERS)
    if bad:
        raise SystemExit(f"unknown server(s) {sorted(bad)}; known: {', '.join(SERVERS)}")
    if "bare" not in server_names:
        server_names.append("bare")  # every ratio needs the floor
    ncpu = len(os.sched_getaffinity(0))
    config = Config(
        rounds=max(1, args.rounds),
        warmup=args.warmup if args.warmup is not None else (0.1 if args.quick else 0.2),
        duration=args.duration if args.duration is not None else (0.3 if args.quick else 0.8),
        idle_connections=args.idle_connections or (1_000 if args.quick else 10_000),
        loaders=args.loaders or max(1, min(4, ncpu - 1)),
        quick=args.quick,
        retries=max(0, args.retries),
        profile=args.profile.resolve() if args.profile else None,
        loader=args.loader,
    )
    raise_nofile_limit()
    started = time.monotonic()
    load_before = machine_load()
    waited = 0.0
    while load_before > QUIET and waited < args.wait_quiet:
        log(f"waiting for a quiet machine: other processes use {load_before:.2f} cores")
        load_before = machine_load(2.0)
        waited += 2.0
    with _workdir() as workdir:
        harness = Harness(config, server_names, workdir)
        try:
            log(
                f"servers on CPU {harness.server_cpus}, load on CPU {harness.loader_cpus}; "
                f"{config.rounds} rounds of {config.duration} s after {config.warmup} s warm-up; "
                f"load generator: {'C' if harness.cloader else 'Python'}"
            )
            harness.start_servers()
            harness.run(workloads)
        finally:
            harness.stop_servers()
    if config.profile is not None:
        harness.notes.append("jsonservice ran under cProfile (--profile): its figures are slowed by it")
        summary = profile_summary(config.profile)
        if summary:
            log(f"profile: {config.profile} and {summary}")
    if load_before > QUIET:
        harness.notes.append(
            f"the machine was already busy before the run ({load_before:.2f} cores in use by other "
            "processes): figures are disturbed, rerun on a quiet machine before quoting them"
        )
    if config.rounds < 3:
        harness.notes.append(f"only {config.rounds} round(s) per figure: less than the 3 the suite asks for")
    results = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine_description(),
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in config.__dict__.items()},
            "server_cpus": sorted(harness.server_cpus or []),
            "loader_cpus": sorted(harness.loader_cpus or []),
            "nofile": harness.loaders.nofile,
            "loader_used": "c" if harness.cloader is not None else "python",
            "loader_missing": harness.cloader_missing,
            "machine_load_before": round(load_before, 2),
        },
        "servers": {name: LABELS[name] for name in SERVERS if name in server_names},
        "notes": harness.notes,
        "workloads": summarise(harness, workloads),
    }
    markdown = report.markdown(results)
    if with_transports:
        markdown += "\n" + _transports_section(config)
    for out in dict.fromkeys([args.out, *([RESULTS_DIR] if args.update_latest else [])]):
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "latest.md").write_text(markdown)
        chart = report.chart(results, out / "latest.png")
        log(f"wrote {out / 'latest.json'}, {out / 'latest.md'}" + (f", {chart}" if chart else ""))
    print(markdown)
    log(f"total {results['seconds']}s")
    return 0
