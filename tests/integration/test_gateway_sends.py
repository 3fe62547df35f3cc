"""Each dialect's send against a local HTTP server that plays the vendor: success, a client
error, a server error, 429 with Retry-After, and a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
import pytest
from aiohttp import web

from tests.support.servers import serving
from tests.unit.dialects.helpers import outbound, secrets
from twoway.gateways import DIALECTS
from twoway.gateways.config import GatewayConfig
from twoway.gateways.encoding import segment
from twoway_outbound.gateway_client import send_requests

TIMEOUT = 0.2


@dataclass
class Vendor:
    """Answers every request with the scripted (status, body, headers, delay)."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def answer(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "body": unquote_plus(await request.text()),
                "authorization": request.headers.get("Authorization", ""),
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=self.body, headers=self.headers)


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[Vendor, str]]:
    fake = Vendor()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.answer)
    async with serving(app) as url:
        yield fake, url


GATEWAYS: dict[str, dict[str, Any]] = {
    "mobilefirst-http": {"url": "/sendSMS"},
    "kannel": {"url": "/cgi-bin/sendsms", "account": "twoway", "secret": "X"},
    "twilio": {"url": "", "account": "AC1", "secret": "X"},
    "vonage": {"url": "", "account": "key", "secret": "X"},
    "infobip": {"url": "", "secret": "X"},
    "webhook": {"url": "/sms", "secret": "X"},
}

SUCCESS: dict[str, tuple[int, str, str | None]] = {
    "mobilefirst-http": (200, "OK", None),
    "kannel": (202, "0: Accepted for delivery", None),
    "twilio": (201, '{"sid": "SM9", "status": "queued"}', "SM9"),
    "vonage": (
        200,
        '{"message-count": "1", "messages": [{"status": "0", "message-id": "V9"}]}',
        "V9",
    ),
    "infobip": (
        200,
        '{"messages": [{"messageId": "I9", '
        '"status": {"groupName": "PENDING", "name": "PENDING_ACCEPTED"}}]}',
        "I9",
    ),
    "webhook": (202, '{"id": "W9"}', "W9"),
}

REQUEST_SHAPE: dict[str, tuple[str, str]] = {
    "mobilefirst-http": ("GET", "/sendSMS"),
    "kannel": ("GET", "/cgi-bin/sendsms"),
    "twilio": ("POST", "/2010-04-01/Accounts/AC1/Messages.json"),
    "vonage": ("POST", "/sms/json"),
    "infobip": ("POST", "/sms/3/messages"),
    "webhook": ("POST", "/sms"),
}

AUTHORIZATION = {
    "twilio": "Basic QUMxOnMzY3JldA==",
    "infobip": "App s3cret",
    "webhook": "Bearer s3cret",
}

SCENARIOS: tuple[tuple[Any, ...], ...] = (
    # id, status, body, headers, delay, outcome, retry_after
    ("client-error", 400, '{"code": 21211, "message": "Invalid To"}', {}, 0.0, "permanent", None),
    ("server-error", 500, "down", {}, 0.0, "retry", None),
    ("too-many-requests", 429, "slow down", {"Retry-After": "7"}, 0.0, "retry", 7.0),
    ("timeout", 200, "", {}, TIMEOUT + 0.2, "retry", None),
)


def config(type_: str, base: str) -> GatewayConfig:
    fields = dict(GATEWAYS[type_])
    fields["url"] = base + fields["url"]
    return GatewayConfig.model_validate({"id": "g", "type": type_, **fields})


async def send(type_: str, base: str) -> tuple[Any, int]:
    gateway = config(type_, base)
    dialect = DIALECTS[type_]
    message = outbound()
    requests = dialect.build_requests(gateway, message, segment(message.text), secrets())
    async with aiohttp.ClientSession() as http:
        return await send_requests(http, dialect, requests, TIMEOUT)


@pytest.mark.parametrize("type_", sorted(GATEWAYS))
async def test_success(type_: str, vendor: tuple[Vendor, str]) -> None:
    fake, base = vendor
    fake.status, fake.body, gateway_id = SUCCESS[type_]
    result, sent = await send(type_, base)
    assert (result.outcome, result.gateway_message_id, sent) == ("success", gateway_id, 1)
    [seen] = fake.seen
    assert (seen["method"], seen["path"]) == REQUEST_SHAPE[type_]
    assert seen["authorization"] == AUTHORIZATION.get(type_, "")
    assert "Your balance is 12.00" in seen["body"] + str(seen["query"])


@pytest.mark.parametrize("type_", sorted(GATEWAYS))
@pytest.mark.parametrize(
    ("status", "body", "headers", "delay", "outcome", "retry_after"),
    [case[1:] for case in SCENARIOS],
    ids=[case[0] for case in SCENARIOS],
)
async def test_failures(
    type_: str,
    vendor: tuple[Vendor, str],
    status: int,
    body: str,
    headers: dict[str, str],
    delay: float,
    outcome: str,
    retry_after: float | None,
) -> None:
    fake, base = vendor
    fake.status, fake.body, fake.headers, fake.delay = status, body, headers, delay
    result, sent = await send(type_, base)
    assert (result.outcome, result.retry_after, sent) == (outcome, retry_after, 0)


async def test_connection_refused_is_retried() -> None:
    result, sent = await send("kannel", "http://127.0.0.1:1")
    assert (result.outcome, sent) == ("retry", 0)
    assert "ClientConnectorError" in result.detail
