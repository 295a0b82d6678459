"""Customer files: ``objects/<account_id>/<key>`` in a local folder or an S3 bucket.

Keys are awkward on purpose: spaces, unicode in NFC and in NFD (two keys that look the
same), nested folders, path-like segments (``..name``, ``name./``), upper-case
extensions; some content is already compressed (gzip, zip, PNG, JPEG) and a few files
are several MB. Content and modification times derive from the seed.
"""

from __future__ import annotations

import gzip
import io
import mimetypes
import os
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .sizes import REF_TS
from .skeleton import Skeleton
from .vec import stream

_NFC = unicodedata.normalize("NFC", "Résumé 2025.pdf")
_NFD = unicodedata.normalize("NFD", "Résumé 2025.pdf")
# The heavy user's account gets every awkward key at least once.
AWKWARD_KEYS = (
    _NFC,
    _NFD,
    "my files/2025/March report (final) v2.csv",
    "..hidden-notes.txt",
    "v2./readme.txt",
    "deeply/nested/folder/structure/with/many/levels/file.txt",
    "日本語のファイル.txt",
    "emoji 🎉 party.png",
    "photos/IMG_0042.JPG",
    "archives/site export.zip",
    "big/disk-image.raw.gz",
)
_TEMPLATES = (
    "reports/{y}/Q{q} usage report.csv",
    "reports/{y}-{m:02d} summary.pdf",
    "photos/IMG_{n:04d}.jpg",
    "photos/Holiday {y}/DSC{n:05d}.JPG",
    "screenshots/Screenshot {y}-{m:02d}-{d:02d} at {h:02d}.{mi:02d}.png",
    "archives/backup-{y}{m:02d}{d:02d}.tar.gz",
    "archives/site export {y}-{m:02d}.zip",
    "notes/todo.md",
    "notes/Meeting notes – {y}-{m:02d}-{d:02d}.md",
    "config/app.json",
    "logs/{y}-{m:02d}-{d:02d}/app.log.gz",
    "data/measurements_{n}.csv",
)
_WORD_TEXT = (
    "cluster latency region bucket instance snapshot volume invoice deploy rollback metrics "
    "quota throughput replica failover café naïve über schön"
)
_WORDS = tuple(_WORD_TEXT.split())


@dataclass(frozen=True)
class ObjectSpec:
    account: int
    key: str
    number: int  # position in the world's object list: seeds the content
    big: bool = False


def _text(rng: np.random.Generator, lines: int) -> bytes:
    words = np.array(_WORDS)[rng.integers(0, len(_WORDS), (lines, 8))]
    return ("\n".join(" ".join(w) for w in words) + "\n").encode()


def _csv(rng: np.random.Generator, rows: int) -> bytes:
    vals = rng.integers(0, 100_000, (3, rows))
    table = pa.table(
        {"row": np.arange(rows), "requests": vals[0], "cost_eur": vals[1] / 100, "bytes": vals[2]}
    )
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    return buf.getvalue()


