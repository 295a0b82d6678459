"""``python -m api``: serve the OpenDSR API, or manage the portals allowed to call it.

    python -m api [serve] [--host 127.0.0.1] [--port 8000]
    python -m api add-portal PORTAL_ID [--rotate]   # prints the portal's token, once
    python -m api remove-portal PORTAL_ID
    python -m api list-portals

Settings come from the environment (``PORTABILITY_*``, see api/settings.py and
docs/api.md); portals are kept in the request store's database.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from api.auth import PortalError, Portals
from api.settings import Settings, SettingsError
from api.tables import create as create_tables
from request_store import RequestStore

_LINK = re.compile(r"(/results/)[^/?#\s\"]+")


class RedactResultLinks(logging.Filter):
    """Access log lines name a results link's path: its token is a credential (it
    downloads the archive until it expires), so it is replaced by ``[link]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _LINK.sub(r"\1[link]", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _LINK.sub(r"\1[link]", record.msg)
        return True


def serve(settings: Settings) -> None:
    import uvicorn

    from api.app import create_app

    # the API's own lines (callbacks sent or failed): request ids and states, never values
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info")
    logging.getLogger("uvicorn.access").addFilter(RedactResultLinks())  # after its dictConfig
    print(f"OpenDSR API on {settings.base_url}/opendsr/v2/discovery", file=sys.stderr)
    uvicorn.Server(config).run()


def _portals(settings: Settings) -> tuple[RequestStore, Portals]:
    store = RequestStore.open(settings.store_url)
    create_tables(store.engine)
    return store, Portals(store.engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="run the API (the default)")
    for p in (parser, serve_cmd):
        p.add_argument("--host", default=None, help="default PORTABILITY_API_HOST or 127.0.0.1")
        p.add_argument(
            "--port", type=int, default=None, help="default PORTABILITY_API_PORT or 8000"
        )
    add = sub.add_parser("add-portal", help="register a portal and print its token once")
    add.add_argument("portal_id")
    add.add_argument("--rotate", action="store_true", help="replace an existing portal's token")
    remove = sub.add_parser("remove-portal", help="revoke a portal's token")
    remove.add_argument("portal_id")
    sub.add_parser("list-portals", help="the registered portal ids")
    args = parser.parse_args(argv)

    try:
        overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.command in (None, "serve"):
        serve(settings)
        return 0

    store, portals = _portals(settings)
    try:
        if args.command == "add-portal":
            token = portals.add(args.portal_id, rotate=args.rotate)
            print(token)  # shown once: only its hash is kept
            print(f"portal {args.portal_id}: keep this token; it is not stored", file=sys.stderr)
        elif args.command == "remove-portal":
            if not portals.remove(args.portal_id):
                print(f"error: no portal {args.portal_id}", file=sys.stderr)
                return 1
        else:
            for portal_id in portals.list():
                print(portal_id)
    except PortalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
