"""Every error a Twoway HTTP service answers is JSON: `{"error": <code>, "message": <text>,
"field": <name>?}` — its own refusals (`InvalidRequest`), aiohttp's (404, 405, 413, ...) and
a failure nobody expected (500 `internal_error`, logged with its traceback)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

log = structlog.get_logger(__name__)


class InvalidRequest(Exception):
    """A request we refuse, with its status (4xx), an error code, the field at fault and the
    headers the answer carries (a 429's Retry-After)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.headers = dict(headers or {})


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
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )


_HTTP_ERROR_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def json_errors(on_error: Callable[[int], None] | None = None) -> Middleware:
    """A middleware rendering `InvalidRequest`, aiohttp's HTTP errors (>= 400) and unexpected
    exceptions (500) as JSON bodies; `on_error(status)` is called for each (a service's
    refusal counter)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidRequest as error:
            status, code, message, field = error.status, error.code, str(error), error.field
            headers = error.headers
        except web.HTTPException as error:
            if error.status < 400:
                raise
            status, code, message, field = (
                error.status,
                _HTTP_ERROR_CODES.get(error.status, "http_error"),
                error.reason,
                None,
            )
            headers = {name: error.headers[name] for name in _KEPT_HEADERS if name in error.headers}
        except Exception:
            log.exception("request_failed", method=request.method, path=request.path)
            status, code, message, field = (
                500,
                "internal_error",
                "the server failed; retry later",
                None,
            )
            headers = {}
        if on_error is not None:
            on_error(status)
        return error_response(status, code, message, field, headers or None)

    return middleware