def _png(rng: np.random.Generator, side: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    pixels = rng.integers(0, 256, (side, side * 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    head = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _zip(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(int(rng.integers(2, 5))):
            info = zipfile.ZipInfo(f"site/page-{i}.html", date_time=(2024, 1, 1, 0, 0, 0))
            z.writestr(info, b"<html><body>" + _text(rng, 40) + b"</body></html>")
    return buf.getvalue()


def render(spec: ObjectSpec, seed: int) -> bytes:
    """The deterministic content of one object, by its extension."""
    rng = stream(seed, 9, spec.number)
    ext = spec.key.lower().rsplit(".", 1)[-1]
    if spec.big:
        noise = rng.integers(0, 256, int(rng.integers(2, 5)) << 20, dtype=np.uint8).tobytes()
        return gzip.compress(noise, compresslevel=0, mtime=0)  # noise: stored blocks
    if ext == "csv":
        return _csv(rng, int(rng.integers(20, 2000)))
    if ext in ("txt", "md", "json", "log"):
        return _text(rng, int(rng.integers(5, 400)))
    if ext == "pdf":
        return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + _text(rng, 200) + b"%%EOF\n"
    if ext == "png":
        return _png(rng, int(rng.integers(16, 120)))
    if ext == "jpg":
        body = rng.integers(0, 256, int(rng.integers(20_000, 300_000)), dtype=np.uint8)
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + body.tobytes() + b"\xff\xd9"
    if ext == "gz":
        return gzip.compress(_csv(rng, int(rng.integers(100, 5000))), mtime=0)
    if ext == "zip":
        return _zip(rng)
    return _text(rng, 50)


def plan_objects(sk: Skeleton, count: int) -> list[ObjectSpec]:
    """Which account holds which keys (``count`` objects in all; none if 0)."""
    if count <= 0:
        return []
    rng = stream(sk.seed, 9, 1_000_000_007)
    heavy = int(sk.acc_first[sk.edge["heavy_user"]])
    specs = [
        ObjectSpec(heavy, k, i, big=k.startswith("big/"))
        for i, k in enumerate(AWKWARD_KEYS[:count])
    ]
    no_obj = sk.edge["no_objects"]
    eligible = np.flatnonzero(sk.acc_person != no_obj)
    eligible = eligible[eligible != heavy]
    weights = 1.0 / np.arange(1, eligible.size + 1) ** 0.8
    owners = rng.choice(rng.permutation(eligible), count - len(specs), p=weights / weights.sum())
    owners[: min(5, owners.size)] = sk.shared_account
    big = set(rng.choice(owners.size, min(2, owners.size), replace=False).tolist())
    seen: set[tuple[int, str]] = {(s.account, s.key) for s in specs}
    for j, acc in enumerate(owners.tolist()):
        t = REF_TS - int(rng.integers(0, 3 * 365 * 86_400))
        d = np.datetime64(t, "s").astype(object)
        fields = {
            "y": d.year,
            "q": (d.month - 1) // 3 + 1,
            "m": d.month,
            "d": d.day,
            "h": d.hour,
            "mi": d.minute,
            "n": int(rng.integers(1, 10_000)),
        }
        key = _TEMPLATES[int(rng.integers(0, len(_TEMPLATES)))].format(**fields)
        if j in big:
            key = f"archives/full backup {d.year}.tar.gz"
        while (acc, key) in seen:
            key = f"copy of {key}"
        seen.add((acc, key))
        specs.append(ObjectSpec(acc, key, len(specs), big=j in big))
    return specs


def mtime(sk: Skeleton, spec: ObjectSpec) -> int:
    created = int(sk.acc_created[spec.account])
    rng = stream(sk.seed, 9, 2_000_000_000 + spec.number)
    return created + int(rng.random() * (REF_TS - created))


def write_objects(
    sk: Skeleton,
    specs: list[ObjectSpec],
    *,
    folder: Path | None = None,
    s3_client: Any = None,
    bucket: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Write the objects to ``folder`` or, given a boto3 client, to ``bucket``. Bytes out."""
    total = 0
    for i, spec in enumerate(specs):
        data = render(spec, sk.seed)
        total += len(data)
        owner = sk.ids["acc"].one(spec.account)
        when = mtime(sk, spec)
        if s3_client is not None:
            kind = mimetypes.guess_type(spec.key)[0] or "application/octet-stream"
            s3_client.put_object(
                Bucket=bucket,
                Key=f"{owner}/{spec.key}",
                Body=data,
                ContentType=kind,
                Metadata={"mtime": str(when)},
            )
        elif folder is not None:
            path = folder / owner / spec.key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (when, when))
        if progress and ((i + 1) % 50 == 0 or i + 1 == len(specs)):
            progress("objects", i + 1, len(specs))
    return total
