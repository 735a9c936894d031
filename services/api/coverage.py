"""``/cities/{id}/coverage``: expected vs listed acquisitions of a city, per source (the
same report as ``urban-monitor coverage --json``; ``monitor.domain.coverage``), and how
fresh the city's view is (share of pixels seen clearly in the last 30/90 days)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from monitor.domain.vocabulary import as_utc
from monitor.errors import RequestError, UrbanMonitorError
from monitor.pipeline.coverage import LISTINGS, CoverageService
from services.api.context import ApiContext, context
from services.api.params import known_params_only

router = APIRouter(tags=["coverage"])
Context = Annotated[ApiContext, Depends(context)]


def _when(name: str, text: str | None, *, end_of_day: bool = False) -> datetime | None:
    if text is None:
        return None
    try:
        value = as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise RequestError(name, f"'{text}' is not a date or date-time",
                           "give YYYY-MM-DD or an RFC 3339 date-time") from None
    if end_of_day and len(text.strip()) <= 10:  # a bare end date includes that day
        value += timedelta(days=1) - timedelta(microseconds=1)
    return value


def _registry(ctx: ApiContext) -> Any:
    return ctx.store if hasattr(ctx.store, "scenes") else None


@router.get("/cities/{city_id}/coverage",
            summary="Expected vs listed acquisitions per source: missing, late, unusable",
            dependencies=[Depends(known_params_only)])
async def coverage(
    city_id: str,
    ctx: Context,
    start: Annotated[str | None, Query(description="first day (YYYY-MM-DD or date-time); "
                                       "default: 30 days before end")] = None,
    end: Annotated[str | None, Query(description="last day, inclusive; default: as_of")] = None,
    as_of: Annotated[str | None, Query(description="evaluate as of this time; default: now")
                     ] = None,
    source: Annotated[list[str] | None, Query(description="source name(s); default: every "
                                              "enabled source")] = None,
    listing: Annotated[str, Query(description="where the listed items come from: "
                                  + ", ".join(LISTINGS))] = "stac+registry",
    freshness: Annotated[bool, Query(description="add the per-pixel freshness of the city's "
                                     "change state")] = True,
) -> dict[str, Any]:
    if city_id not in {c.id for c in ctx.settings.cities}:
        ctx.catalogue.city(city_id)  # 404 for a city nobody knows
        raise HTTPException(404, f"city '{city_id}' is not configured here: coverage needs "
                            "its sources (settings)")
    if listing not in LISTINGS:
        raise RequestError("listing", f"'{listing}' is not a listing", f"use one of {LISTINGS}")
    t_start, t_end = _when("start", start), _when("end", end, end_of_day=True)
    t_as_of = _when("as_of", as_of)
    from monitor.pipeline.runtime import stac_catalogs

    service = CoverageService(ctx.settings, registry=_registry(ctx),
                              catalog_for=stac_catalogs(ctx.settings)
                              if listing != "registry" else None)
    try:
        report = await run_in_threadpool(service.city, city_id, start=t_start, end=t_end,
                                         as_of=t_as_of, sources=source, listing=listing)
    except RequestError:
        raise
    except UrbanMonitorError as exc:
        raise RequestError("source" if "source" in str(exc) else "start", str(exc)) from exc
    out = report.to_dict()
    if freshness:
        out["freshness"] = await run_in_threadpool(_freshness, ctx, city_id, report.as_of)
    return out


def _freshness(ctx: ApiContext, city_id: str, as_of: datetime) -> dict[str, Any]:
    from monitor.pipeline.city_stats import clear_view_stats

    try:
        state = ctx.load_state(city_id)
    except HTTPException as exc:
        return {"available": False, "reason": str(exc.detail)}
    return {"available": True, "layer": "last_clear_date",
            **clear_view_stats(state.last_clear_day, as_of.date())}
