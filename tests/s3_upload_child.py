"""Run one S3Delivery upload in a child process (for tests/test_delivery_s3.py).

    python tests/s3_upload_child.py ENDPOINT BUCKET ARCHIVE NAME PART_SIZE [--hang-after-parts N]

Prints one JSON line at the end: location, bytes, sha256, the wall time of ``deliver`` and
the process's peak resident memory (``VmHWM`` from /proc/self/status, in KiB). With
``--hang-after-parts N`` it stops for good after the N-th uploaded part (printing
``PARTS N``), so that the test can SIGKILL it half way through a multipart upload.
Credentials and region come from the environment (the tests' fake AWS variables).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporters.s3_delivery import S3Delivery


class HangAfterParts:
    """A client that blocks forever once ``n`` parts went up (stands in for a stuck worker)."""

    def __init__(self, client: Any, n: int) -> None:
        self._client, self._n, self._done = client, n, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        result = self._client.upload_part(**kwargs)
        self._done += 1
        if self._done >= self._n:
            print(f"PARTS {self._done}", flush=True)
            time.sleep(3600)
        return result


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    args = argparse.ArgumentParser()
    for name in ("endpoint", "bucket", "archive", "name"):
        args.add_argument(name)
    args.add_argument("part_size", type=int)
    args.add_argument("--hang-after-parts", type=int, default=0)
    opts = args.parse_args()
    delivery = S3Delivery(
        opts.bucket, endpoint_url=opts.endpoint, region="us-east-1", part_size=opts.part_size
    )
    if opts.hang_after_parts:
        delivery.client = HangAfterParts(delivery.client, opts.hang_after_parts)
    start = time.monotonic()
    done = delivery.deliver(Path(opts.archive), opts.name)
    elapsed = time.monotonic() - start
    print(
        json.dumps(
            {
                "location": done.location,
                "bytes": done.bytes,
                "sha256": done.sha256,
                "seconds": round(elapsed, 2),
                "vm_hwm_kib": vm_hwm_kib(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
