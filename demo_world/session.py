"""A demo world ready to export from: its settings, with its payment provider running."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo_world.envfile import read_env
from demo_world.payments_api import start_payments_server


@contextmanager
def running_world(world: Path) -> Iterator[dict[str, str]]:
    """The world's environment, with PAYMENTS_API_URL pointing at a running stand-in."""
    env = read_env(world / "world.env")
    server = start_payments_server(world / "payments.sqlite", env["PAYMENTS_API_TOKEN"], port=0)
    try:
        yield {**env, "PAYMENTS_API_URL": server.url}
    finally:
        server.stop()
