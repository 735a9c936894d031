"""``/asyncapi.json``: the AsyncAPI 3.0 document of the event interfaces (Kafka topics,
webhooks, the SSE stream), built by ``monitor.products.asyncapi`` from the settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from monitor.products.asyncapi import asyncapi_document
from services.api.context import ApiContext, context

router = APIRouter(tags=["operations"])


@router.get("/asyncapi.json", summary="AsyncAPI 3.0 document of the events",
            responses={200: {"content": {"application/json": {}},
                             "description": "topics, webhooks and the SSE stream, with the "
                                            "CloudEvents schemas"}})
def asyncapi(request: Request, ctx: Annotated[ApiContext, Depends(context)]) -> dict[str, Any]:
    return asyncapi_document(ctx.settings, api_host=request.url.netloc)
