"""``make serve``: the Dagster UI and daemon on the demo world.

1. builds the demo world into ``var/demo/world`` unless it is there (``portability world
   build``, which keeps a world of the same seed and size);
2. starts the payment provider stand-in (``python -m demo_world.payments_api``);
3. writes ``var/demo/serve.env`` (the world's ``world.env`` plus ``PAYMENTS_API_URL``,
   mode 0600: it holds the API token) for ``PORTABILITY_ENV_FILE``;
4. starts the rights-portal API (``python -m api``, port 8000) on the same request store,
   registering a portal ``demo`` on first start and printing its token once; it launches
   each new request's run through the webserver (``PORTABILITY_DAGSTER_URL``);
5. runs ``dagster dev -m pipelines.definitions`` (webserver and daemon) with
   ``DAGSTER_HOME=dagster_home``, until Ctrl-C; then stops the API and the stand-in.

``python -m pipelines.serve [--port 3000] [--api-port 8000] [--world DIR]
[--dagster-home DIR]``; relative
``PORTABILITY_*`` defaults (``var/staging``, ``var/exports``) are taken from the repository root.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo_world.envfile import read_env, write_env
from demo_world.session import payments_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def build_world(world: Path) -> None:
    """The demo world in ``world``, built unless the same seed and size are there already."""
    cmd = [sys.executable, "-m", "engine.cli", "world", "build", "--out", str(world)]
    subprocess.run(cmd, check=True)


@contextmanager
def api(home: Path, host: str, port: int, dagster_url: str) -> Iterator[str]:
    """The OpenDSR API on the request store in ``home``, for the block; its discovery URL.
    It launches each new request's run through the Dagster webserver at ``dagster_url``."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "PORTABILITY_DAGSTER_URL": dagster_url}
    portals = subprocess.run(
        [sys.executable, "-m", "api", "list-portals"], env=env, cwd=ROOT, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    if not portals.stdout.strip():
        token = subprocess.run(
            [sys.executable, "-m", "api", "add-portal", "demo"], env=env, cwd=ROOT, check=True,
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        print(f"rights-portal API: portal 'demo' registered; its token (shown once): {token}")
    cmd = [sys.executable, "-m", "api", "serve", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        yield f"http://{host}:{port}/opendsr/v2/discovery"
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)


def write_serve_env(world: Path, payments_url: str, path: Path) -> Path:
    """``world.env`` plus ``PAYMENTS_API_URL``, created 0600 (the token is in it)."""
    env = {**read_env(world / "world.env"), "PAYMENTS_API_URL": payments_url}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    write_env(path, env, "written by make serve (pipelines/serve.py)", "rewritten at each start")
    return path


def run_dagster(home: Path, env_file: Path, host: str, port: int) -> int:
    """``dagster dev`` in the foreground; its exit code once it has shut down. Its sensor
    leaves portal requests to the API's direct launch (``PORTABILITY_DAGSTER_URL``)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PORTABILITY_ENV_FILE": str(env_file),
        "PORTABILITY_DAGSTER_URL": f"http://{host}:{port}",
    }
    cmd = [str(BIN / "dagster"), "dev", "-m", "pipelines.definitions"]
    proc = subprocess.Popen([*cmd, "-p", str(port), "-h", host], env=env, cwd=ROOT)
    # Ctrl-C reaches dagster dev directly (same process group): wait for its shutdown.
    # A SIGTERM sent to this process alone is passed on (dagster dev treats it as Ctrl-C).
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    return proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--world", type=Path, default=ROOT / "var/demo/world")
    parser.add_argument("--dagster-home", type=Path, default=ROOT / "dagster_home")
    args = parser.parse_args(argv)
    world, home = args.world.resolve(), args.dagster_home.resolve()
    # Ctrl-C works even when started with SIGINT ignored (`make serve &`), here and in the
    # children; a SIGTERM before dagster dev runs still stops the stand-in (the with unwinds)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    build_world(world)
    token = read_env(world / "world.env")["PAYMENTS_API_TOKEN"]
    with (
        payments_process(world / "payments.sqlite", token) as url,
        api(home, args.host, args.api_port, f"http://{args.host}:{args.port}") as discovery,
    ):
        env_file = write_serve_env(world, url, world.parent / "serve.env")
        print(f"payment provider stand-in at {url}; settings in {env_file}", flush=True)
        print(f"rights-portal API: {discovery}", flush=True)
        print(f"Dagster UI: http://{args.host}:{args.port} (DAGSTER_HOME={home})", flush=True)
        return run_dagster(home, env_file, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
