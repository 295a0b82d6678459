"""``world.env``: ``NAME=value`` lines (``#`` starts a comment line), read as the CLI's
``--env-file`` is."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from engine.envfile import read_env

__all__ = ["read_env", "write_env"]


def write_env(path: Path, env: Mapping[str, str], header: str, footer: str) -> None:
    lines = [f"# {header}", *(f"{k}={v}" for k, v in env.items()), f"# {footer}"]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
