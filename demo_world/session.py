"""A demo world ready to export from: its settings, with its payment provider running."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo_world.envfile import read_env
from demo_world.payments_api import start_payments_server


@contextmanager
def running_world(world: Path, *, own_process: bool = False) -> Iterator[dict[str, str]]:
    """The world's environment, with PAYMENTS_API_URL pointing at a running stand-in.

    The stand-in runs in a thread of this process, or with ``own_process`` in a process
    of its own, as a third party's API would: benchmarks then measure the export alone.
    """
    env = read_env(world / "world.env")
    if own_process:
        with payments_process(world / "payments.sqlite", env["PAYMENTS_API_TOKEN"]) as url:
            yield {**env, "PAYMENTS_API_URL": url}
        return
    server = start_payments_server(world / "payments.sqlite", env["PAYMENTS_API_TOKEN"], port=0)
    try:
        yield {**env, "PAYMENTS_API_URL": server.url}
    finally:
        server.stop()


@contextmanager
def payments_process(db: Path, token: str) -> Iterator[str]:
    """The stand-in in a process of its own, on a free port, for the block; its URL."""
    cmd = [sys.executable, "-m", "demo_world.payments_api", "--db", str(db)]
    env = {**os.environ, "PAYMENTS_API_TOKEN": token}  # not on argv, where ps shows it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("PAYMENTS_API_URL="):
            raise RuntimeError("the payment provider stand-in did not start")
        yield line.split("=", 1)[1]
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
