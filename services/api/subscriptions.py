"""Webhook subscriptions: create, list, read, delete, and the delivery log. Every route
needs ``X-API-Key`` (``services.api.security``), checked before the body is read.

Targets are checked against SSRF when a subscription is made (``monitor.adapters.
webhooks.TargetPolicy``: a malformed URL, or one whose host is or resolves to a loopback,
private, link-local, CGNAT, multicast, IPv4-mapped or unspecified address, is a 422) and
again at every send. The API never shows a target's userinfo or query (where credentials
and tokens live), nor a receiver's answer: the delivery log holds status codes only.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from monitor.adapters.webhooks import TargetPolicy, UnsafeWebhookTargetError, display_url
from monitor.domain.records import Subscription
from monitor.domain.vocabulary import DEFAULT_FEED_STATUSES, AlertStatus, iso_utc
from monitor.errors import RequestError
from services.api.context import ApiContext, base_url, context
from services.api.params import Page, known_params_only, paging
from services.api.security import KeyFirstRoute, require_key

router = APIRouter(tags=["subscriptions"], route_class=KeyFirstRoute)
Context = Annotated[ApiContext, Depends(context)]
KEY = [Depends(require_key)]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=2000,
                     description="http(s) URL to POST to; it must reach a public address "
                                 "(or one listed in alerting.webhook_allow_private)")
    cities: list[str] = Field(default_factory=list, description="empty = every city")
    statuses: list[AlertStatus] = Field(
        default_factory=list,
        description="alert statuses to send; empty = the default feed: "
                    + " + ".join(DEFAULT_FEED_STATUSES)
                    + " (list first, retracted or withdrawn explicitly to get them)")
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="HMAC key; generated when not given")


def subscription_out(sub: Subscription, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.id, "name": sub.name, "url": display_url(sub.url),
        "cities": list(sub.cities), "statuses": list(sub.statuses),
        "min_confidence": sub.min_confidence, "active": sub.active,
        "created": iso_utc(sub.created_at) if sub.created_at else None,
    }
    if secret:
        out["secret"] = sub.secret
    return out


def checked_target(ctx: ApiContext, url: str) -> str:
    """The normalised URL, or a 422 saying why the dispatcher would refuse it."""
    try:
        parsed, _ = TargetPolicy(ctx.settings.alerting.webhook_allow_private).check(url)
    except UnsafeWebhookTargetError as exc:
        raise HTTPException(422, f"url: {exc}") from None
    return str(parsed)


@router.post("/subscriptions", status_code=201, summary="Subscribe a webhook",
             dependencies=KEY,
             responses={422: {"description": "the URL is malformed or not a public target"}})
async def create_subscription(body: SubscriptionIn, request: Request,
                              ctx: Context) -> JSONResponse:
    url = await run_in_threadpool(checked_target, ctx, body.url)  # resolves the host
    known = await run_in_threadpool(ctx.catalogue.cities)
    unknown = [c for c in body.cities if c not in known]
    if unknown:
        raise RequestError("cities", f"unknown city '{unknown[0]}'",
                           "see /collections/cities/items")
    sub = await run_in_threadpool(ctx.store.add_subscription, Subscription(
        id=uuid.uuid4().hex, name=body.name, url=url,
        secret=body.secret or secrets.token_hex(32), cities=body.cities,
        statuses=list(body.statuses or DEFAULT_FEED_STATUSES),
        min_confidence=body.min_confidence))
    return JSONResponse(subscription_out(sub, secret=True), status_code=201,
                        headers={"Location": f"{base_url(request)}/subscriptions/{sub.id}"})


@router.get("/subscriptions", summary="Active webhook subscriptions (paged; URLs without "
            "credentials or query; no secrets)",
            dependencies=[*KEY, Depends(known_params_only)])
def list_subscriptions(request: Request, ctx: Context,
                       page: Annotated[Page, Depends(paging)]) -> dict[str, Any]:
    rows = ctx.store.subscriptions(limit=page.limit + 1, offset=page.offset)
    shown = rows[:page.limit]
    b = base_url(request)
    links = [{"href": f"{b}/subscriptions?limit={page.limit}&offset={page.offset}",
              "rel": "self"}]
    if len(rows) > page.limit:
        links.append({"href": f"{b}/subscriptions?limit={page.limit}"
                              f"&offset={page.offset + page.limit}", "rel": "next"})
    if page.offset > 0:
        links.append({"href": f"{b}/subscriptions?limit={page.limit}"
                              f"&offset={max(page.offset - page.limit, 0)}", "rel": "prev"})
    return {"subscriptions": [subscription_out(s) for s in shown],
            "numberReturned": len(shown), "links": links}


@router.get("/subscriptions/{sub_id}", summary="One subscription (without its secret)",
            dependencies=[*KEY, Depends(known_params_only)])
def get_subscription(sub_id: str, ctx: Context) -> dict[str, Any]:
    sub = ctx.store.subscription(sub_id)
    if sub is None or not sub.active:
        raise HTTPException(404, f"no subscription '{sub_id}'")
    return subscription_out(sub)


@router.delete("/subscriptions/{sub_id}", status_code=204, summary="Unsubscribe",
               dependencies=KEY, response_class=Response)
def delete_subscription(sub_id: str, ctx: Context) -> Response:
    if not ctx.store.deactivate_subscription(sub_id):
        raise HTTPException(404, f"no subscription '{sub_id}'")
    return Response(status_code=204)


def shown_error(error: str | None) -> str | None:
    """What the log shows of a failed attempt: never a receiver's answer (rows written
    before this rule held ``HTTP 500: <body>``; only the status part is shown)."""
    if error and error.startswith("HTTP "):
        return error.split(":", 1)[0]
    return error


@router.get("/subscriptions/{sub_id}/deliveries", summary="The delivery log (status codes "
            "only, never a receiver's answer)",
            dependencies=[*KEY, Depends(known_params_only)])
def deliveries(sub_id: str, ctx: Context, page: Annotated[Page, Depends(paging)]) -> dict[str, Any]:
    if ctx.store.subscription(sub_id) is None:
        raise HTTPException(404, f"no subscription '{sub_id}'")
    rows = ctx.store.deliveries(subscription_id=sub_id, limit=page.limit, offset=page.offset)
    return {"deliveries": [{
        "id": r.id, "event_id": r.event_id, "alert_id": r.alert_id, "status": r.status,
        "attempts": r.attempts, "last_status_code": r.last_status_code,
        "last_error": shown_error(r.last_error),
        "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
        "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
    } for r in rows]}
