"""``/alerts/stream``: Server-Sent Events, one ``alert`` event (the AlertEvent CloudEvent
JSON, SSE id = event id) per new alert revision; filters ``city``, ``status``, ``since``.

Fed by polling the alerts' ``updated_at`` (so it works with any number of API and
alerting processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from monitor.domain.vocabulary import as_utc
from monitor.errors import RequestError
from monitor.pipeline.alerting import record_to_event
from monitor.ports import AlertRepository
from services.api.context import ApiContext, context
from services.api.params import alert_statuses

router = APIRouter(tags=["live alerts"])


@router.get("/alerts/stream", summary="Live alert revisions (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "an 'alert' event per new alert revision"}})
async def stream(
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    statuses: Annotated[list[str], Depends(alert_statuses)],
    city: Annotated[str | None, Query(description="alerts of this city id only")] = None,
    since: Annotated[str | None, Query(description="RFC 3339 date-time: also send the "
                                       "revisions since then (default: from now on)")] = None,
) -> StreamingResponse:
    if since:
        try:
            cursor = as_utc(datetime.fromisoformat(since.replace("Z", "+00:00")))
        except ValueError:
            raise RequestError("since", f"'{since}' is not an RFC 3339 date-time",
                               "e.g. 2024-03-01T00:00:00Z") from None
    else:
        cursor = datetime.now(UTC)
    return StreamingResponse(
        alert_stream(request, ctx.store, city, statuses, cursor, ctx.api.sse_poll_s,
                     ctx.api.sse_heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def alert_stream(request: Request, alerts: AlertRepository, city: str | None,
                       statuses: Sequence[str], cursor: datetime, poll_s: float,
                       heartbeat_s: float) -> AsyncIterator[bytes]:
    """SSE frames for alert revisions updated at or after ``cursor``.

    The query looks a little back (``overlap``) so a transaction that committed late with an
    earlier timestamp is not missed; (id, revision) pairs already sent are skipped."""
    overlap = timedelta(seconds=max(2.0, 2 * poll_s))
    floor = cursor  # nothing older than the connection (or ``since``) is sent
    sent: dict[tuple[str, int], datetime] = {}
    yield b": urban-monitor alert stream\n\n"  # opens the stream for the client at once
    last_beat = time.monotonic()
    while not await request.is_disconnected():
        rows = await run_in_threadpool(alerts.alerts, city_id=city,
                                       statuses=list(statuses) or None,
                                       updated_since=cursor - overlap, limit=500,
                                       order_by_updated=True)
        for row in rows:
            key = (row.id, row.revision)
            updated = row.updated_at
            if updated is None or key in sent or updated < floor:
                continue
            sent[key] = updated
            event = record_to_event(row, time=updated)
            yield (f"id: {event.id}\nevent: alert\ndata: {event.to_json().decode()}\n\n"
                   ).encode()
            cursor = max(cursor, updated)
        horizon = cursor - 2 * overlap
        for key in [k for k, t in sent.items() if t < horizon]:
            del sent[key]
        if time.monotonic() - last_beat >= heartbeat_s:
            yield b": heartbeat\n\n"  # keeps proxies from closing an idle stream
            last_beat = time.monotonic()
        await asyncio.sleep(poll_s)
