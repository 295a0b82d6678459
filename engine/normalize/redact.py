"""Redaction of other people from free text (GDPR Art. 15(4), 20(4)).

Support tickets and notes mention colleagues and family. In the subject's copy every
email address and phone number that is not the subject's own is replaced, and so is
every sequence of capitalised words that the name directory knows as a person's name,
unless it is the subject's own name.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

import pyarrow as pa

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w])\+?\d[\d ().-]{5,}\d(?![\w])")
_WORD = r"[^\W\d_][^\W\d_'’-]*(?:[-'’][^\W\d_]+)*"
NAME_CANDIDATE = re.compile(rf"(?<![\w])(?:{_WORD})(?:\s+{_WORD}){{1,3}}(?![\w])")

_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}")

EMAIL_MARK = "[email of another person]"
PHONE_MARK = "[phone of another person]"
NAME_MARK = "[name of another person]"


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def name_candidates(texts: Iterable[str | None]) -> list[str]:
    """Capitalised word runs and all their sub-runs of two words or more, sorted."""
    found: set[str] = set()
    for text in texts:
        if not text:
            continue
        for m in NAME_CANDIDATE.finditer(text):
            words = [w for w in m.group(0).split() if w[:1].isupper()]
            for i in range(len(words)):
                for j in range(i + 2, min(len(words), i + 4) + 1):
                    found.add(" ".join(words[i:j]))
    return sorted(found)


class NameDirectory:
    """Which candidate strings are names in the directory, each looked up once.

    A batch export shares one across its subjects: ``prefetch`` looks up the candidates
    of every subject's texts in one query, where each subject's redaction would make
    its own. A candidate not seen before is looked up when asked, so the answers are
    those of ``lookup`` whatever was prefetched. The names stay in memory only as long
    as the batch.
    """

    def __init__(self, lookup: Callable[[list[str]], set[str]]) -> None:
        self._lookup = lookup
        self._known: dict[str, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, candidates: list[str]) -> set[str]:
        with self._lock:
            missing = [c for c in candidates if c not in self._known]
        if missing:
            found = self._lookup(missing)
            with self._lock:
                for c in missing:
                    self._known[c] = c in found
        with self._lock:
            return {c for c in candidates if self._known[c]}

    def prefetch(self, texts: Iterable[str | None]) -> None:
        """Look up the name candidates of ``texts`` now, together."""
        candidates = name_candidates(texts)
        if candidates:
            self(candidates)


class Redactor:
    """Redacts what identifies anyone but the subject.

    ``known_names`` takes candidate strings and returns those that are names of people
    in the directory (one batched lookup per call).
    """

    def __init__(
        self,
        own_emails: Iterable[str],
        own_phones: Iterable[str],
        own_names: Iterable[str],
        known_names: Callable[[list[str]], set[str]] | None = None,
    ) -> None:
        self.own_emails = {e.casefold() for e in own_emails if e}
        self.own_phones = {_digits(p)[-9:] for p in own_phones if p and len(_digits(p)) >= 6}
        self.own_names = {" ".join(n.split()).casefold() for n in own_names if n}
        self.known_names = known_names
        self.redactions = 0
        self._lock = threading.Lock()  # entities of a wave may redact at the same time

    def _email(self, m: re.Match[str]) -> str:
        if m.group(0).casefold() in self.own_emails:
            return m.group(0)
        self.redactions += 1
        return EMAIL_MARK

    def _phone(self, m: re.Match[str]) -> str:
        d = _digits(m.group(0))
        if len(d) < 8 or _DATE.fullmatch(m.group(0).strip()) or d[-9:] in self.own_phones:
            return m.group(0)
        self.redactions += 1
        return PHONE_MARK

    def redact(self, arr: pa.Array) -> pa.Array:
        """``arr`` with other people's emails, phones and names replaced (thread-safe)."""
        with self._lock:
            return self._redact(arr)

    def _redact(self, arr: pa.Array) -> pa.Array:
        """The array with other people's emails, phones and names replaced."""
        texts = arr.to_pylist()
        step1 = [
            None if t is None else PHONE.sub(self._phone, EMAIL.sub(self._email, t)) for t in texts
        ]
        names: list[str] = []
        if self.known_names is not None:
            cands = name_candidates(step1)
            if cands:
                names = [
                    n
                    for n in self.known_names(cands)
                    if " ".join(n.split()).casefold() not in self.own_names
                ]
        if names:
            pattern = re.compile(
                r"(?<![\w])(?:"
                + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                + r")(?![\w])"
            )

            def mark(_: re.Match[str]) -> str:
                self.redactions += 1
                return NAME_MARK

            step1 = [None if t is None else pattern.sub(mark, t) for t in step1]
        return pa.array(step1, type=pa.string())
