"""The ``portability`` command: demo, export, bulk, datamap check, world build.

The export machinery (Arrow, SQLAlchemy, the connectors) is imported by the commands
that use it, so ``--help`` and ``datamap check`` answer at once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.datamap import DEFAULT_DATAMAP, DataMapError, load_datamap
from engine.envfile import read_env
from engine.request import (
    FORMATS,
    ExportRequest,
    Identity,
    RequestError,
    new_request_id,
    parse_identities,
)

if TYPE_CHECKING:
    from engine.export import ExportResult

DEFAULT_OUT = Path("var/exports")
DEFAULT_STAGING = Path("var/staging")


def progress_printer(stream=sys.stderr):
    """Progress lines on stderr: stage names and counts, never data."""

    def show(stage: str, done: int, total: int) -> None:
        stream.write(f"  [{done}/{total}] {stage}\n" if total > 1 else f"  {stage}\n")
        stream.flush()

    return show


def print_result(result: ExportResult) -> None:
    parts = result.parts or [result.delivered]
    for n, part in enumerate(parts, 1):
        label = "archive" if len(parts) == 1 else f"part {n}/{len(parts)}"
        click.echo(f"{label}: {part.location}")
        click.echo(f"  {part.bytes} bytes, sha256 {part.sha256}")
    m = result.manifest
    click.echo(f"  {m['statement']}")
    for s in m["sources"]:
        what = f"{s['records']} records" if s["status"] == "found" else s["status"]
        click.echo(f"  {s['system'] + '.' + s['entity']:<28} -> {s['dataset']:<24} {what}")
    if m["customer_files"]["count"]:
        cf = m["customer_files"]
        click.echo(f"  customer files: {cf['count']} ({cf['bytes']} bytes)")
    for n in m["notices"]:
        click.echo(f"  notice: {n['code']}")


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


@contextmanager
def world_services(world: Path | None) -> Iterator[Mapping[str, str]]:
    """Environment for a demo world: its world.env, and its payment provider running."""
    if world is None:
        yield os.environ
        return
    from demo_world.session import running_world

    with running_world(world) as env:
        yield {**os.environ, **env}


def export_one(
    request: ExportRequest,
    datamap: Path,
    out: Path | str,
    staging: Path,
    env: Mapping[str, str],
    quiet: bool = False,
) -> ExportResult:
    from engine.datamap import ConfigError
    from engine.export import ExportFailed, run_export
    from exporters.delivery import open_delivery

    try:
        delivery = open_delivery(out)
    except ValueError as err:  # a malformed s3:// URL: its parameter is named
        fail(f"--out: {err}")
    try:
        dm = load_datamap(datamap)
        return run_export(
            request,
            dm,
            delivery,
            staging_root=staging,
            env=env,
            progress=None if quiet else progress_printer(),
        )
    except (DataMapError, ConfigError) as err:
        fail(str(err))
    except ExportFailed as err:
        fail(str(err), code=1)
    raise AssertionError("unreachable")


request_type_option = click.option(
    "--type",
    "request_type",
    type=click.Choice(["access", "portability"]),
    default="access",
    show_default=True,
    help="access (Art. 15): all data; portability (Art. 20): provided and observed data",
)


@click.group()
def main() -> None:
    """Find everything held about a person and deliver it as a verified archive."""


@main.command()
@click.option("--email", help="the subject's email address")
@click.option("--email-sha256", help="SHA-256 (hex) of the subject's lower-cased email")
@click.option("--customer-id", help="the subject's customer number")
@click.option(
    "--identity-file",
    type=click.File("r", encoding="utf-8"),
    help="TYPE=VALUE lines (email, email_sha256, controller_customer_id); '-' reads stdin. "
    "Keeps identities out of the command line and shell history.",
)
@request_type_option
@click.option(
    "--format",
    "formats",
    default=",".join(FORMATS),
    show_default=True,
    help="comma-separated: json, csv, parquet",
)
@click.option(
    "--out",
    default=str(DEFAULT_OUT),
    show_default=True,
    help="a folder, or s3://bucket/prefix?endpoint_url=...&sse=... (S3 delivery)",
)
@click.option(
    "--datamap", type=click.Path(path_type=Path), default=DEFAULT_DATAMAP, show_default=True
)
@click.option(
    "--env-file",
    type=click.Path(exists=True, path_type=Path),
    help="NAME=value lines for the data map's variables",
)
@click.option(
    "--world",
    type=click.Path(exists=True, path_type=Path),
    help="a demo world folder: use its settings and run its payment provider",
)
@click.option("--request-id", help="opaque id (default: a new UUID)")
@click.option("--as-of", help="RFC 3339 time the export is labelled with (default: now)")
@click.option(
    "--staging", type=click.Path(path_type=Path), default=DEFAULT_STAGING, show_default=True
)
@click.option(
    "--max-part-size",
    type=int,
    help="bytes: a larger archive comes in parts <id>-001.zip ... (default 2000000000)",
)
@click.option(
    "--encrypt-to",
    multiple=True,
    metavar="PUBLIC_KEY",
    help="an age (age1...) or SSH public key; the archive is delivered encrypted to it "
    "(<id>.zip.age; repeat for more recipients)",
)
def export(
    email: str | None,
    email_sha256: str | None,
    customer_id: str | None,
    identity_file: click.utils.LazyFile | None,
    request_type: str,
    formats: str,
    out: str,
    datamap: Path,
    env_file: Path | None,
    world: Path | None,
    request_id: str | None,
    as_of: str | None,
    staging: Path,
    max_part_size: int | None,
    encrypt_to: tuple[str, ...],
) -> None:
    """Export one person's data by email, hashed email or customer id."""
    idents = [
        Identity(t, v)
        for t, v in (
            ("email", email),
            ("email_sha256", email_sha256),
            ("controller_customer_id", customer_id),
        )
        if v
    ]
    try:
        if identity_file is not None:
            idents += parse_identities(identity_file.read())
        when = (
            datetime.fromisoformat(as_of.replace("Z", "+00:00"))
            if as_of
            else datetime.now(UTC).replace(microsecond=0)
        )
        request = ExportRequest(
            request_id or new_request_id(),
            request_type,  # type: ignore[arg-type]
            tuple(idents),
            tuple(f.strip() for f in formats.split(",")),
            when,
            encrypt_to=encrypt_to,
            **({"max_part_bytes": max_part_size} if max_part_size is not None else {}),
        )
    except (RequestError, ValueError) as err:
        fail(f"bad request: {err}")
    click.echo(f"export {request.request_id} ({request.request_type})", err=True)
    with world_services(world) as env:
        base = {**env, **read_env(env_file)} if env_file else env
        print_result(export_one(request, datamap, out, staging, base))


