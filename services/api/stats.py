"""City statistics and time-of-change maps: ``/cities/{id}/stats`` (alert counts,
built-up area over time, SDG 11.3.1; method and limits in ``monitor.domain.sdg``) and
``/cities/{id}/maps/change-date.tif|.png`` (from the city's change state)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from monitor.domain.grid import CityGrid
from monitor.pipeline.city_stats import city_stats
from services.api.context import ApiContext, context
from services.api.maps import change_date_png, change_day_map, encode_geotiff
from services.api.params import known_params_only, map_statuses, output_format

router = APIRouter(tags=["statistics and maps"])
Context = Annotated[ApiContext, Depends(context)]
Statuses = Annotated[list[str], Depends(map_statuses)]


@router.get("/cities/{city_id}/stats", summary="Built-up area over time and SDG 11.3.1",
            dependencies=[Depends(known_params_only), Depends(output_format)])
def stats(
    city_id: str,
    ctx: Context,
    t1: Annotated[str | None, Query(description="baseline year or date (YYYY or YYYY-MM-DD); "
                                    "default: the first year of cities[].built_up_km2")] = None,
    t2: Annotated[str | None, Query(description="end year or date; default: the latest "
                                    "confirmed change")] = None,
) -> dict[str, Any]:
    city = ctx.catalogue.city(city_id)
    out = city_stats(city, ctx.store.alerts(city_id=city_id, limit=None), t1, t2)
    # how fresh the view is (issue 20): the share of the city seen clearly in the last
    # 30/90 days, from the state's per-pixel last clear S2 observation
    from services.api.coverage import _freshness

    out["freshness"] = _freshness(ctx, city_id, datetime.now(UTC))
    return out


@router.get("/cities/{city_id}/maps/change-date.tif", summary="Time-of-change GeoTIFF",
            dependencies=[Depends(known_params_only)], response_class=Response,
            responses={200: {"content": {"image/tiff; application=geotiff": {}},
                             "description": "uint16 days since 2014-01-01, 0 = no change"}})
async def change_map_tif(city_id: str, ctx: Context, statuses: Statuses) -> Response:
    state = await run_in_threadpool(ctx.load_state, city_id)
    days = change_day_map(state, statuses)
    grid: CityGrid = state.grid
    data = await run_in_threadpool(encode_geotiff, days, grid,
                                   {"city_id": city_id, "statuses": ",".join(statuses)})
    return Response(data, media_type="image/tiff; application=geotiff",
                    headers={"Content-Disposition":
                             f'inline; filename="{city_id}-change-date.tif"'})


@router.get("/cities/{city_id}/maps/change-date.png", summary="Time-of-change PNG",
            dependencies=[Depends(known_params_only)], response_class=Response,
            responses={200: {"content": {"image/png": {}},
                             "description": "oldest change dark purple, newest yellow; "
                                            "X-Change-Date-Range: first/last date"}})
async def change_map_png(city_id: str, ctx: Context, statuses: Statuses) -> Response:
    state = await run_in_threadpool(ctx.load_state, city_id)
    data, span = await run_in_threadpool(change_date_png, change_day_map(state, statuses))
    headers = {"Content-Disposition": f'inline; filename="{city_id}-change-date.png"'}
    if span:
        headers["X-Change-Date-Range"] = f"{span[0]}/{span[1]}"
    return Response(data, media_type="image/png", headers=headers)
