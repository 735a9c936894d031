"""The HTTP API: OGC API - Features (alerts, cities), a live alert stream (SSE), city
statistics (built-up area, SDG 11.3.1), time-of-change maps, webhook subscriptions and
the dashboard, as one router per concern:

- ``services.api.features``: ``/``, ``/conformance``, ``/collections``,
  ``/collections/{alerts|cities}[/items[/{id}]]`` (GeoJSON, CRS84; bbox, datetime,
  limit, offset paging; standard clients such as QGIS and GDAL's OAPIF driver read them);
- ``services.api.stream``: ``/alerts/stream`` (SSE, filters ``city``, ``status``);
- ``services.api.stats``: ``/cities/{id}/stats`` and ``/cities/{id}/maps/change-date.*``;
- ``services.api.subscriptions``: ``/subscriptions`` (writes need ``X-API-Key``);
- ``services.api.dashboard``: ``/dashboard/`` and its map layers.

Query parameters are dependencies (``services.api.params``), so the OpenAPI document
(``/openapi.json``) lists them. Bad parameters get 400 with a message, unknown things
404, bodies above ``api.max_request_bytes`` 413; errors use the OGC exception shape
{code, description} (``services.api.errors``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI

from monitor.settings import Settings, load_settings
from services.api.asyncapi import router as asyncapi_router
from services.api.context import ApiContext, ApiStore, Catalogue, StateSource
from services.api.coverage import router as coverage_router
from services.api.dashboard import mount_dashboard
from services.api.errors import BodyLimit, install_error_handlers
from services.api.features import router as features_router
from services.api.openapi import serve_openapi_30
from services.api.stac import LayerSource, ModelCardSource
from services.api.stac import router as stac_router
from services.api.stats import router as stats_router
from services.api.stream import router as stream_router
from services.api.subscriptions import router as subscriptions_router


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put ``router``'s routes on the app itself. The routers set no prefix or shared
    dependency, so this is what ``include_router`` does for them, except that every route
    stays visible in ``app.routes`` (recent FastAPI keeps an included router opaque there,
    and the security tests enumerate the write routes from it)."""
    app.router.routes.extend(router.routes)


def create_app(settings: Settings, db: ApiStore, state_store: StateSource | None = None, *,
               layers: LayerSource | None = None,
               model_cards: ModelCardSource | None = None) -> FastAPI:
    """The API over ``db`` (alerts, subscriptions, deliveries, cities) and, for maps,
    ``state_store`` (anything with ``load(city_id)`` returning the city's change state);
    the STAC API (``/stac``) serves ``layers`` (default: the settings' layer store) and
    ``model_cards`` (default: the shipped models' cards)."""
    api = settings.api
    app = FastAPI(title=api.title, version="1.0",
                  description="Urban change alerts from Sentinel-1/2, as OGC API - Features, "
                  "a live stream, statistics and maps.")
    app.add_middleware(BodyLimit, max_bytes=api.max_request_bytes,
                       timeout_s=api.timeout_request_s)
    if layers is None:
        from monitor.pipeline.runtime import layer_store

        layers = layer_store(settings)
    if model_cards is None:
        from monitor.adapters.model_cards import ModelCards

        model_cards = ModelCards()
    ctx = ApiContext(settings=settings, store=db, catalogue=Catalogue(settings, db),
                     states=state_store, layers=layers, model_cards=model_cards)
    app.state.context = ctx
    install_error_handlers(app)
    for router in (features_router, stream_router, stats_router, subscriptions_router,
                   stac_router, asyncapi_router, coverage_router):
        add_routes(app, router)

    @app.get("/health", summary="Liveness and database check", tags=["operations"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "schema_version": db.schema_version()}

    mount_dashboard(app, ctx.load_state)
    serve_openapi_30(app)  # OpenAPI 3.0.3, as /conformance declares (oas30)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.api [--config FILE] [--host H] [--port P]``: uvicorn, on a
    socket bound first (a taken port exits 2 at once, with a message)."""
    import sys

    from monitor.cli import configure_logging
    from monitor.errors import UrbanMonitorError
    from monitor.pipeline.runtime import open_database, state_store
    from monitor.redact import redact_text
    from services.api.server import bind_socket, make_server

    parser = argparse.ArgumentParser(prog="python -m services.api",
                                     description="Serve the Urban Monitor HTTP API.")
    parser.add_argument("--config", help="settings YAML (default config/default.yaml)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level)
        sock = bind_socket(args.host or settings.api.host, args.port or settings.api.port)
        app = create_app(settings, open_database(settings), state_store(settings))
    except UrbanMonitorError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    server = make_server(app, settings)
    host, port = sock.getsockname()[:2]
    logging.getLogger(__name__).info("Uvicorn running on http://%s:%d", host, port)
    server.run(sockets=[sock])
    return 0 if server.started else 1
