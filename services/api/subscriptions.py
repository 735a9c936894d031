"""Webhook subscriptions: create, list, read, delete, and the delivery log. Writes and the
delivery log need ``X-API-Key`` (``services.api.security``)."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from monitor.domain.records import Subscription
from monitor.domain.vocabulary import AlertStatus, iso_utc
from monitor.errors import RequestError
from services.api.context import ApiContext, base_url, context
from services.api.params import Page, known_params_only, paging
from services.api.security import require_key

router = APIRouter(tags=["subscriptions"])
Context = Annotated[ApiContext, Depends(context)]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=2000, description="http(s) URL to POST to")
    cities: list[str] = Field(default_factory=list, description="empty = every city")
    statuses: list[AlertStatus] = Field(
        default_factory=list, description="empty = every status")
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="HMAC key; generated when not given")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


def subscription_out(sub: Subscription, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.id, "name": sub.name, "url": sub.url,
        "cities": list(sub.cities), "statuses": list(sub.statuses),
        "min_confidence": sub.min_confidence, "active": sub.active,
        "created": iso_utc(sub.created_at) if sub.created_at else None,
    }
    if secret:
        out["secret"] = sub.secret
    return out


@router.post("/subscriptions", status_code=201, summary="Subscribe a webhook",
             dependencies=[Depends(require_key)])
def create_subscription(body: SubscriptionIn, request: Request, ctx: Context) -> JSONResponse:
    known = ctx.catalogue.cities()
    unknown = [c for c in body.cities if c not in known]
    if unknown:
        raise RequestError("cities", f"unknown city '{unknown[0]}'",
                           "see /collections/cities/items")
    sub = ctx.store.add_subscription(Subscription(
        id=uuid.uuid4().hex, name=body.name, url=body.url,
        secret=body.secret or secrets.token_hex(32), cities=body.cities,
        statuses=body.statuses, min_confidence=body.min_confidence))
    return JSONResponse(subscription_out(sub, secret=True), status_code=201,
                        headers={"Location": f"{base_url(request)}/subscriptions/{sub.id}"})


@router.get("/subscriptions", summary="Active webhook subscriptions (without secrets)")
def list_subscriptions(ctx: Context) -> dict[str, Any]:
    return {"subscriptions": [subscription_out(s) for s in ctx.store.subscriptions()]}


@router.get("/subscriptions/{sub_id}", summary="One subscription (without its secret)")
def get_subscription(sub_id: str, ctx: Context) -> dict[str, Any]:
    sub = ctx.store.subscription(sub_id)
    if sub is None or not sub.active:
        raise HTTPException(404, f"no subscription '{sub_id}'")
    return subscription_out(sub)


@router.delete("/subscriptions/{sub_id}", status_code=204, summary="Unsubscribe",
               dependencies=[Depends(require_key)], response_class=Response)
def delete_subscription(sub_id: str, ctx: Context) -> Response:
    if not ctx.store.deactivate_subscription(sub_id):
        raise HTTPException(404, f"no subscription '{sub_id}'")
    return Response(status_code=204)


@router.get("/subscriptions/{sub_id}/deliveries", summary="The delivery log",
            dependencies=[Depends(require_key), Depends(known_params_only)])
def deliveries(sub_id: str, ctx: Context, page: Annotated[Page, Depends(paging)]) -> dict[str, Any]:
    if ctx.store.subscription(sub_id) is None:
        raise HTTPException(404, f"no subscription '{sub_id}'")
    rows = ctx.store.deliveries(subscription_id=sub_id, limit=page.limit, offset=page.offset)
    return {"deliveries": [{
        "id": r.id, "event_id": r.event_id, "alert_id": r.alert_id, "status": r.status,
        "attempts": r.attempts, "last_status_code": r.last_status_code,
        "last_error": r.last_error,
        "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
        "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
    } for r in rows]}
