"""Schemathesis against the served OpenAPI document: with a valid portal token, no
generated request (valid or not) gets a server error, and every response conforms
to the document (status code, content type, headers, body schema).

All of schemathesis's checks run, including ``positive_data_acceptance`` (a body the
schema allows is accepted) and ``negative_data_rejection`` (one it forbids is
refused): the published request schema says exactly what the validation accepts.
Example counts are kept small so that the module runs in about 20 s.

Schemathesis loads the document when this module is imported, so the application
(on a temporary store, removed after the module) is made then too.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from api.keys import load_or_create
from api.models import PUBLIC_KEY_FORMAT
from tests.api_fixtures import make_api

MAX_EXAMPLES = 50

_TMP = Path(tempfile.mkdtemp(prefix="api-schemathesis-"))
load_or_create(_TMP / "keys", "testserver")
SERVED = make_api(_TMP / "app", _TMP / "keys")

# encrypt_to's keys have a checksum no pattern can express: the document names a format,
# and valid examples of it are real keys (an invalid one is refused, as it must be)
_KEYS = [str(pyrage.x25519.Identity.generate().to_public()) for _ in range(12)]
schemathesis.openapi.format(PUBLIC_KEY_FORMAT, st.sampled_from(_KEYS))

schema = schemathesis.openapi.from_asgi("/openapi.json", SERVED.app)
schema.config.generation.update(max_examples=MAX_EXAMPLES)
schema.config.update(headers=SERVED.auth())
# a generated invalid body may pass the API's 64 KiB limit: 413 refuses it too
negative = schema.config.checks.negative_data_rejection
negative.expected_statuses = [*negative.expected_statuses, "413"]


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    SERVED.client.close()
    SERVED.services.close()
    shutil.rmtree(_TMP, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()
