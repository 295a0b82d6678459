"""Real Celery worker processes for the distributed bulk test, started and stopped whole.

Each worker is ``celery -A dagster_celery.app worker`` with one process, in a session of
its own (stopped by signalling its process group: no orphan survives a test), listening
to a queue unique to the test, on the Redis running on this machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own: nothing else uses it
READY_TIMEOUT = 90


class Workers:
    """``count`` celery workers on ``queue``, logs in ``folder``."""

    def __init__(self, folder: Path, queue: str, env: Mapping[str, str], count: int = 2) -> None:
        self.folder, self.queue, self.env, self.count = folder, queue, dict(env), count
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names = [f"w{i}-{queue}" for i in range(count)]

    def start(self, cwd: Path) -> None:
        for i, name in enumerate(self.names):
            cmd = [
                str(VENV_BIN / "celery"), "-A", "dagster_celery.app",
                "-b", REDIS_URL, "--result-backend", REDIS_URL,
                "worker", "-Q", self.queue, "-n", f"{name}@%h", "-l", "INFO",
                "-c", "1", "--prefetch-multiplier=1", "--without-mingle", "--without-gossip",
            ]  # fmt: skip
            with open(self.folder / f"worker{i}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        cwd=cwd,
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )

    def wait_ready(self) -> None:
        from celery import Celery

        app = Celery("probe", broker=REDIS_URL, backend=REDIS_URL)
        want = {f"{n}@{socket.gethostname()}" for n in self.names}
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"a worker exited ({p.returncode}):\n{self.logs()}")
            replies = app.control.ping(destination=sorted(want), timeout=1.0) or []
            if {k for r in replies for k in r} >= want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not ready in {READY_TIMEOUT} s:\n{self.logs()}")

    def pids(self) -> set[int]:
        """Every process of the workers' groups (main processes and pool children)."""
        out = set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if os.getpgid(int(proc.name)) in {p.pid for p in self.procs}:
                    out.add(int(proc.name))
            except (ProcessLookupError, PermissionError):
                continue
        return out

    def stop(self) -> None:
        for p in self.procs:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs:
            while _alive(p.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def logs(self) -> str:
        parts = []
        for i in range(self.count):
            path = self.folder / f"worker{i}.log"
            text = path.read_text(errors="replace") if path.exists() else "<no log>"
            parts.append(f"== worker {i} ==\n" + "\n".join(text.splitlines()[-60:]))
        return "\n".join(parts)


def purge(queue: str) -> None:
    """Empty the test's queue and drop kombu's keys for it."""
    import redis
    from kombu import Connection

    with Connection(REDIS_URL) as conn:
        conn.default_channel.queue_purge(queue)
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(match=f"*{queue}*"):
        r.delete(key)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
