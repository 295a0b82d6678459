"""Failures that Dagster may store: they name the step and the source, never a value.

Dagster keeps every exception message and traceback in its event log. The engine's own
errors (``ExportFailed``, ``SourceError``, ``RequestError``) are worded without personal
data; any other exception might quote a value (a driver or Arrow message), so only its
type is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from engine.connectors.base import SourceError
from engine.export import ExportFailed
from engine.request import RequestError
from request_store import InvalidTransition, RequestNotFound

_SAFE = (ExportFailed, SourceError, RequestError, InvalidTransition, RequestNotFound)


@contextmanager
def safe_failures(step: str) -> Iterator[None]:
    """Re-raise what fails inside as a ``dagster.Failure`` whose text holds no data.

    A source that failed transiently may be retried (the asset's RetryPolicy); anything
    else fails at once.
    """
    try:
        yield
    except dg.Failure:
        raise
    except _SAFE as err:
        transient = bool(getattr(err, "transient", False))
        raise dg.Failure(f"{step}: {err}", allow_retries=transient) from None
    except Exception as err:
        raise dg.Failure(
            f"{step}: failed with {type(err).__name__} (details withheld: they may hold "
            "personal data; re-run with the engine's CLI to investigate)",
            allow_retries=False,
        ) from None
