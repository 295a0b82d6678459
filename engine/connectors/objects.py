"""Customer files in object storage: a local folder here, an S3 bucket in ``objects_s3``.

Connection: ``{"root": "<dir>"}`` or ``{"bucket": ..., "endpoint_url": ..., "region": ...,
"key_prefix": ...}``; ``{"root": "s3://bucket/prefix"}`` is the bucket and key prefix.
Entity: ``{"prefix": "{value}/"}``; the lookup column is ``owner``.

A fetch lists, for each owner key, the objects under the entity's prefix formatted with
that key, sorted by key, as batches of :data:`OBJECT_SCHEMA` columns. Owner keys that could
step out of their prefix (``/``, ``\\``, ``..``, a leading ``.``) are refused. ``open``
streams one object's content; a local store refuses keys that resolve outside its root
(``..``, absolute paths, symlinks pointing out).
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa

from engine.connectors.base import Lookup, SourceError

OBJECT_SCHEMA = pa.schema(
    [
        ("owner", pa.string()),
        ("key", pa.string()),
        ("relative_key", pa.string()),
        ("size", pa.int64()),
        ("last_modified", pa.timestamp("us", tz="UTC")),
        ("etag", pa.string()),
        ("content_type", pa.string()),
    ]
)
BATCH_ROWS = 10_000
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def guess_content_type(key: str) -> str:
    """A media type from the key's extension (``.gz`` files are ``application/gzip``)."""
    kind, encoding = mimetypes.guess_type(key, strict=False)
    if encoding:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified_us: int  # microseconds since the epoch (UTC)
    etag: str | None
    content_type: str | None = None


