"""The name directory behind redaction: each candidate looked up once, answers kept."""

from __future__ import annotations

import pyarrow as pa

from engine.normalize.redact import NameDirectory, Redactor, name_candidates


def test_candidates_are_capitalised_runs_and_their_sub_runs() -> None:
    text = "Ask Anna Maria Berg or Tom Lind, not tom lind."
    assert name_candidates([text, None, ""]) == [
        "Anna Maria",
        "Anna Maria Berg",
        "Ask Anna",
        "Ask Anna Maria",
        "Ask Anna Maria Berg",
        "Maria Berg",
        "Tom Lind",
    ]


def test_each_candidate_is_looked_up_once_and_prefetch_answers_later_calls() -> None:
    directory = {"Anna Berg", "Tom Lind"}
    calls: list[list[str]] = []

    def lookup(candidates: list[str]) -> set[str]:
        calls.append(list(candidates))
        return {c for c in candidates if c in directory}

    names = NameDirectory(lookup)
    names.prefetch(["Mail Anna Berg today", "Tom Lind called"])
    assert len(calls) == 1
    assert names(["Anna Berg", "Tom Lind", "Mail Anna"]) == {"Anna Berg", "Tom Lind"}
    assert len(calls) == 1  # all answered by the prefetch
    assert names(["Eva Holm", "Anna Berg"]) == {"Anna Berg"}
    assert calls[-1] == ["Eva Holm"]  # only what was never asked


def test_redaction_through_a_shared_directory_is_the_same() -> None:
    directory = {"Anna Berg"}
    shared = NameDirectory(lambda cands: {c for c in cands if c in directory})
    shared.prefetch(["Ticket: Anna Berg asked"])
    texts = pa.array(["Ticket: Anna Berg asked", None])
    direct = Redactor([], [], [], lambda cands: {c for c in cands if c in directory})
    via_shared = Redactor([], [], [], shared)
    assert via_shared.redact(texts).equals(direct.redact(texts))
    assert via_shared.redactions == direct.redactions == 1
