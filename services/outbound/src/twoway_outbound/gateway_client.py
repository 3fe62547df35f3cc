"""One message's requests to its gateway over HTTP, classified by the gateway's dialect."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from twoway.gateways import Dialect
from twoway.gateways.base import GatewayRequest, GatewayResponse
from twoway.gateways.results import SendResult


async def send_request(
    http: aiohttp.ClientSession, dialect: Dialect, request: GatewayRequest, time_limit: float
) -> SendResult:
    """Send one request; a timeout or a connection error is a result to retry, never raised."""
    headers = dict(request.headers)
    if request.basic_auth:
        headers["Authorization"] = aiohttp.encode_basic_auth(*request.basic_auth)
    try:
        async with http.request(
            request.method,
            URL(request.full_url(), encoded=True),
            data=request.form,
            json=request.json,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as response:
            body = await response.text(errors="replace")
            return dialect.classify(
                GatewayResponse(response.status, body, CIMultiDict(response.headers))
            )
    except TimeoutError:
        return SendResult("retry", f"timed out after {time_limit} s")
    except aiohttp.ClientError as error:
        return SendResult("retry", f"{type(error).__name__}: {error}")


async def send_requests(
    http: aiohttp.ClientSession,
    dialect: Dialect,
    requests: Sequence[GatewayRequest],
    time_limit: float,
    *,
    already_sent: int = 0,
) -> tuple[SendResult, int]:
    """Send `requests` from `already_sent` on, stopping at the first that does not succeed.

    Returns the last result and how many requests have now succeeded (parts of a message sent
    with one request each are not sent again when a later part is retried).
    """
    result = SendResult("success", "every part was sent before")
    sent = already_sent
    for request in requests[already_sent:]:
        result = await send_request(http, dialect, request, time_limit)
        if result.outcome != "success":
            break
        sent += 1
    return result, sent
