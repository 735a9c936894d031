"""Write access: every write route depends on :func:`require_key` (header ``X-API-Key``),
and is a :class:`KeyFirstRoute`, so that the key is checked before the request body is
read or parsed (a request without a valid key learns nothing about the body's form)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response

from services.api.context import ApiContext, context


def require_key(request: Request, ctx: Annotated[ApiContext, Depends(context)]) -> None:
    """401 without a configured key in ``X-API-Key``; 403 when no key is configured."""
    keys = ctx.api.api_keys
    if not keys:
        raise HTTPException(403, "writes are disabled: no API keys are configured "
                            "(set api.api_keys)")
    given = request.headers.get("x-api-key", "")
    # Compare against every key, always, in constant time: no timing oracle.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given.encode(), key.get_secret_value().encode())
    if not ok:
        raise HTTPException(401, "missing or invalid X-API-Key header")


class KeyFirstRoute(APIRoute):
    """A route whose dependencies include :func:`require_key` checks the key before
    FastAPI reads the body (FastAPI parses JSON before it runs the dependencies)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not any(d.dependency is require_key for d in self.dependencies):
            return handler

        async def key_first(request: Request) -> Response:
            require_key(request, context(request))
            return await handler(request)

        return key_first
