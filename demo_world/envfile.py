"""``world.env``: ``NAME=value`` lines (``#`` starts a comment line)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def write_env(path: Path, env: Mapping[str, str], header: str, footer: str) -> None:
    lines = [f"# {header}", *(f"{k}={v}" for k, v in env.items()), f"# {footer}"]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
