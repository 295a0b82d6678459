"""The OpenDSR 2.0 processor API: rights portals submit, follow, cancel and download
access and portability exports (docs/api.md).

``create_app(settings)`` builds the FastAPI application on the request store shared
with Dagster; ``python -m api`` serves it (uvicorn, 127.0.0.1:8000) and manages portals
(``python -m api add-portal ID``).
"""

from api.app import Services, create_app
from api.settings import API_PREFIX, API_VERSION, Settings

__all__ = ["API_PREFIX", "API_VERSION", "Services", "Settings", "create_app"]
