"""Safe, unique archive paths for object-store keys.

A key from a source system may hold anything: ``..`` segments, absolute paths, drive
letters, backslashes, control characters, names Windows reserves, names that differ
only by case or Unicode normalization. :class:`SafeNamer` turns each key into a path
under a root folder that extracts safely on Linux, macOS and Windows, and that is
unique among the names it has given, compared case-insensitively, with no file
standing where another name needs a folder. Collisions get `` (2)``, `` (3)`` ...
before the extension, in call order, so the same keys in the same order always give
the same names.
"""

from __future__ import annotations

import re
import unicodedata

MAX_SEGMENT_BYTES = 255
_MAX_EXTENSION_BYTES = 32
_UNSAFE = re.compile(
    '[\x00-\x1f\x7f-\x9f<>:"|?*'
    "\u200e\u200f\u202a-\u202e\u2066-\u2069]"  # bidirectional controls: spoofed extensions
)
_DRIVE = re.compile(r"^/*[A-Za-z]:(?=/|$)")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)


def _key(path: str) -> str:
    """Comparison key: what a case-insensitive file system would see."""
    return unicodedata.normalize("NFC", path.casefold())


def _split_ext(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    if dot <= 0 or len(name[dot:].encode()) > _MAX_EXTENSION_BYTES or " " in name[dot:]:
        return name, ""
    stem, ext = name[:dot], name[dot:]
    if stem.lower().endswith(".tar") and len(stem) > 4:  # keep "x (2).tar.gz" readable
        return stem[:-4], stem[-4:] + ext
    return stem, ext


def _truncate(name: str, limit: int = MAX_SEGMENT_BYTES) -> str:
    """At most ``limit`` UTF-8 bytes, keeping the extension; never cuts a character."""
    if len(name.encode()) <= limit:
        return name
    stem, ext = _split_ext(name)
    room = limit - len(ext.encode())
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(". ")
    return (stem or "_") + ext


def _clean_segment(segment: str) -> str:
    seg = _UNSAFE.sub("_", segment).rstrip(". ")
    if not seg:
        return "_"
    if seg.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        seg = "_" + seg
    return _truncate(seg)


def clean_segments(key: str) -> list[str]:
    """The key's path segments, made safe one by one (not yet unique)."""
    key = unicodedata.normalize("NFC", key).replace("\\", "/")
    key = _DRIVE.sub("", key)
    parts = [p for p in key.split("/") if p not in ("", ".", "..")]
    return [_clean_segment(p) for p in parts] or ["_"]


def _numbered(name: str, n: int) -> str:
    stem, ext = _split_ext(name)
    suffix = f" ({n})"
    room = MAX_SEGMENT_BYTES - len(ext.encode()) - len(suffix)
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(". ") or "_"
    return f"{stem}{suffix}{ext}"


class SafeNamer:
    """Gives each object key a safe archive path under ``root``, unique per namer."""

    def __init__(self, root: str = "files") -> None:
        self.root = "/".join(clean_segments(root)) if root else ""
        self._files: set[str] = set()  # comparison keys of names given to files
        self._dirs: dict[str, str] = {}  # comparison key of a folder -> its path

    def _taken(self, path: str) -> bool:
        k = _key(path)
        return k in self._files or k in self._dirs

    def _join(self, parent: str, segment: str) -> str:
        return f"{parent}/{segment}" if parent else segment

    def _free(self, parent: str, segment: str) -> str:
        """``parent/segment``, or the first numbered variant nobody holds."""
        path, n = self._join(parent, segment), 1
        while self._taken(path):
            n += 1
            path = self._join(parent, _numbered(segment, n))
        return path

    def name_for(self, key: str) -> str:
        """The archive path for ``key``; every call gives a new, distinct path."""
        *folders, leaf = clean_segments(key)
        parent = self.root
        for folder in folders:
            wanted = _key(self._join(parent, folder))
            if wanted in self._dirs:  # same folder (any case): share it
                parent = self._dirs[wanted]
                continue
            path = self._free(parent, folder)  # a file holds the name: number the folder
            self._dirs[wanted] = path
            self._dirs[_key(path)] = path
            parent = path
        path = self._free(parent, leaf)
        self._files.add(_key(path))
        return path
