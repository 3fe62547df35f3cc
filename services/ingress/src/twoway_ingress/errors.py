"""Every error ingress answers is JSON (`twoway.http_errors`); each refusal is counted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from twoway import metrics
from twoway.http_errors import InvalidRequest
from twoway.http_errors import error_response as json_error_response
from twoway.http_errors import json_errors as json_errors_middleware

__all__ = ["InvalidRequest", "error_response", "json_errors", "refusing_malformed_bodies"]


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


@contextmanager
def refusing_malformed_bodies() -> Iterator[None]:
    """Decoding a posted form inside: a body that cannot be decoded is a 400 `bad_body` naming
    the problem (text not in its charset, an unknown charset, a malformed multipart body)
    instead of an unhandled error."""
    try:
        yield
    except UnicodeDecodeError as error:
        message = f"the body is not {error.encoding} text ({error.reason} at byte {error.start})"
        raise InvalidRequest(400, "bad_body", message) from error
    except LookupError as error:
        raise InvalidRequest(400, "bad_body", f"the body's charset is unknown ({error})") from error
    except ValueError as error:
        raise InvalidRequest(
            400, "bad_body", f"the body is not a well-formed form ({error})"
        ) from error
