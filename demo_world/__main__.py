"""``python -m demo_world --out DIR [--seed 7] [--size demo|large] [--sql-url URL]``.

Builds a world and prints progress (stage names and counts only) to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .build import build_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo_world")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", default="demo")
    parser.add_argument("--sql-url", default=None)
    args = parser.parse_args(argv)
    start = time.monotonic()

    def progress(stage: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        sys.stderr.write(f"  {elapsed:7.1f}s  {stage} {done}/{total}\n")

    world = build_world(
        args.out, seed=args.seed, size=args.size, sql_url=args.sql_url, progress=progress
    )
    sys.stderr.write(f"built {world.root} in {time.monotonic() - start:.1f}s\n")


if __name__ == "__main__":
    main()
