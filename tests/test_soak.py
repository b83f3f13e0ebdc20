"""
A smoke run of the soak runner (C{make soak}): three seconds against a real
twistd process, which must find every reply and exit 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_soak_runner_smoke(tmp_path: Path) -> None:
    figures_path = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "soak.run",
            "--seconds",
            "3",
            "--connections",
            "10",
            "--json",
            str(figures_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: every request" in proc.stdout
    figures = json.loads(figures_path.read_text())
    assert figures["problems"] == []
    assert figures["requests_served"] > 100
    assert figures["twistd_exit_status"] in (0, -15)
    assert figures["rss_kib_start"] > 0
    assert figures["rss_kib_end"] > 0
    # Every kind of bad input was sent and answered with its error.
    for kind in ("parse error", "invalid request", "message too large", "method not found"):
        assert figures["errors_by_kind"].get(kind, 0) > 0, kind
