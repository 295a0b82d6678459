"""``make bench``: run every benchmark and record the figures in BENCHMARKS.md.

Figures, not tests: nothing here fails on a slow machine. Builds the large world
(1,000,000 people, 10,000,000 events) once under var/bench.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from benchmarks import bench_api, bench_bulk, bench_latency, bench_memory, bench_validate
from benchmarks.common import ROOT

GOALS = {
    "single-subject export latency": "p50 <= 50 ms",
    "validation": ">= 500,000 records/s",
    "peak memory, 1 GB of customer files": "<= 300 MB",
    "POST /requests to completed callback": "<= 5 s",
    "POST /requests accepted per second": "",
    "bulk export": ">= 200 subjects/s, <= 1.5 GB, archives identical",
}


def _fresh_process(module: ModuleType) -> dict:
    """A benchmark's figures from a process of its own: one that measures its own
    process tree's memory would count what the benchmarks before it left in this one
    (1.9 instead of 1.1 GB for the bulk export)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, "-m", module.__name__, "--figures", str(out)]
        subprocess.run(cmd, cwd=ROOT, check=True)
        return json.loads(out.read_text())


def main() -> None:
    figures = [bench_validate.main(), bench_latency.main(), bench_memory.main()]
    figures += bench_api.main([])
    figures.append(_fresh_process(bench_bulk))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "Recorded by `make bench` (`python -m benchmarks.run`). Figures, not timed tests.",
        f"Last run: {stamp} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        "",
        "| benchmark | goal | figures |",
        "|---|---|---|",
    ]
    for f in figures:
        name = f.get("benchmark", "")
        goal = next((g for k, g in GOALS.items() if name.startswith(k)), "")
        rest = {k: v for k, v in f.items() if k != "benchmark"}
        lines.append(f"| {name} | {goal} | `{json.dumps(rest)}` |")
    path = ROOT / "BENCHMARKS.md"
    notes = ""
    if path.exists() and "\n## Notes" in path.read_text():
        notes = path.read_text().split("\n## Notes", 1)[1]
    path.write_text("\n".join(lines) + "\n" + ("\n## Notes" + notes if notes else ""))
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
