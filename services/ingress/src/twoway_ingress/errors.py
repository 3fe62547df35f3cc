"""Every error ingress answers is JSON: `{"error": <code>, "message": <text>, "field": <name>?}`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from twoway import metrics


class InvalidRequest(Exception):
    """A post we refuse; `status` 400 (unreadable) or 422 (readable but invalid)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, str] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    metrics.INBOUND_REFUSED.labels(status=str(status)).inc()
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )


_HTTP_ERROR_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Renders our own and aiohttp's HTTP errors as JSON bodies."""
    try:
        return await handler(request)
    except InvalidRequest as error:
        return error_response(error.status, error.code, str(error), error.field)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(error.status, "http_error")
        return error_response(error.status, code, error.reason)
