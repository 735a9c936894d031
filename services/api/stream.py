"""``/alerts/stream``: Server-Sent Events, one ``alert`` event (the AlertEvent CloudEvent
JSON, SSE id = event id) per new alert revision; filters ``city``, ``status``, ``since``.

Fed by polling the alerts' ``updated_at`` (so it works with any number of API and
alerting processes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

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
        except OverflowError:
            raise RequestError("since", f"'{since}' is out of range in UTC",
                               "give a date-time between years 1 and 9999 in UTC") from None
        except ValueError:
            raise RequestError("since", f"'{since}' is not an RFC 3339 date-time",
                               "e.g. 2024-03-01T00:00:00Z") from None
        cursor = max(cursor, EARLIEST)  # nothing is older; keeps the look-back in range
    else:
        cursor = datetime.now(UTC)
    slots = _slots(request, ctx.api.max_sse_clients)
    if not slots.acquire(blocking=False):
        raise HTTPException(503, f"{ctx.api.max_sse_clients} live streams are open (the "
                            "limit, api.max_sse_clients); retry later")
    return StreamingResponse(
        _released(alert_stream(request, ctx.store, city, statuses, cursor, ctx.api.sse_poll_s,
                               ctx.api.sse_heartbeat_s), slots),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _slots(request: Request, limit: int) -> threading.BoundedSemaphore:
    """The app's live-stream slots (one semaphore per app)."""
    state = request.app.state
    slots = getattr(state, "sse_slots", None)
    if slots is None:
        slots = state.sse_slots = threading.BoundedSemaphore(limit)
    return slots


async def _released(frames: AsyncIterator[bytes],
                    slots: threading.BoundedSemaphore) -> AsyncIterator[bytes]:
    try:
        async for frame in frames:
            yield frame
    finally:
        slots.release()


def _frames(alerts: AlertRepository, city: str | None, statuses: Sequence[str],
            since: datetime, floor: datetime, sent: dict[tuple[str, int], datetime],
            links_base: str | None = None) -> tuple[list[bytes], datetime | None]:
    """Query and serialise one poll's new revisions (in a worker thread: building the
    CloudEvent JSON of hundreds of alerts must not hold the event loop)."""
    rows = alerts.alerts(city_id=city, statuses=list(statuses) or None, updated_since=since,
                         limit=500, order_by_updated=True)
    frames: list[bytes] = []
    newest: datetime | None = None
    for row in rows:
        key = (row.id, row.revision)
        updated = row.updated_at
        if updated is None or key in sent or updated < floor:
            continue
        sent[key] = updated
        event = record_to_event(row, time=updated, links_base=links_base)
        frames.append(f"id: {event.id}\nevent: alert\ndata: {event.to_json().decode()}\n\n"
                      .encode())
        newest = updated if newest is None else max(newest, updated)
    return frames, newest


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
        frames, newest = await run_in_threadpool(_frames, alerts, city, statuses,
                                                 cursor - overlap, floor, sent,
                                                 str(request.base_url).rstrip("/"))
        if frames:
            yield b"".join(frames)
        if newest is not None:
            cursor = max(cursor, newest)
        horizon = cursor - 2 * overlap
        for key in [k for k, t in sent.items() if t < horizon]:
            del sent[key]
        if time.monotonic() - last_beat >= heartbeat_s:
            yield b": heartbeat\n\n"  # keeps proxies from closing an idle stream
            last_beat = time.monotonic()
        await asyncio.sleep(poll_s)
