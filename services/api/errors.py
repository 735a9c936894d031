"""Errors in the OGC exception shape ``{code, description}`` and the request body limit.

Bad parameters get 400 ``InvalidParameterValue`` (from our parsers, or from FastAPI's
validation of a declared query parameter), bad bodies 400 ``InvalidRequest``, unknown
things 404, bodies above ``api.max_request_bytes`` 413, bodies slower than ``api.timeout_request_s``
408.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.errors import RequestError

_HTTP_CODES = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "NotAllowed",
               408: "RequestTimeout", 409: "Conflict", 413: "PayloadTooLarge",
               422: "UnprocessableEntity", 503: "ServiceUnavailable"}


def error_response(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status_code=status)


def _parameter_problem(error: dict[str, Any]) -> str:
    """``limit: 'ten' is not valid (Input should be a valid integer ...)``."""
    name = str(error.get("loc", ("", "?"))[-1])
    given = error.get("input")
    shown = f"'{given}' " if isinstance(given, str | int | float) else ""
    return f"{name}: {shown}is not valid ({error.get('msg', 'invalid value')})"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _bad_parameter(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(400, "InvalidParameterValue", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid"}
        location = first.get("loc", ())
        if location and location[0] in ("query", "path"):
            return error_response(400, "InvalidParameterValue", _parameter_problem(first))
        where = ".".join(str(p) for p in location if p != "body")
        return error_response(400, "InvalidRequest", f"{where}: {first.get('msg')}".strip(": "))

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "Error"),
                              str(exc.detail))


class BodyLimit:
    """ASGI middleware: refuse request bodies above ``max_bytes`` with 413 (by header, and
    by counting for chunked uploads) before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = error_response(413, "PayloadTooLarge",
                                 f"request body is larger than {self.max_bytes} bytes; send less")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(
                    receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                late = error_response(408, "RequestTimeout", "the request body did not "
                                      f"arrive within {self.timeout_s:g} s")
                late.headers["Connection"] = "close"
                await late(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