class ObjectStore:
    """What the local and the S3 store share: checking lookups and building batches.

    Subclasses list objects (``_list``) and open them; ``_full_prefix`` is the key prefix
    that ``relative_key`` is relative to.
    """

    kind = "objects"

    def __init__(self, name: str, batch_rows: int = BATCH_ROWS) -> None:
        self.name = name
        self.batch_rows = batch_rows

    def close(self) -> None:
        """Nothing to release."""

    def fetch(
        self, entity: Mapping[str, Any], lookup: Lookup, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """List each owner's objects; ``lookup.column`` must be ``owner``."""
        if lookup.column != "owner":
            raise SourceError(self.name, f"objects are looked up by 'owner', not {lookup.column!r}")
        unknown = [c for c in columns if c not in OBJECT_SCHEMA.names]
        if unknown:
            raise SourceError(self.name, f"objects have no column {unknown[0]!r}")
        owners = sorted({str(v) for v in lookup.values})
        for owner in owners:
            self._check_owner(owner)
        template = self._template(entity)
        return self._batches(template, owners, list(columns))

    def _check_owner(self, owner: str) -> None:
        if (
            not owner
            or owner.startswith(".")
            or ".." in owner
            or any(c in owner for c in "/\\")
            or not owner.isprintable()
        ):
            raise SourceError(
                self.name,
                "refused a lookup value that is not a plain owner "
                "key (path separator, '..', leading '.' or control character)",
            )

    def _template(self, entity: Mapping[str, Any]) -> str:
        template = entity.get("prefix", "{value}/")
        if not isinstance(template, str) or "{value}" not in template:
            raise SourceError(self.name, "entity 'prefix' must contain '{value}'")
        return template

    def _batches(
        self, template: str, owners: list[str], columns: list[str]
    ) -> Iterator[pa.RecordBatch]:
        for owner in owners:
            prefix = template.replace("{value}", owner)
            found = sorted(self._list(prefix, "content_type" in columns), key=lambda o: o.key)
            for start in range(0, len(found), self.batch_rows):
                yield self._batch(owner, prefix, found[start : start + self.batch_rows], columns)

    def _batch(
        self, owner: str, prefix: str, objs: list[ObjectInfo], columns: list[str]
    ) -> pa.RecordBatch:
        start = len(self._full_prefix(prefix))
        values = {
            "owner": lambda: [owner] * len(objs),
            "key": lambda: [o.key for o in objs],
            "relative_key": lambda: [o.key[start:] for o in objs],
            "size": lambda: [o.size for o in objs],
            "last_modified": lambda: [o.last_modified_us for o in objs],
            "etag": lambda: [o.etag for o in objs],
            "content_type": lambda: [o.content_type or guess_content_type(o.key) for o in objs],
        }
        arrays = [pa.array(values[c](), OBJECT_SCHEMA.field(c).type) for c in columns]
        return pa.RecordBatch.from_arrays(
            arrays, schema=pa.schema([OBJECT_SCHEMA.field(c) for c in columns])
        )

    def _full_prefix(self, prefix: str) -> str:
        return prefix

    def _list(self, prefix: str, want_type: bool) -> Iterable[ObjectInfo]:
        raise NotImplementedError

    def open(self, entity: Mapping[str, Any], key: str) -> BinaryIO:
        """Stream the content of the object at ``key`` (a ``key`` column value)."""
        raise NotImplementedError


class LocalObjectStore(ObjectStore):
    """Objects as files below ``root``; keys are paths relative to it, with ``/``."""

    def __init__(self, name: str, root: str, *, batch_rows: int = BATCH_ROWS) -> None:
        super().__init__(name, batch_rows)
        self.root = os.path.realpath(root)

    def _inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def _list(self, prefix: str, want_type: bool) -> Iterable[ObjectInfo]:
        if not os.path.isdir(self.root):
            raise SourceError(self.name, "the store's root folder does not exist")
        folder = os.path.join(self.root, *prefix.rpartition("/")[0].split("/"))
        if not os.path.lexists(folder):
            return []
        if not self._inside(os.path.realpath(folder)) or not os.path.isdir(folder):
            raise SourceError(self.name, "an owner folder resolves outside the store root")
        out = []
        try:
            found = list(self._walk(folder))
        except OSError as exc:  # its text would name the folder, i.e. the owner
            raise SourceError(self.name, f"listing failed ({type(exc).__name__})") from None
        for path, st in found:
            key = os.path.relpath(path, self.root).replace(os.sep, "/")
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise SourceError(self.name, "an object name is not valid UTF-8") from None
            if key.startswith(prefix):
                out.append(
                    ObjectInfo(
                        key,
                        st.st_size,
                        st.st_mtime_ns // 1000,
                        f"{st.st_mtime_ns:x}-{st.st_size:x}",
                    )
                )
        return out

    def _walk(self, folder: str) -> Iterator[tuple[str, os.stat_result]]:
        """Regular files below ``folder``; symlinks only to files inside the root."""
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if self._inside(target) and os.path.isfile(target):
                        yield entry.path, os.stat(target)
                elif entry.is_dir(follow_symlinks=False):
                    yield from self._walk(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.path, entry.stat(follow_symlinks=False)

    def open(self, entity: Mapping[str, Any], key: str) -> BinaryIO:
        """Open a listed object for reading; keys leading out of the root are refused."""
        if not isinstance(key, str) or not key or "\x00" in key:
            raise SourceError(self.name, "object key refused: empty or not text")
        real = os.path.realpath(os.path.join(self.root, key))
        if not self._inside(real) or real == self.root:
            raise SourceError(self.name, "object key refused: it resolves outside the store root")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise SourceError(self.name, "object not found") from None
        except OSError as exc:
            raise SourceError(
                self.name, f"object cannot be opened ({type(exc).__name__})"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SourceError(self.name, "object key refused: not a regular file")
        return os.fdopen(fd, "rb")


def build_object_store(name: str, options: Mapping[str, Any]) -> ObjectStore:
    """A local store for a folder ``root``, an S3 store for ``bucket`` or an ``s3://`` root."""
    root = str(options.get("root") or "")
    bucket, key_prefix = options.get("bucket"), str(options.get("key_prefix") or "")
    if not bucket and root.startswith("s3://"):  # s3://bucket[/prefix]
        bucket, _, prefix = root[len("s3://") :].partition("/")
        if not bucket:
            raise SourceError(name, "the s3:// root names no bucket")
        key_prefix = key_prefix or (f"{prefix.strip('/')}/" if prefix.strip("/") else "")
    if bucket:
        from engine.connectors.objects_s3 import S3ObjectStore

        return S3ObjectStore(
            name,
            str(bucket),
            endpoint_url=options.get("endpoint_url"),
            region=options.get("region"),
            key_prefix=key_prefix,
            max_attempts=int(options.get("max_attempts", 5)),
        )
    if root:
        return LocalObjectStore(name, root)
    raise SourceError(name, "an objects source needs 'root' (a folder) or 'bucket' (S3)")
