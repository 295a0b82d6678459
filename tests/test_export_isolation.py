"""An export holds the subject's data and nobody else's.

For many subjects of the demo world, no email, name or id of any other person appears
anywhere in the subject's archive (data files, manifest, index, file names), the
shared-organisation and mentioned-in-ticket cases included.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter

from tests.world_fixtures import Demo, Exporter, archive_text


def identifiers(demo: Demo) -> dict[str, set[str]]:
    """person_id -> every string that identifies that person alone."""
    con = sqlite3.connect(demo.root / "crm.sqlite")
    names = Counter(n for (n,) in con.execute("select full_name from people"))
    out: dict[str, set[str]] = {}
    for pid, cust, name, email in con.execute(
        "select person_id, customer_number, full_name, email from people"
    ):
        ids = {pid, cust, email.casefold()}
        if names[name] == 1:
            ids.add(name)
        out[pid] = ids
    for pid, acc, login, pay in con.execute(
        "select person_id, account_id, login_name, payment_customer_id from accounts "
        "where person_id is not null"
    ):
        out[pid] |= {acc, login} | ({pay} if pay else set())
    return out


def tokens(text: str) -> set[str]:
    """Every email, word and run of up to four words in the text, case-folded.

    An identifier (an email, an id, a login, a full name) is in the text exactly when it
    is one of these, so each check is a set lookup rather than a scan.
    """
    low = text.casefold()
    found = set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", low))
    for run in re.findall(r"[\w.'’-]+(?:[ \t]+[\w.'’-]+)*", low):
        words = run.split()
        for n in range(1, 5):
            for i in range(len(words) - n + 1):
                found.add(" ".join(words[i : i + n]).strip(".,'’-"))
                found.add(" ".join(words[i : i + n]))
    found |= set(re.findall(r"\w+", low))
    return found


def person_ids_for(demo: Demo, email: str) -> set[str]:
    con = sqlite3.connect(demo.root / "crm.sqlite")
    return {
        p
        for (p,) in con.execute(
            "select person_id from people where lower(email)=?", (email.casefold(),)
        )
    }


def test_no_other_persons_identifiers_in_any_archive(demo: Demo, exporter: Exporter) -> None:
    world = json.loads((demo.root / "world.json").read_text())["edge_cases"]
    con = sqlite3.connect(demo.root / "crm.sqlite")
    subjects = [
        e
        for case in (
            "shared_org_member",
            "ticket_mentions_other",
            "multi_account",
            "case_variant_email",
            "heavy_user",
            "under_16",
        )
        for e in world[case]["emails"]
    ]
    subjects += [e for (e,) in con.execute("select email from people order by person_id limit 25")]
    ids = identifiers(demo)
    checked = 0
    for email in dict.fromkeys(subjects):
        own = person_ids_for(demo, email)
        text = archive_text(exporter.export(("email", email)).delivered.location)
        present = tokens(text)
        own_strings = {s.casefold() for p in own for s in ids[p]}
        for pid, strings in ids.items():
            if pid in own:
                continue
            for s in strings:
                if s.casefold() in own_strings:
                    continue  # the same value is also the subject's own (e.g. a shared name)
                assert s.casefold() not in present, (
                    f"an identifier of {pid} is in the archive of a subject"
                )
        checked += 1
    assert checked >= 25