def _world(out: Path, seed: int, size: str, sql_url: str | None = None) -> dict:
    """Build a demo world into ``out`` unless the same seed and size are already there."""
    from demo_world.build import build_world

    meta = out / "world.json"
    if meta.exists() and sql_url is None:
        info = json.loads(meta.read_text())
        if info.get("seed") == seed and info.get("size") == size:
            return info
    click.echo(f"building the {size} demo world (seed {seed}) in {out}", err=True)
    build_world(out, seed=seed, size=size, sql_url=sql_url, progress=progress_printer())
    return json.loads(meta.read_text())


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@request_type_option
def demo(out: Path, seed: int, request_type: str) -> None:
    """Build the demo world and export one person end to end."""
    from demo_world.session import running_world

    info = _world(out / "world", seed, "demo")
    email = info["edge_cases"]["multi_account"]["emails"][0]
    request = ExportRequest(
        new_request_id(),
        request_type,  # type: ignore[arg-type]
        (Identity("email", email),),
    )
    click.echo(f"export {request.request_id} ({request_type}) of a demo person", err=True)
    with running_world(out / "world") as env:
        result = export_one(
            request, DEFAULT_DATAMAP, out / "exports", out / "staging", {**os.environ, **env}
        )
    print_result(result)


@main.group()
def world() -> None:
    """The demo world: Infuze Cloud's source systems, generated."""


@world.command("build")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("var/demo/world"), show_default=True
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--size", type=click.Choice(["demo", "large"]), default="demo", show_default=True)
@click.option("--sql-url", help="load the CRM into this database instead of SQLite")
def world_build(out: Path, seed: int, size: str, sql_url: str | None) -> None:
    """Build (or rebuild) a demo world."""
    info = _world(out, seed, size, sql_url)
    click.echo(f"world in {out}: {json.dumps(info.get('counts', {}))}")


@main.group()
def datamap() -> None:
    """Inspect the data map."""


@datamap.command("check")
@click.argument("path", type=click.Path(path_type=Path), default=DEFAULT_DATAMAP)
def datamap_check(path: Path) -> None:
    """Check a data map without touching any source."""
    try:
        dm = load_datamap(path)
    except DataMapError as err:
        fail(str(err))
    n = len(dm.entities())
    click.echo(
        f"{path}: valid (version {dm.version}, {len(dm.systems)} systems, {n} entities, "
        f"datasets: {', '.join(dm.datasets())})"
    )


def _register() -> None:
    from engine.bulk.cli import bulk

    main.add_command(bulk)


_register()

if __name__ == "__main__":
    main()
