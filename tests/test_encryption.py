"""Age encryption of archives, checked with the standard ``age`` CLI (Debian's ``age``
package), never with our own code: round trips to one and several recipients (X25519 and
SSH), recipient validation, bounded memory on 512 MiB, file mode and no partial output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from exporters import encryption
from exporters.encryption import (
    MAX_RECIPIENTS,
    EncryptedFile,
    encrypt_file,
    encrypted_name,
    parse_recipients,
)

REPO = Path(__file__).resolve().parent.parent
MB = 1 << 20


@pytest.fixture(scope="module")
def age() -> str:
    """The ``age`` CLI; fails (never skips) when it is missing."""
    found = shutil.which("age")
    if not found or not shutil.which("age-keygen"):
        pytest.fail(
            "the age CLI (age, age-keygen) is not installed: these tests decrypt with the "
            "standard tool (install it: apt-get install age)"
        )
    return found


def new_identity(folder: Path, name: str) -> tuple[Path, str]:
    """A fresh age identity file made by ``age-keygen`` and its public key."""
    key = folder / f"{name}.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert public.startswith("age1")
    return key, public


def new_ssh_identity(folder: Path, kind: str) -> tuple[Path, str]:
    if not shutil.which("ssh-keygen"):
        pytest.fail("ssh-keygen is not installed (apt-get install openssh-client)")
    key = folder / f"id_{kind}"
    extra = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", "someone@example", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key, (folder / f"id_{kind}.pub").read_text().strip()


def age_decrypt(age: str, identity: Path, encrypted: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [age, "-d", "-i", str(identity), str(encrypted)], capture_output=True, timeout=120
    )


def make_zip(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.html", "<h1>Your data</h1>" * 50)
        z.writestr("data/orders.json", json.dumps([{"id": i} for i in range(2000)]))
        z.writestr("data/blob.bin", os.urandom(300_000))  # more than one 64 KiB age chunk
    return path.read_bytes()


# 1. Round trips, decrypted by the age CLI ------------------------------------------------


def test_one_recipient_decrypts_with_age_to_identical_bytes(age: str, tmp_path: Path) -> None:
    key, public = new_identity(tmp_path, "subject")
    src = tmp_path / "req-123.zip"
    plain = make_zip(src)
    dst = tmp_path / encrypted_name(src.name)
    assert dst.name == "req-123.zip.age"

    result = encrypt_file(src, dst, parse_recipients([public]))

    encrypted = dst.read_bytes()
    assert encrypted.startswith(b"age-encryption.org/v1\n")
    assert plain not in encrypted and b"orders.json" not in encrypted
    assert result == EncryptedFile(dst, len(encrypted), hashlib.sha256(encrypted).hexdigest())
    out = age_decrypt(age, key, dst)
    assert out.returncode == 0, out.stderr
    assert out.stdout == plain


def test_each_recipient_decrypts_and_an_unrelated_identity_does_not(
    age: str, tmp_path: Path
) -> None:
    (key1, pub1), (key2, pub2) = new_identity(tmp_path, "a"), new_identity(tmp_path, "b")
    stranger, _ = new_identity(tmp_path, "stranger")
    src = tmp_path / "archive.zip"
    plain = make_zip(src)
    dst = tmp_path / "archive.zip.age"
    encrypt_file(src, dst, parse_recipients([pub1, pub2]))

    for key in (key1, key2):
        out = age_decrypt(age, key, dst)
        assert out.returncode == 0, out.stderr
        assert out.stdout == plain
    refused = age_decrypt(age, stranger, dst)
    assert refused.returncode != 0
    assert refused.stdout == b""
    assert b"no identity matched" in refused.stderr


def test_ssh_public_keys_as_recipients(age: str, tmp_path: Path) -> None:
    (ed_key, ed_pub), (rsa_key, rsa_pub) = (
        new_ssh_identity(tmp_path, "ed25519"),
        new_ssh_identity(tmp_path, "rsa"),
    )
    _, age_pub = new_identity(tmp_path, "other")
    src = tmp_path / "archive.zip"
    plain = make_zip(src)
    dst = tmp_path / "archive.zip.age"
    encrypt_file(src, dst, parse_recipients([ed_pub, rsa_pub, age_pub]))
    for key in (ed_key, rsa_key):
        out = age_decrypt(age, key, dst)
        assert out.returncode == 0, out.stderr
        assert out.stdout == plain


# 2. Recipient validation -----------------------------------------------------------------

NOT_A_KEY = (
    "recipient {} is not an age public key (age1...) or an SSH public key (ssh-ed25519 / ssh-rsa)"
)


def test_malformed_recipients_are_named_by_position_never_echoed(age: str, tmp_path: Path) -> None:
    _, good = new_identity(tmp_path, "good")
    bad_checksum = good[:-1] + ("q" if good[-1] != "q" else "p")
    bad_values = [
        "age1notakeyatall",
        bad_checksum,
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
        "age1yubikey1qwertyuiopasdfghjklzxcvbnm",  # a plugin recipient: needs a plugin binary
        "ssh-ed25519 AAAAnotbase64key someone@example",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "   ",
    ]
    for value in bad_values:
        with pytest.raises(ValueError) as err:
            parse_recipients([good, value])
        # one fixed message whatever the value: the position, never the value itself
        assert str(err.value) == NOT_A_KEY.format(2)
    with pytest.raises(ValueError, match=r"^recipient 1 is not an age public key"):
        parse_recipients([None, good])  # type: ignore[list-item]


def test_empty_too_many_repeated_and_bare_string_are_refused(age: str, tmp_path: Path) -> None:
    _, good = new_identity(tmp_path, "good")
    with pytest.raises(ValueError, match="at least one recipient"):
        parse_recipients([])
    with pytest.raises(ValueError, match="at least one recipient"):
        encrypt_file(tmp_path / "x", tmp_path / "x.age", [])
    with pytest.raises(ValueError, match=f"at most {MAX_RECIPIENTS} recipients"):
        parse_recipients([new_identity(tmp_path, f"k{i}")[1] for i in range(MAX_RECIPIENTS + 1)])
    with pytest.raises(ValueError, match=r"^recipient 2 repeats recipient 1$"):
        parse_recipients([good, f" {good} "])
    with pytest.raises(ValueError, match="not a single string"):
        parse_recipients(good)
    assert len(parse_recipients([new_identity(tmp_path, f"m{i}")[1] for i in range(10)])) == 10


# 3. Bounded memory on a large archive ----------------------------------------------------

CHILD = """
import json, sys, time
from pathlib import Path
from exporters.encryption import encrypt_file, parse_recipients
src, dst, public = sys.argv[1:4]
started = time.perf_counter()
result = encrypt_file(Path(src), Path(dst), parse_recipients([public]))
seconds = time.perf_counter() - started
status = Path("/proc/self/status").read_text()
peak_kb = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
print(json.dumps({"peak_kb": peak_kb, "seconds": seconds, "bytes": result.bytes,
                  "sha256": result.sha256}))
