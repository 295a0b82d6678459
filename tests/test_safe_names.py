"""Safe archive names for hostile object keys."""

from __future__ import annotations

import unicodedata
import zipfile
from pathlib import Path

import pytest

from exporters.safe_names import SafeNamer, clean_segments

NASTY = [
    "../../etc/passwd", "/abs/path", "a/./b", "C:\\x\\y", "con.txt", "e\u0301.txt", "\u00e9.txt",
    "a/b", "A/B", "x", "x/y", "", "..", "k.", "k", "k ", "dir\\sub\\f", "a:b?c*<d>|\"e",
    "bell\x07\x1b[31m.txt", "evil\u202etxt.exe", "LPT1.log", "aux", "COM9 .txt", "...",
    "long/" + "ä" * 200 + ".jpeg", "f" * 400, "deep/" * 40 + "leaf", "x/y", "X/Y", "x/Y/z",
]  # fmt: skip


def _check_safe(path: str) -> None:
    assert path.startswith("files/")
    assert unicodedata.is_normalized("NFC", path)
    for seg in path.split("/"):
        assert seg and seg not in (".", "..")
        assert len(seg.encode()) <= 255
        assert not seg.endswith((".", " "))
        assert not any(ch in seg for ch in '<>:"|?*\\') and seg.isprintable()
        assert seg.split(".")[0].strip().upper() not in {"CON", "PRN", "AUX", "NUL", "LPT1"}


def test_nasty_keys_give_safe_unique_names(tmp_path: Path) -> None:
    namer = SafeNamer("files")
    names = [namer.name_for(k) for k in NASTY]
    for name in names:
        _check_safe(name)
    folded = [n.casefold() for n in names]
    assert len(set(folded)) == len(names)
    # no name is a folder of another: every name can be created as a file
    prefixes = {"/".join(n.split("/")[:i]) for n in folded for i in range(1, n.count("/") + 1)}
    assert not prefixes & set(folded)
    for name in names:  # and the archive extracts on a real file system
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(name)
    with zipfile.ZipFile(tmp_path / "t.zip", "w") as z:
        for name in names:
            z.writestr(name, b"")
        assert z.testzip() is None


def test_traversal_absolute_and_drives_stay_inside() -> None:
    namer = SafeNamer()
    assert namer.name_for("../../etc/passwd") == "files/etc/passwd"
    assert namer.name_for("/abs/path") == "files/abs/path"
    assert namer.name_for("a/./b") == "files/a/b"
    assert namer.name_for("C:\\x\\y") == "files/x/y"
    assert namer.name_for("a:b.txt") == "files/a_b.txt"  # not a drive: kept, ':' replaced
    assert namer.name_for("") == "files/_"
    assert namer.name_for("..") == "files/_ (2)"


def test_reserved_and_unsafe_characters() -> None:
    namer = SafeNamer()
    assert namer.name_for("con.txt") == "files/_con.txt"
    assert namer.name_for("docs/Aux") == "files/docs/_Aux"
    assert namer.name_for("COM9 .txt") == "files/_COM9 .txt"
    assert namer.name_for("console.txt") == "files/console.txt"
    assert namer.name_for('a<b>c:d"e|f?g*h') == "files/a_b_c_d_e_f_g_h"
    assert namer.name_for("x\x00y\x1fz\x7f") == "files/x_y_z_"
    assert namer.name_for("evil\u202etxt.exe") == "files/evil_txt.exe"
    assert namer.name_for("trailing. . ") == "files/trailing"


def test_collisions_are_numbered_deterministically() -> None:
    keys = [
        "a/b",
        "A/B",
        "\u00e9",
        "e\u0301",
        "k",
        "k.",
        "k ",
        "r.tar.gz",
        "R.TAR.GZ",
        ".env",
        ".ENV",
    ]
    first = [SafeNamer().name_for(k) for k in keys]  # one namer each: no collisions
    namer = SafeNamer()
    names = [namer.name_for(k) for k in keys]
    assert names == [
        "files/a/b", "files/a/B (2)", "files/é", "files/é (2)", "files/k", "files/k (2)",
        "files/k (3)", "files/r.tar.gz", "files/R (2).TAR.GZ", "files/.env", "files/.ENV (2)",
    ]  # fmt: skip
    assert first[1] == "files/A/B"
    again = SafeNamer()
    assert [again.name_for(k) for k in keys] == names


def test_file_and_folder_of_the_same_name() -> None:
    namer = SafeNamer()
    assert namer.name_for("x") == "files/x"
    assert namer.name_for("x/y") == "files/x (2)/y"
    assert namer.name_for("X/z") == "files/x (2)/z"  # the same folder, whatever its case
    namer = SafeNamer()
    assert namer.name_for("x/y") == "files/x/y"
    assert namer.name_for("x") == "files/x (2)"
    assert namer.name_for("x (2)/q") == "files/x (2) (2)/q"  # the file holds "x (2)"


@pytest.mark.parametrize(
    ("key", "ext"),
    [("ä" * 200 + ".jpeg", ".jpeg"), ("b" * 300, ""), ("c" * 300 + ".tar.gz", ".tar.gz")],
)
def test_long_names_keep_their_extension(key: str, ext: str) -> None:
    namer = SafeNamer()
    name = namer.name_for(key).removeprefix("files/")
    assert name.endswith(ext) and len(name.encode()) <= 255
    assert len(name.encode()) > 250 - len(ext)  # "ä" is 2 bytes: at most one byte lost
    twin = namer.name_for(key).removeprefix("files/")
    assert twin.endswith(f" (2){ext}") and len(twin.encode()) <= 255


def test_clean_segments_and_root() -> None:
    assert clean_segments("//a//b/") == ["a", "b"]
    assert clean_segments("./../.") == ["_"]
    assert SafeNamer("exports/files").name_for("a") == "exports/files/a"
    assert SafeNamer("").name_for("a/b") == "a/b"
