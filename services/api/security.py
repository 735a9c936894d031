"""Write access: every write route depends on :func:`require_key` (header ``X-API-Key``)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

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
        ok |= hmac.compare_digest(given.encode(), key.encode())
    if not ok:
        raise HTTPException(401, "missing or invalid X-API-Key header")