"""


def test_512_mib_encrypts_in_bounded_memory_and_decrypts_with_age(age: str, tmp_path: Path) -> None:
    key, public = new_identity(tmp_path, "subject")
    src, dst = tmp_path / "big.zip", tmp_path / "big.zip.age"
    block, plain_hash = os.urandom(MB), hashlib.sha256()
    with open(src, "wb") as f:
        for i in range(512):
            chunk = i.to_bytes(8, "big") + block[8:]  # no two MiB alike
            plain_hash.update(chunk)
            f.write(chunk)

    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dst), public],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    peak_mb = report["peak_kb"] / 1024
    print(f"\nencrypt 512 MiB: {report['seconds']:.2f} s, peak RSS (VmHWM) {peak_mb:.1f} MB")
    assert peak_mb < 200, f"peak memory {peak_mb:.1f} MB while encrypting 512 MiB"
    assert report["bytes"] == dst.stat().st_size > 512 * MB

    started = time.perf_counter()
    decrypted, encrypted_hash = hashlib.sha256(), hashlib.sha256()
    with subprocess.Popen([age, "-d", "-i", str(key), str(dst)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(MB):
            decrypted.update(chunk)
    assert proc.returncode == 0
    print(f"age -d 512 MiB: {time.perf_counter() - started:.2f} s")
    assert decrypted.hexdigest() == plain_hash.hexdigest()
    with open(dst, "rb") as f:
        while chunk := f.read(MB):
            encrypted_hash.update(chunk)
    assert encrypted_hash.hexdigest() == report["sha256"]


# 4. File mode and all-or-nothing output --------------------------------------------------


def test_output_is_private_whatever_the_umask(age: str, tmp_path: Path) -> None:
    _, public = new_identity(tmp_path, "subject")
    src = tmp_path / "a.zip"
    make_zip(src)
    old = os.umask(0)
    try:
        result = encrypt_file(src, tmp_path / "a.zip.age", parse_recipients([public]))
    finally:
        os.umask(old)
    assert (result.path.stat().st_mode & 0o777) == 0o600


def test_no_partial_file_when_encryption_fails(
    age: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, public = new_identity(tmp_path, "subject")
    recipients = parse_recipients([public])
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(FileNotFoundError):
        encrypt_file(tmp_path / "missing.zip", out / "missing.zip.age", recipients)
    assert list(out.iterdir()) == []

    # The disk fills up half-way: the temporary file goes, an earlier output stays as it was.
    src = tmp_path / "a.zip"
    src.write_bytes(os.urandom(2 * MB))
    previous = out / "a.zip.age"
    previous.write_bytes(b"earlier delivery")
    real_write = encryption._HashingWriter.write

    def disk_full(self: encryption._HashingWriter, data: bytes) -> int:
        if self.size > MB:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(encryption._HashingWriter, "write", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        encrypt_file(src, previous, recipients)
    assert list(out.iterdir()) == [previous]
    assert previous.read_bytes() == b"earlier delivery"
