"""Vectorized building blocks: seeded streams, ids, pattern-filled strings, CRC32.

Everything here works on whole numpy / Arrow arrays; nothing loops over rows in Python.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MASK48 = np.uint64((1 << 48) - 1)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ALPHABETS: dict[int, np.ndarray] = {
    ord("#"): np.frombuffer(b"0123456789", dtype=np.uint8),
    ord("@"): np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8),
    ord("%"): np.frombuffer(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8
    ),
    ord("&"): np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", dtype=np.uint8),
    ord("~"): _HEX,
}


def stream(seed: int, stage: int, *parts: int) -> np.random.Generator:
    """An independent generator for one stage (and chunk) of the build."""
    return np.random.default_rng([seed, stage, *parts])


class IdSpace:
    """Ids ``<prefix>_<12 hex>``: a seeded bijection of a counter onto 48-bit values.

    Distinct counters give distinct ids, so ids are unique without any global state.
    """

    def __init__(self, seed: int, prefix: str) -> None:
        rng = stream(seed, 900, zlib.crc32(prefix.encode()))
        k = rng.integers(0, 1 << 48, size=3, dtype=np.uint64)
        self.prefix = prefix + "_"
        self._k0 = k[0]
        self._k1 = k[1] | np.uint64(1)
        self._k2 = k[2] | np.uint64(1)

    def values(self, counter: np.ndarray | int) -> np.ndarray:
        x = (np.asarray(counter, dtype=np.uint64) + self._k0) & MASK48
        x ^= x >> np.uint64(23)
        x = (x * self._k1) & MASK48
        x ^= x >> np.uint64(19)
        x = (x * self._k2) & MASK48
        x ^= x >> np.uint64(22)
        return x

    def matrix(self, counter: np.ndarray) -> np.ndarray:
        """The ids as an ``(n, len(prefix) + 12)`` uint8 matrix of ASCII codes."""
        return with_prefix(self.prefix, hex_matrix(self.values(counter), 12))

    def strings(self, counter: np.ndarray) -> pa.StringArray:
        return fixed_strings(self.matrix(counter))

    def one(self, counter: int) -> str:
        return str(self.strings(np.array([counter]))[0])


def hex_matrix(values: np.ndarray, width: int, *, upper: bool = False) -> np.ndarray:
    """The low ``width`` hex digits of each value, as a uint8 matrix."""
    v = np.asarray(values, dtype=np.uint64)
    shifts = (np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4))[None, :]
    nibbles = (v[:, None] >> shifts) & np.uint64(0xF)
    out = _HEX[nibbles.astype(np.intp)]
    if upper:
        out = np.where(out >= ord("a"), out - 32, out).astype(np.uint8)
    return out


def with_prefix(prefix: str, mat: np.ndarray) -> np.ndarray:
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    return np.concatenate([np.broadcast_to(head, (mat.shape[0], head.size)), mat], axis=1)


def fixed_strings(mat: np.ndarray) -> pa.StringArray:
    """Rows of an ``(n, w)`` uint8 matrix of UTF-8 bytes as an Arrow string array."""
    n, w = mat.shape
    data = pa.py_buffer(np.ascontiguousarray(mat, dtype=np.uint8).tobytes())
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * w).tobytes())
    return pa.StringArray.from_buffers(n, offsets, data)


def hex_strings(values: np.ndarray, width: int, *, upper: bool = False) -> pa.StringArray:
    return fixed_strings(hex_matrix(values, width, upper=upper))


def fill_patterns(rng: np.random.Generator, patterns: Sequence[str], which: np.ndarray) -> pa.Array:
    """Row ``i`` becomes ``patterns[which[i]]`` with placeholders filled at random.

    Placeholders: ``#`` digit, ``@`` A-Z, ``%`` base64, ``&`` base32, ``~`` hex. Patterns
    are ASCII.
    """
    which = np.asarray(which, dtype=np.int64)
    n = which.size
    if n == 0:
        return pa.array([], pa.string())
    order = np.argsort(which, kind="stable")
    present, counts = np.unique(which[order], return_counts=True)
    pieces = []
    for p, cnt in zip(present.tolist(), counts.tolist(), strict=True):
        pat = np.frombuffer(patterns[p].encode("ascii"), dtype=np.uint8)
        mat = np.tile(pat, (cnt, 1))
        for code, alphabet in _ALPHABETS.items():
            cols = np.flatnonzero(pat == code)
            if cols.size:
                pick = rng.integers(0, alphabet.size, size=(cnt, cols.size))
                mat[:, cols] = alphabet[pick]
        pieces.append(fixed_strings(mat))
    joined = pa.concat_arrays(pieces)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return joined.take(pa.array(inverse))


def take(values: Sequence[str] | pa.Array, idx: np.ndarray) -> pa.Array:
    """``values[idx]`` as an Arrow string array."""
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    return arr.take(pa.array(np.asarray(idx, dtype=np.int64)))


def cat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation (strings are broadcast)."""
    return pc.binary_join_element_wise(*parts, "")


def pick(mask: np.ndarray, yes: pa.Array | str, no: pa.Array | str) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), yes, no)


def seconds(values: np.ndarray) -> pa.TimestampArray:
    return pa.array(np.asarray(values, dtype=np.int64), pa.timestamp("s"))


def zero_pad(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string()), width, "0")


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()


def crc32_rows(mat: np.ndarray) -> np.ndarray:
    """``zlib.crc32`` of every row of a uint8 matrix (fixed-width ASCII ids)."""
    crc = np.full(mat.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(mat.shape[1]):
        crc = _CRC_TABLE[(crc ^ mat[:, j]) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


def rank_within(groups: np.ndarray) -> np.ndarray:
    """For a sorted group-key array, the 0-based position of each row in its group."""
    n = groups.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def offsets(counts: np.ndarray) -> np.ndarray:
    """``[0, c0, c0+c1, ...]`` as int64."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
