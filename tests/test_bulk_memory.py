"""Memory housekeeping of a batch (engine/bulk/memory.py)."""

from __future__ import annotations

import gc
import platform

import pyarrow as pa
import pytest

from engine.bulk.memory import GC_THRESHOLD, _malloc_trim, fewer_collections, release_memory


def test_fewer_collections_raises_the_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), fewer_collections(5_000):
        assert gc.get_threshold()[0] == 5_000
        raise RuntimeError("a failing batch")
    assert gc.get_threshold() == before


def test_release_memory_finds_glibc_trim_and_keeps_live_data() -> None:
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert _malloc_trim() is not None
    live = pa.array(range(100_000))
    dropped = pa.array(range(1_000_000))
    held = pa.total_allocated_bytes()
    del dropped
    release_memory()
    assert pa.total_allocated_bytes() < held
    assert live.sum().as_py() == sum(range(100_000))
