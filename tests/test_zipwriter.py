"""The streaming ZIP writer: read back by zipfile (and unzip), byte-identical output,
ZIP64, bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from exporters import zipwriter
from exporters.zipwriter import ArchiveWriter, EntryInfo, should_compress
from tests.streams import Sink

WHEN = datetime(2026, 6, 30, 12, 34, 56, tzinfo=UTC)
MB = 1 << 20


class GeneratorReader:
    """A readable stream over a generator of chunks (never holds more than one)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def read(self, n: int = -1) -> bytes:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return b""
        out, self._left = self._left[:n], self._left[n:]
        return out


def _write_sample(target: Path | io.BytesIO | Sink, when: datetime = WHEN) -> list[EntryInfo]:
    with ArchiveWriter(target, timestamp=when) as zw:  # type: ignore[arg-type]
        zw.add_bytes("data/a.json", b'[\n{"x": 1}\n]\n')
        zw.add_stream("files/photo.jpg", io.BytesIO(b"\xff\xd8" + bytes(5000)), size=5002)
        with zw.open("data/b.csv") as out:
            out.write(b'"x"\r\n')
            out.write(memoryview(b"1\r\n"))
        zw.add_bytes("README.html", "<p>Grüße</p>".encode())
        zw.add_bytes("files/Ünïcode name.txt", b"hi", compress=False)
        return zw.entries


def test_entries_read_back_with_fixed_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    entries = _write_sample(path)
    assert [e.arcname for e in entries] == [
        "data/a.json", "files/photo.jpg", "data/b.csv", "README.html", "files/Ünïcode name.txt",
    ]  # fmt: skip
    assert [e.compressed for e in entries] == [True, False, True, True, False]
    assert os.stat(path).st_mode & 0o777 == 0o600
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert z.namelist() == [e.arcname for e in entries]
        for entry, info in zip(entries, z.infolist(), strict=True):
            data = z.read(info)
            assert len(data) == entry.bytes == info.file_size
            assert hashlib.sha256(data).hexdigest() == entry.sha256
            assert info.date_time == (2026, 6, 30, 12, 34, 56)
            assert info.external_attr == 0o100644 << 16
            assert info.create_system == 3
            assert info.compress_type == (
                zipfile.ZIP_DEFLATED if entry.compressed else zipfile.ZIP_STORED
            )
        assert z.read("data/b.csv") == b'"x"\r\n1\r\n'
        assert z.getinfo("files/Ünïcode name.txt").flag_bits & 0x800  # UTF-8 name flag
    if shutil.which("unzip"):
        run = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_same_content_gives_identical_bytes(tmp_path: Path) -> None:
    _write_sample(tmp_path / "a.zip")
    _write_sample(tmp_path / "b.zip")
    a = (tmp_path / "a.zip").read_bytes()
    assert a == (tmp_path / "b.zip").read_bytes()
    same_instant = WHEN.astimezone(timezone(timedelta(hours=2)))
    _write_sample(tmp_path / "c.zip", same_instant)
    assert (tmp_path / "c.zip").read_bytes() == a
    _write_sample(tmp_path / "d.zip", WHEN + timedelta(seconds=2))
    assert (tmp_path / "d.zip").read_bytes() != a
    mem1, mem2 = io.BytesIO(), io.BytesIO()
    _write_sample(mem1)
    _write_sample(mem2)
    assert mem1.getvalue() == mem2.getvalue() == a  # a seekable stream: same as a file


