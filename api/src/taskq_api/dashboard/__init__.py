"""The dashboard: server-rendered pages for browsers, over the API's service layer
(docs/dashboard.md)."""

from taskq_api.dashboard.app import PATH, create_dashboard

__all__ = ["PATH", "create_dashboard"]
