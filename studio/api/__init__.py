"""The REST API: JSON over HTTP, bearer tokens or the session cookie, documented in
OpenAPI 3.1 at `/api/openapi.json`. `api_routes(services)` gives the Tornado rules."""

from __future__ import annotations

from studio.api.routes import api_routes

__all__ = ["api_routes"]
