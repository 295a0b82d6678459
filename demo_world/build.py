"""Build a whole demo world into a folder: CRM, event lake, files, payments, metadata.

``build_world`` writes, under ``root``: ``crm.sqlite`` (unless ``sql_url`` names another
database), ``events/``, ``objects/`` (unless an S3 client is given), ``payments.sqlite``,
``people.parquet`` (the answer key for tests: every person row with its ids),
``world.json`` and ``world.env``. Nothing is printed; ``progress(stage, done, total)`` is
called as the build advances.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import lake, objects, stages
from .edges import edge_cases
from .envfile import read_env, write_env
from .parallel import run_parallel
from .sizes import PARALLEL_FROM, REFERENCE_DATE, WorldSize, resolve_size
from .skeleton import make_skeleton
from .sql import normalize_url
from .vec import hex_strings, stream

Progress = stages.Progress


@dataclass
class World:
    """A built world: where everything is, the settings for the data map, the edge cases."""

    root: Path
    seed: int
    size: WorldSize
    crm_url: str
    events_path: Path
    objects_path: str
    payments_db: Path
    env: dict[str, str]
    edge_cases: dict[str, dict[str, Any]]
    counts: dict[str, int]

    def people(self) -> pa.Table:
        """Every CRM person row with ``person_id, customer_number, full_name, email,
        account_ids, payment_customer_ids, duplicate_of``."""
        return pq.read_table(self.root / "people.parquet")

    def start_payments(self, **kwargs: Any) -> Any:
        """Start the payment provider stand-in for this world (see ``payments_api``)."""
        from .payments_api import start_payments_server

        return start_payments_server(self.payments_db, self.env["PAYMENTS_API_TOKEN"], **kwargs)

    @classmethod
    def load(cls, root: Path) -> World:
        """A world built earlier, from its ``world.json`` and ``world.env``."""
        root = Path(root)
        info = json.loads((root / "world.json").read_text(encoding="utf-8"))
        env = read_env(root / "world.env")
        return cls(
            root=root,
            seed=info["seed"],
            size=resolve_size(info["size_detail"]),
            crm_url=env["CRM_DATABASE_URL"],
            events_path=root / "events",
            objects_path=env["OBJECT_STORE_PATH"],
            payments_db=root / "payments.sqlite",
            env=env,
            edge_cases=info["edge_cases"],
            counts=info["counts"],
        )


def build_world(
    root: Path,
    *,
    seed: int = 7,
    size: str | WorldSize | Mapping[str, Any] = "demo",
    sql_url: str | None = None,
    s3_client: Any = None,
    bucket: str | None = None,
    progress: Progress | None = None,
    parallel: bool | None = None,
) -> World:
    """Generate the world for ``seed`` and ``size`` into ``root`` (replacing an old one).

    ``parallel`` (default: for 50,000 people or more) writes the event lake and the
    payment store in two child processes while this one loads the CRM; the output is the
    same either way.
    """
    resolved = resolve_size(size)
    if s3_client is not None and not bucket:
        raise ValueError("an S3 client needs a bucket name")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("events", "objects"):
        shutil.rmtree(root / folder, ignore_errors=True)
    crm_path = root / "crm.sqlite"
    if sql_url is None:
        crm_path.unlink(missing_ok=True)
        url = f"sqlite:///{crm_path}"
    else:
        url = normalize_url(sql_url).render_as_string(hide_password=False)

    if parallel is None:
        parallel = resolved.people >= PARALLEL_FROM
    sk = make_skeleton(seed, resolved)
    if progress:
        progress("skeleton", 1, 1)
    if parallel:  # the lake and the payment store in child processes, the CRM here
        counts = run_parallel(
            seed,
            resolved,
            root,
            lambda report: stages.write_crm(sk, root, url, report),
            progress,
        )
    else:
        counts = stages.write_crm(sk, root, url, progress)
        counts.update(stages.write_payments(sk, root, progress))
        counts["events"] = lake.write_lake(sk, root, progress)
    specs = objects.plan_objects(sk, resolved.objects)
    folder = root / "objects"
    folder.mkdir()
    counts["object_bytes"] = objects.write_objects(
        sk,
        specs,
        folder=None if s3_client else folder,
        s3_client=s3_client,
        bucket=bucket,
        progress=progress,
    )
    counts["objects"] = len(specs)
    counts["persons"] = resolved.people
    counts = dict(sorted(counts.items()))

    token = "sk_test_" + str(hex_strings(stream(seed, 10).integers(0, 1 << 48, 2), 12)[0])
    env = {
        "CRM_DATABASE_URL": url,
        "EVENT_LAKE_PATH": str(root),
        "OBJECT_STORE_PATH": f"s3://{bucket}" if s3_client else str(folder),
        "PAYMENTS_API_TOKEN": token,
    }
    cases = edge_cases(sk, specs)
    info = {
        "generator": "demo_world",
        "seed": seed,
        "size": resolved.name,
        "size_detail": resolved.as_dict(),
        "reference_date": REFERENCE_DATE.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "counts": counts,
        "edge_cases": cases,
    }
    text = json.dumps(info, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    (root / "world.json").write_text(text, encoding="utf-8")
    write_env(
        root / "world.env",
        env,
        f"Infuze Cloud demo world (seed {seed}, size {resolved.name})",
        "PAYMENTS_API_URL is set by whoever starts demo_world.payments_api",
    )
    if progress:
        progress("done", 1, 1)
    return World(
        root=root,
        seed=seed,
        size=resolved,
        crm_url=url,
        events_path=root / "events",
        objects_path=env["OBJECT_STORE_PATH"],
        payments_db=root / "payments.sqlite",
        env=env,
        edge_cases=cases,
        counts=counts,
    )
