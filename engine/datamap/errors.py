"""Errors of the data map: each names the file, the path inside it and why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    path: str  # dotted path inside the file, e.g. systems.crm.entities.people.fields.email
    why: str
    line: int | None = None


class DataMapError(ValueError):
    """The data map is malformed. Raised before any source is queried."""

    def __init__(self, file: Path | str, problems: list[Problem]) -> None:
        self.file = str(file)
        self.problems = problems
        lines = [f"data map {self.file} is invalid ({len(problems)} problem(s)):"]
        for p in problems:
            where = f"{self.file}:{p.line}" if p.line else self.file
            lines.append(f"  {where}: {p.path or '<top>'}: {p.why}")
        super().__init__("\n".join(lines))


class ConfigError(RuntimeError):
    """The environment does not provide what the data map asks for (a variable, a secret)."""
