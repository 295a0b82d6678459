"""Infuze Cloud's demo world: a deterministic generator of the source systems, and the
payment provider stand-in. See docs/demo-world.md.

Public API: ``build_world``, ``World``, ``WorldSize``, ``SIZES``, ``start_payments_server``,
``Faults`` (imported lazily, so that the payment server starts without the generator).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SIZES", "Faults", "World", "WorldSize", "build_world", "start_payments_server"]

_WHERE = {
    "build_world": "build",
    "World": "build",
    "WorldSize": "sizes",
    "SIZES": "sizes",
    "start_payments_server": "payments_api",
    "Faults": "payments_api",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    from importlib import import_module

    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
