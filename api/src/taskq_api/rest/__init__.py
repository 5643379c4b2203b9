"""The REST API over HTTP (FastAPI): routes, request and response models, problem+json."""

from taskq_api.rest.app import create_app
from taskq_api.rest.observe import ApiMetrics

__all__ = ["ApiMetrics", "create_app"]
