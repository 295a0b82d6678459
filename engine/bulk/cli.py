"""``portability bulk``: many people exported in batches, across the machine's cores.

Subjects come from a file (or stdin), one person per line (``TYPE=VALUE``, several
identities of one person joined by ``;``), so no identity lands in argv. Each line gets
a request and an archive of its own; progress (delivered, failed, remaining) goes to
stderr, and one result line per subject to stdout: its line number, request id, and
archive or reason. The exit code is 1 when any subject failed.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.bulk import BATCH_SIZE
from engine.datamap import DEFAULT_DATAMAP, DataMapError, load_datamap
from engine.envfile import read_env
from engine.request import ExportRequest, RequestError, new_request_id, parse_subjects


@click.command("bulk")
@click.argument("subjects", type=click.File("r", encoding="utf-8"))
@click.option(
    "--type",
    "request_type",
    type=click.Choice(["access", "portability"]),
    default="access",
    show_default=True,
    help="access (Art. 15): all data; portability (Art. 20): provided and observed data",
)
@click.option("--out", default="var/exports", show_default=True, help="a folder or s3:// URL")
@click.option(
    "--datamap", type=click.Path(path_type=Path), default=DEFAULT_DATAMAP, show_default=True
)
@click.option("--env-file", type=click.Path(exists=True, path_type=Path))
@click.option("--world", type=click.Path(exists=True, path_type=Path), help="a demo world")
@click.option(
    "--staging", type=click.Path(path_type=Path), default=Path("var/staging"), show_default=True
)
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    default=None,
    help="worker processes (default: the machine's cores; 0: in this process)",
)
def bulk(
    subjects: click.utils.LazyFile,
    request_type: str,
    out: str,
    datamap: Path,
    env_file: Path | None,
    world: Path | None,
    staging: Path,
    batch_size: int,
    processes: int | None,
) -> None:
    """Export every person listed in SUBJECTS ('-' reads stdin), in batches."""
    from engine.bulk.pool import BulkSettings, run_bulk
    from engine.cli import fail, world_services

    try:
        people = parse_subjects(subjects.read())
        as_of = datetime.now(UTC).replace(microsecond=0)
        requests = [
            ExportRequest(new_request_id(), request_type, idents, as_of=as_of)  # type: ignore[arg-type]
            for idents in people
        ]
    except RequestError as err:
        fail(f"bad subjects: {err}")
    try:
        load_datamap(datamap)
    except DataMapError as err:
        fail(str(err))
    click.echo(f"bulk export of {len(requests)} subjects ({request_type})", err=True)
    start = time.monotonic()
    last = [0.0]

    def progress(delivered: int, failed: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1 or delivered + failed == total:
            last[0] = now
            remaining = total - delivered - failed
            rate = (delivered + failed) / max(now - start, 1e-9)
            sys.stderr.write(
                f"  {delivered} delivered, {failed} failed, {remaining} remaining "
                f"({rate:.0f} subjects/s)\n"
            )
            sys.stderr.flush()

    with world_services(world) as env:
        base = {**env, **read_env(env_file)} if env_file else dict(env)
        settings = BulkSettings(datamap, out, staging, base)
        results = run_bulk(
            requests, settings, processes=processes, batch_size=batch_size, progress=progress
        )
    failed = 0
    for line, result in enumerate(results, 1):
        if result.delivered:
            where = " ".join(p.location for p in result.parts)
            click.echo(f"{line}\t{result.request_id}\tdelivered\t{where}")
        else:
            failed += 1
            click.echo(f"{line}\t{result.request_id}\tfailed\t{result.reason}")
    if failed:
        raise SystemExit(1)
