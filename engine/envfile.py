"""Settings files of ``NAME=value`` lines, as ``--env-file`` and a demo world's ``world.env``.

Blank lines and lines starting with ``#`` are skipped; a line without ``=`` is ignored;
names and values are stripped of surrounding spaces (no quoting, no expansion).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path


def read_env(path: str | PathLike[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env
