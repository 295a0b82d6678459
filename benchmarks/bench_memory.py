"""Peak memory of an export whose subject has 1 GB of customer files.

The export runs in a child process; its peak RSS (ru_maxrss) is the figure.
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
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "portability"),
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
    )
    assert child.stderr is not None
    err = child.stderr.read()
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all
    # children this process ever waited for)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    if child.returncode:
        print(err.decode(), file=sys.stderr)
        raise SystemExit(child.returncode)
    peak = usage.ru_maxrss / 1024  # KiB -> MiB
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
