"""Every error ingress answers is JSON (`twoway.http_errors`); each refusal is counted."""

from __future__ import annotations

from aiohttp import web

from twoway import metrics
from twoway.http_errors import InvalidRequest
from twoway.http_errors import error_response as json_error_response
from twoway.http_errors import json_errors as json_errors_middleware

__all__ = ["InvalidRequest", "error_response", "json_errors"]


def _count_refusal(status: int) -> None:
    metrics.INBOUND_REFUSED.labels(status=str(status)).inc()


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    _count_refusal(status)
    return json_error_response(status, code, message, field, headers)


json_errors = json_errors_middleware(on_error=_count_refusal)
