"""Render benchmark results: a Markdown table and a PNG chart (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Chart series: (x value, workload name). 64 B with 10 in flight is ``conns-1``.
CONNECTION_SWEEP = ((1, "conns-1"), (10, "conns-10"), (50, "echo-50"))
SIZE_SWEEP = ((64, "conns-1"), (1024, "size-1k"), (16384, "size-16k"), (65536, "big-64k"))
#: Above this fraction of a core the load generator may be what limits a figure.
LOADER_BOUND = 0.9
TIMES = "\u00d7"  # the multiplication sign of "0.95x"

_UNITS = {"throughput": "req/s", "client": "calls/s", "latency": "µs", "idle": "per connection"}


def _cell(workload: dict[str, Any], entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    if entry["status"] != "ok" or entry["median"] is None:
        return str(entry["status"])
    value, ratio = entry["median"], entry.get("ratio")
    ratio_text = f" ({ratio:.2f}{TIMES})" if ratio is not None else ""
    busiest_loader = entry.get("loader_peak", entry.get("loader_cpu")) or 0.0
    mark = " †" if busiest_loader >= LOADER_BOUND else ""
    if "python" in entry.get("loader", "") and workload["kind"] in ("throughput", "latency"):
        mark += " ‡"
    if workload["kind"] == "latency":
        p50_ratio = entry.get("p50_ratio")
        p50 = f"{entry.get('p50_us', 0.0):,.0f}"
        p50_r = f" ({p50_ratio:.2f}{TIMES})" if p50_ratio is not None else ""
        return f"{p50}{p50_r} / {value:,.0f}{ratio_text}{mark}"
    if workload["kind"] == "idle":
        return f"{value / 1024:,.2f} KiB{ratio_text}"
    return f"{value:,.0f}{ratio_text}{mark}"


def _row_title(workload: dict[str, Any]) -> str:
    title = workload["title"]
    if workload["kind"] == "latency":
        return f"{title} — p50 / p99 µs"
    if workload["kind"] == "idle":
        n = _idle_connections(workload)
        return f"{n:,} {title}" if n else title
    return f"{title} — {_UNITS[workload['kind']]}"


def _idle_connections(workload: dict[str, Any]) -> int:
    for entry in workload["servers"].values():
        for r in entry["rounds"]:
            return int(r.get("connections", 0))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """Return the results as Markdown: context, the main table, CPU use and notes."""
    machine, config = results["machine"], results["config"]
    servers: dict[str, str] = results["servers"]
    names = list(servers)
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    pinning = (
        f"servers pinned to CPU {config['server_cpus']}, load generator to CPU {config['loader_cpus']}"
        if config["server_cpus"]
        else "no CPU pinning"
    )
    if config.get("loader_used", "python") == "c":
        loader_text = (
            "Load generator: compiled C (`bench/loadgen.c`, epoll, pipelined) for line-protocol "
            "throughput and latency, Python (`bench/loadgen.py`) for AMP (‡) and idle connections"
        )
    elif config.get("loader_missing"):
        loader_text = (
            f"**Load generator: Python fallback — the C one was not available ({config['loader_missing']}); "
            "ratios near the top may be loader-bound (‡)**"
        )
    else:
        loader_text = "Load generator: Python (`--loader python`), every figure ‡"
    lines = [
        "# jsonservice benchmark results",
        "",
        f"- Generated {results['generated']} in {results['seconds']} s"
        + (" (`--quick`: short smoke-test rounds, not for quoting)" if config["quick"] else ""),
        f"- Machine: {machine['cpu']}, {machine['cores']} cores; {machine['kernel']}; {machine['python']}",
        f"- Libraries: {versions}",
        f"- Setup: {pinning}; {config['loaders']} load-generator process(es); "
        f"RLIMIT_NOFILE {config['nofile']}",
        f"- {loader_text}",
        f"- Each figure is the median of {config['rounds']} alternating rounds of {config['duration']} s "
        f"(after {config['warmup']} s warm-up). In brackets: the ratio to the bare LineReceiver echo "
        "measured in the same run (throughput: higher is better; latency and memory: lower is better).",
        "",
        "| workload | " + " | ".join(servers[n] for n in names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for workload in results["workloads"]:
        cells = [_cell(workload, workload["servers"].get(n)) for n in names]
        lines.append(f"| {_row_title(workload)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "— not applicable (AMP has no plain messages or batches; aiorpcX has no plain messages). "
        f"† the load generator used ≥ {LOADER_BOUND:.0%} of its core: that figure may be loader-bound. "
        "‡ driven by the Python load generator (AMP framing, or no C one), itself a ceiling near "
        "520k lines/s on a small machine: near that rate such a figure is a lower bound. "
        "The bare echo's 'request' is the same line bytes, echoed back unchanged. "
        "For the client row, the floor is the raw load generator against the bare echo (1 connection, "
        "100 in flight); jsonservice's cell is its own client against its own server, AMP's is "
        "`callRemote` against the AMP server.",
        "",
        "## CPU use (median fraction of one core: server / load generator / everything else)",
        "",
        "A server at ~1.00 is CPU-bound; well below 1.00 with a quiet machine means the figure is "
        "bound by wake-up latency (too few requests in flight to keep it busy). 'Everything else' is "
        "the rest of the machine (other processes): above ~0.2 the figure is disturbed.",
        "",
        "| workload | " + " | ".join(servers[n] for n in names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for workload in results["workloads"]:
        if workload["kind"] == "idle":
            continue
        cells = []
        for n in names:
            entry = workload["servers"].get(n)
            if entry is None or entry["median"] is None:
                cells.append("—")
                continue
            parts = [entry.get(k) for k in ("server_cpu", "loader_cpu", "other_cpu")]
            cells.append(" / ".join("?" if p is None else f"{p:.2f}" for p in parts))
        lines.append(f"| {workload['name']} | " + " | ".join(cells) + " |")
    lines += _targets(results)
    notes = list(results["notes"])
    busiest = max(
        (e.get("other_cpu") or 0.0 for w in results["workloads"] for e in w["servers"].values()),
        default=0.0,
    )
    if busiest > 0.2:
        notes.insert(
            0,
            f"other processes used up to {busiest:.2f} cores during some measurements (see the CPU "
            "table): those figures are disturbed; rerun on a quiet machine before quoting them",
        )
    for workload in results["workloads"]:
        for n, entry in workload["servers"].items():
            if entry["status"] == "skipped":  # said once, above
                continue
            for note in dict.fromkeys(entry["notes"]):
                notes.append(f"{workload['name']} / {n}: {note}")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def _median(results: dict[str, Any], workload: str, server: str, key: str = "median") -> float | None:
    for w in results["workloads"]:
        if w["name"] == workload:
            entry = w["servers"].get(server)
            if entry is not None and entry.get("status") == "ok":
                value = entry.get(key)
                return float(value) if value is not None else None
    return None


def _targets(results: dict[str, Any]) -> list[str]:
    """The project's targets, each computed from this run (reported, never asserted)."""
    js = "jsonservice"
    echo, asyncio_echo, aiorpcx_echo = (_median(results, "echo-1", s) for s in (js, "asyncio", "aiorpcx"))
    p99, client, amp_client = (
        _median(results, "latency", js, "ratio"),
        _median(results, "client", js),
        _median(results, "client", "amp"),
    )
    rss = _median(results, "idle", js)
    rows: list[tuple[str, float | None, float, bool]] = [
        ("JSON-RPC echo (1 conn) / bare echo", _median(results, "echo-1", js, "ratio"), 0.8, True),
        ("JSON-RPC echo (50 conns) / bare echo", _median(results, "echo-50", js, "ratio"), 0.8, True),
        ("JSON-RPC echo / asyncio streams + json", _ratio(echo, asyncio_echo), 3.0, True),
        ("JSON-RPC echo / aiorpcX", _ratio(echo, aiorpcx_echo), 10.0, True),
        ("p99 latency / bare echo", p99, 1.25, False),
        ("RSS per idle connection, KiB", rss / 1024 if rss is not None else None, 8.0, False),
        ("client call() / its server's echo rate", _ratio(client, echo), 0.5, True),
        ("client call() / AMP callRemote", _ratio(client, amp_client), 5.0, True),
    ]
    out = ["", "## Targets (computed from this run; reported, not asserted)", ""]
    out += ["| target | measured | wanted | |", "| --- | ---: | ---: | --- |"]
    for label, value, target, higher in rows:
        if value is None:
            out.append(f"| {label} | n/a | {'≥' if higher else '≤'} {target:g} | not measured |")
            continue
        met = value >= target if higher else value <= target
        verdict = "met" if met else f"missed by {abs(value / target - 1):.0%}"
        out.append(f"| {label} | {value:.2f} | {'≥' if higher else '≤'} {target:g} | {verdict} |")
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Draw throughput vs. connections and vs. message size; return the PNG path (or ``None``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    by_name = {w["name"]: w for w in results["workloads"]}
    servers: dict[str, str] = results["servers"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    panels = (
        (axes[0], CONNECTION_SWEEP, "connections (10 in flight each), 64 B echo", "log"),
        (axes[1], SIZE_SWEEP, "request line size (1 connection, 10 in flight)", "log"),
    )
    drew = False
    for ax, sweep, xlabel, xscale in panels:
        for name, label in servers.items():
            xs, ys = [], []
            for x, wname in sweep:
                entry = by_name.get(wname, {}).get("servers", {}).get(name)
                if entry and entry["median"] is not None:
                    xs.append(x)
                    ys.append(entry["median"])
            if xs:
                style = "-o" if name in ("jsonservice", "bare") else "--o"
                ax.plot(xs, ys, style, label=label, linewidth=2.2 if name == "jsonservice" else 1.3)
                drew = True
        ax.set_xscale(xscale)
        ax.set_yscale("log")
        ax.set_xticks([x for x, _ in sweep], [_size_label(x) if ax is axes[1] else str(x) for x, _ in sweep])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("requests / s (median)")
        ax.grid(True, which="both", alpha=0.3)
    if not drew:
        plt.close(fig)
        return None
    axes[0].set_title("Throughput vs. connections")
    axes[1].set_title("Throughput vs. message size")
    axes[1].legend(fontsize=8, loc="lower left")
    machine = results["machine"]
    fig.suptitle(
        f"jsonservice vs. baselines — {machine['cpu']}, {machine['cores']} cores, {machine['python']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
