"""The web dashboard: server-rendered pages, one ES module, and the /v1 endpoints it reads (issue 13).

functions/api.py wires it in three places: `api_routes` beside the other /v1 routes (documented in
functions/openapi.py), `wants_html` + `overview` at `/` (a browser gets the dashboard, an API client the
links), and `install` for the pages, the static files and what the endpoints find on app.state.
"""

from __future__ import annotations

from starlette.applications import Starlette

from hexq.functions.bootstrap import Container
from hexq.functions.ui.endpoints import api_routes, state
from hexq.functions.ui.pages import overview, page_routes, wants_html

__all__ = ["api_routes", "install", "overview", "wants_html"]


def install(app: Starlette, container: Container) -> None:
    for name, value in state(container.tasks, container.backend, container.registry, now=container.clock.now,
                             monotonic=container.clock.monotonic, metrics=container.metrics,
                             tenant_cap=container.settings.max_queued_per_tenant,
                             lease_seconds=container.settings.lease_seconds,
                             experiments_dir=container.settings.experiments_dir).items():
        setattr(app.state, name, value)
    app.router.routes.extend(page_routes())
