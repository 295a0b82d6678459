"""Run the event lake and the payment store in child processes next to the CRM load.

Children are started with ``spawn`` and rebuild the skeleton from the seed (it is
deterministic), so nothing large crosses the process boundary. They report progress and
their result over a queue; a failure is re-raised here by type name only.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .sizes import WorldSize, resolve_size

Progress = Callable[[str, int, int], None]
JOBS = ("lake", "payments")


class StageFailed(RuntimeError):
    """A build stage in a child process failed (the message names the stage and type)."""


def _child(job: str, seed: int, size: dict[str, Any], root: str, out: Any) -> None:
    try:
        from . import lake, stages
        from .skeleton import make_skeleton

        sk = make_skeleton(seed, resolve_size(size))

        def report(stage: str, done: int, total: int) -> None:
            out.put(("progress", stage, done, total))

        if job == "lake":
            result: Any = {"events": lake.write_lake(sk, Path(root), report)}
        else:
            result = stages.write_payments(sk, Path(root), report)
        out.put(("done", job, result))
    except BaseException as exc:  # report, never with values: only the type travels
        out.put(("error", job, type(exc).__name__))


def run_parallel(
    seed: int,
    size: WorldSize,
    root: Path,
    main: Callable[[Progress | None], dict[str, int]],
    progress: Progress | None,
) -> dict[str, int]:
    """Run ``main`` here and the lake and payment jobs in children; merged counts."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(job, seed, size.as_dict(), str(root), out), daemon=True)
        for job in JOBS
    ]
    results: dict[str, Any] = {}

    def handle(message: tuple) -> None:
        if message[0] == "progress" and progress:
            progress(*message[1:])
        elif message[0] == "done":
            results[message[1]] = message[2]
        elif message[0] == "error":
            raise StageFailed(f"build stage {message[1]!r} failed ({message[2]})")

    def drain() -> None:
        while True:
            try:
                handle(out.get_nowait())
            except queue_mod.Empty:
                return

    def report(stage: str, done: int, total: int) -> None:
        drain()
        if progress:
            progress(stage, done, total)

    for p in procs:
        p.start()
    try:
        counts = main(report)
        while len(results) < len(JOBS):
            try:
                handle(out.get(timeout=1))
            except queue_mod.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise StageFailed("a build stage process died") from None
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    for result in results.values():
        counts.update(result)
    return counts
