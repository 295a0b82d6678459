"""Peak memory of an export whose subject has 1 GB of customer files.

The export runs as ``portability export`` in a child process; the figure is that
process's own peak RSS: ``VmHWM`` of its memory after exec, which the child reports as
it exits. (``ru_maxrss`` from ``wait4`` will not do: Python starts children with vfork,
and Linux then carries the parent's high-water mark into the child's, so a run after
the latency benchmark reported 701 MB for an export that peaks at 210.)
Goal: at most 300 MB.  Run: ``python -m benchmarks.bench_memory``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from benchmarks.common import BENCH_DIR, ROOT, world

FILE_MB = 128
FILES = 8  # 1 GiB in all

# The portability command, reporting its peak RSS (kB) to $BENCH_RSS_FILE as it exits.
_CHILD = """
import atexit, os, sys
def report():
    hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    with open(os.environ["BENCH_RSS_FILE"], "w") as f:
        f.write(hwm.split()[1])
atexit.register(report)
from engine.cli import main
sys.argv[0] = "portability"
main()
"""


def add_big_files(root, account: str) -> int:
    folder = root / "objects" / account / "big"
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(FILES):
        path = folder / f"dataset-{i}.bin"
        if not path.exists() or path.stat().st_size != FILE_MB << 20:
            with open(path, "wb") as f:
                for _ in range(FILE_MB):
                    f.write(os.urandom(1 << 20))  # incompressible, as real media is
        total += path.stat().st_size
    return total


def main() -> dict:
    root = world("demo")
    info = json.loads((root / "world.json").read_text())
    email = info["edge_cases"]["multi_account"]["emails"][0]
    account = info["edge_cases"]["multi_account"]["account_ids"][0]
    size = add_big_files(root, account)
    out = BENCH_DIR / "memory-out"
    rss_file = BENCH_DIR / "memory-rss.txt"
    rss_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            "export",
            "--email",
            email,
            "--world",
            str(root),
            "--out",
            str(out),
            "--staging",
            str(BENCH_DIR / "memory-staging"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "BENCH_RSS_FILE": str(rss_file)},
    )
    _, err = child.communicate()
    secs = time.perf_counter() - t0
    if child.returncode:
        print(err.decode(), file=sys.stderr)
        raise SystemExit(child.returncode)
    peak = int(rss_file.read_text()) / 1024  # kB -> MB
    fig = {
        "benchmark": "peak memory, 1 GB of customer files",
        "customer_bytes": size,
        "peak_rss_mb": round(peak, 1),
        "seconds": round(secs, 1),
    }
    print(json.dumps(fig))
    return fig


if __name__ == "__main__":
    main()