@pytest.mark.parametrize("spool", [2, 700, 64 * 1024, 4 * MB])
def test_file_archive_has_the_bytes_of_a_stream(
    tmp_path: Path, spool: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file target is written through a buffer of ``_SPOOL`` bytes; the headers of
    streamed entries, completed after their data, land in place wherever the buffer was."""
    monkeypatch.setattr(zipwriter, "_SPOOL", spool)
    monkeypatch.setattr(zipwriter, "_BUFFER", 4096)  # entries past 4 KB stream
    noise = os.urandom(300_000)

    def build(target: Path | io.BytesIO) -> None:
        with ArchiveWriter(target, timestamp=WHEN) as zw:  # type: ignore[arg-type]
            zw.add_bytes("data/a.json", b'[\n{"x": 1}\n]\n')
            zw.add_stream("files/noise.bin", io.BytesIO(noise), compress=False)  # ZIP64
            with zw.open("data/b.csv") as out:
                for _ in range(50):
                    out.write(b'"x","y"\r\n' * 1000)
            zw.add_bytes("README.html", b"<p>index</p>")

    path, memory = tmp_path / "a.zip", io.BytesIO()
    build(path)
    build(memory)
    assert path.read_bytes() == memory.getvalue()
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None and z.read("files/noise.bin") == noise
        assert z.read("data/b.csv") == b'"x","y"\r\n' * 50_000
    if shutil.which("unzip"):
        run = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_large_entries_reach_the_file_before_they_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipwriter, "_SPOOL", 64 * 1024)
    path = tmp_path / "a.zip"
    with ArchiveWriter(path, timestamp=WHEN) as zw, zw.open("files/x.bin") as out:
        out.write(os.urandom(3 * MB))  # one write: the entry stream sends it on at once
        assert path.stat().st_size >= 3 * MB - 64 * 1024


@pytest.mark.parametrize("gather", [1 << 20, 64])
def test_non_seekable_target(tmp_path: Path, gather: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries that stream (``gather`` 64: all but the smallest) end with a data
    descriptor, their header cannot be completed on a stream that does not seek."""
    monkeypatch.setattr(zipwriter, "_BUFFER", gather)
    sink1, sink2 = Sink(), Sink()
    entries = _write_sample(sink1)
    _write_sample(sink2)
    assert sink1.buf == sink2.buf
    path = tmp_path / "stream.zip"
    path.write_bytes(sink1.buf)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert [hashlib.sha256(z.read(e.arcname)).hexdigest() for e in entries] == [
            e.sha256 for e in entries
        ]
    if shutil.which("unzip"):
        run = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def _local_extra(archive: bytes, offset: int) -> bytes:
    name_len, extra_len = struct.unpack("<HH", archive[offset + 26 : offset + 30])
    start = offset + 30 + name_len
    return archive[start : start + extra_len]


def test_zip64_only_for_a_streamed_entry_of_unknown_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry gathered whole has its sizes in its header; one that streams with its
    size announced too; one of unknown size that streams gets ZIP64 sizes (it may pass
    4 GB before its size is known)."""
    monkeypatch.setattr(zipwriter, "_BUFFER", 16)
    buf = io.BytesIO()
    with ArchiveWriter(buf, timestamp=WHEN) as zw:
        zw.add_bytes("known.txt", b"abc")
        zw.add_stream("unknown-small.txt", io.BytesIO(b"abc"))
        zw.add_stream("known-large.txt", io.BytesIO(b"x" * 100), size=100)
        zw.add_stream("unknown-large.txt", io.BytesIO(b"y" * 100))
    data = buf.getvalue()
    with zipfile.ZipFile(buf) as z:
        infos = z.infolist()
        assert z.testzip() is None
        assert z.read("unknown-large.txt") == b"y" * 100
    extras = [_local_extra(data, i.header_offset)[:2] for i in infos]
    assert extras == [b"", b"", b"", b"\x01\x00"]  # the last: a ZIP64 extra


def test_deflate_matches_zlib_s_ratio_and_any_inflater_reads_it() -> None:
    """zlib-ng's deflate: as small as zlib's at the same level (within 1%), on text like
    an export's from a few bytes to past 32 KB, and read back by zlib and zipfile."""
    record = b'{"event_id": "e-%06d", "action": "login", "ip": "10.0.%d.%d"},\n'
    for n in (1, 3, 10, 40, 200, 700, 2000):
        text = b"".join(record % (i * 7919 % 999_983, i % 256, i * 31 % 256) for i in range(n))
        buf = io.BytesIO()
        with ArchiveWriter(buf, timestamp=WHEN) as zw:
            zw.add_bytes("data/e.json", text)
        with zipfile.ZipFile(buf) as z:
            info = z.getinfo("data/e.json")
            assert z.read(info) == text
        start = info.header_offset + 30 + len(info.filename)
        body = buf.getvalue()[start : start + info.compress_size]
        assert zlib.decompress(body, -15) == text
        full = zlib.compressobj(zipwriter.DEFLATE_LEVEL, zlib.DEFLATED, -15)
        assert info.compress_size <= 1.01 * len(full.compress(text) + full.flush()) + 8, n


def test_shared_entries_are_compressed_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``shared`` bytes (a schema) give the archive they would give unshared, and the
    second archive reuses the first one's compressed form."""
    schema = b'{"$id": "schema", "properties": {"a": {"type": "string"}}}\n' * 20
    calls = []
    real = zipwriter._compressor
    monkeypatch.setattr(zipwriter, "_compressor", lambda: calls.append(1) or real())
    monkeypatch.setattr(zipwriter, "_shared", {})
    built = []
    for shared in (False, True, True):
        buf = io.BytesIO()
        with ArchiveWriter(buf, timestamp=WHEN) as zw:
            zw.add_bytes("schemas/a.json", schema, shared=shared)
            zw.add_bytes("data/a.json", b"[]\n")
        built.append(buf.getvalue())
    assert built[0] == built[1] == built[2]
    assert len(calls) == 5  # six entries deflated but one: the third archive's schema


def test_rejects_bad_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        ArchiveWriter(io.BytesIO(), timestamp=datetime(2026, 1, 1))
    with ArchiveWriter(io.BytesIO(), timestamp=WHEN) as zw:
        zw.add_bytes("a.txt", b"1")
        with pytest.raises(ValueError, match="duplicate"):
            zw.add_bytes("a.txt", b"2")
        for bad in ("", "/abs", "../x", "a/../b", "a//b", "a\\b", "./a"):
            with pytest.raises(ValueError):
                zw.add_bytes(bad, b"x")
        with pytest.raises(ValueError, match="announced"):
            zw.add_stream("short.bin", io.BytesIO(b"12"), size=3)
        assert [e.arcname for e in zw.entries] == ["a.txt"]


def test_should_compress() -> None:
    for name in ("a.json", "b.csv", "README.html", "x", "doc.PDF", "dir.zip/file.txt", ".gz"):
        assert should_compress(name), name
    for name in ("a.parquet", "p.JPG", "v.mp4", "x.tar.gz", "d.docx", "a.zst", "m.mkv"):
        assert not should_compress(name), name


def _pattern_chunks(total: int, block: bytes) -> Iterator[bytes]:
    for _ in range(total // len(block)):
        yield block


def test_300_mb_entry_streams_with_bounded_memory(tmp_path: Path) -> None:
    block = os.urandom(MB)
    total = 300 * MB
    expected = hashlib.sha256()
    for chunk in _pattern_chunks(total, block):
        expected.update(chunk)
    path = tmp_path / "big.zip"
    tracemalloc.start()
    try:
        with ArchiveWriter(path, timestamp=WHEN) as zw:
            chunks = GeneratorReader(_pattern_chunks(total, block))
            info = zw.add_stream("files/big.bin", chunks, compress=False)
            with zw.open("files/zeros.txt") as out:  # deflated, written in odd sizes
                for _ in range(40):
                    out.write(bytes(MB + 17))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB, f"peak Python memory {peak / MB:.1f} MB"
    assert info.bytes == total and info.sha256 == expected.hexdigest()
    with zipfile.ZipFile(path) as z:
        big = z.getinfo("files/big.bin")
        assert big.file_size == total
        assert _crc(_pattern_chunks(total, block)) == big.CRC
        assert z.getinfo("files/zeros.txt").file_size == 40 * (MB + 17)
        assert z.getinfo("files/zeros.txt").compress_size < MB


def _crc(chunks: Iterator[bytes]) -> int:
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return crc


class SparseSink(Sink):
    """Keeps only small writes (headers, directories); data chunks of zeros are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.kept: list[tuple[int, bytes]] = []

    def write(self, data: bytes) -> int:
        if len(data) < 65536:
            self.kept.append((self.size, bytes(data)))
        else:
            assert bytes(data).count(0) == len(data)
        self.size += len(data)
        return len(data)

    def rebuild(self) -> io.BytesIO:
        """The whole archive would be zeros except the kept writes: rebuild its tail."""
        tail_start = self.kept[-1][0] - 4096
        tail = bytearray(self.size - tail_start)
        for offset, data in self.kept:
            if offset >= tail_start:
                tail[offset - tail_start : offset - tail_start + len(data)] = data
        return _TailFile(self.size, tail_start, bytes(tail), self.kept[0][1])


class _TailFile(io.BytesIO):
    def __init__(self, size: int, tail_start: int, tail: bytes, head: bytes) -> None:
        super().__init__()
        self._size, self._start, self._tail, self._head, self._pos = size, tail_start, tail, head, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = {0: pos, 1: self._pos + pos, 2: self._size + pos}[whence]
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else n
        out = bytearray(n)
        for i in range(n):  # small reads only (headers and directory)
            p = self._pos + i
            if p >= self._start:
                out[i] = self._tail[p - self._start]
            elif p < len(self._head):
                out[i] = self._head[p]
        self._pos += n
        return bytes(out)


def test_entry_past_4_gb_of_unknown_size() -> None:
    total = (4 << 30) + 3 * MB
    zeros = bytes(MB)
    sink = SparseSink()
    with ArchiveWriter(sink, timestamp=WHEN) as zw:  # type: ignore[arg-type]
        chunks = GeneratorReader(_pattern_chunks(total, zeros))
        info = zw.add_stream("files/huge.bin", chunks, compress=False)
        zw.add_bytes("after.txt", b"still readable")
    assert info.bytes == total
    with zipfile.ZipFile(sink.rebuild()) as z:
        huge, after = z.infolist()
        assert huge.file_size == huge.compress_size == total
        assert _crc(_pattern_chunks(total, zeros)) == huge.CRC
        assert after.header_offset > total
        assert z.read("after.txt") == b"still readable"
