"""An SMS in, a reply out: every service running on real sockets, real RabbitMQ and MongoDB.

The test posts to ingress's /receiveSMS the way a gateway does and waits for the reply to reach
the gateway simulator, which outbound sends to in the MobileFirst HTTP shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import drain, queue_length
from tests.support.stack import Stack, running_stack
from twoway.sdk import Adapter, AdapterSettings
from twoway.topology import ROUTER_QUEUE, UNMATCHED_QUEUE
from twoway_echo.adapter import adapter as echo_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

SENDER = "+15551234567"


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[Stack]:
    def adapters(_gateway: str) -> list[tuple[Adapter, AdapterSettings]]:
        return [(echo_adapter, make_settings(AdapterSettings))]

    async with running_stack(make_settings, tmp_path, adapters) as stack:
        yield stack


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(
            {"params": {"from": SENDER, "to": "12345", "text": "ECHO hello world"}}, id="get-query"
        ),
        pytest.param(
            {"data": {"from": SENDER, "to": "12345", "text": "ECHO hello world"}}, id="post-form"
        ),
        pytest.param(
            {"json": {"from": SENDER, "to": "12345", "text": "ECHO hello world"}}, id="post-json"
        ),
    ],
)
async def test_an_echo_sms_is_answered_through_the_gateway(
    stack: Stack, send: dict[str, Any]
) -> None:
    method = "GET" if "params" in send else "POST"
    async with stack.http.request(method, f"{stack.ingress}/receiveSMS", **send) as response:
        assert response.status == 202
        body = await response.json()
    assert body["status"] == "accepted"
    assert body["message_id"]

    [reply] = await stack.received(1)
    assert reply["to"] == SENDER
    assert reply["text"] == "hello world"
    assert reply["from"] == "12345"


async def test_an_unmatched_sms_is_parked_not_dropped(
    stack: Stack, amqp: AbstractRobustConnection
) -> None:
    query = {"from": SENDER, "to": "12345", "text": "NOBODY handles this"}
    async with stack.http.get(f"{stack.ingress}/receiveSMS", params=query) as response:
        assert response.status == 202
        message_id = (await response.json())["message_id"]

    [parked] = await drain(amqp, UNMATCHED_QUEUE, expect=1)
    assert parked.message_id == message_id
    assert "NOBODY" in str(parked.headers["twoway-reason"])
    assert await stack.received(1, within=0.5) == []
    async with stack.http.get(f"{stack.router}/metrics") as response:
        assert "twoway_router_unmatched_total" in await response.text()


BAD_POSTS = [
    pytest.param(
        {"method": "GET", "params": {"to": "12345", "text": "ECHO hi"}},
        422,
        {"error": "missing_field", "field": "from"},
        id="missing-from",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "to": "12345"}},
        422,
        {"error": "missing_field", "field": "text"},
        id="missing-text",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": "not a number", "text": "ECHO hi"}},
        422,
        {"error": "invalid_field", "field": "from"},
        id="invalid-from",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": '{"from": "+15551234567", "text": ',
            "headers": {"Content-Type": "application/json"},
        },
        400,
        {"error": "invalid_json"},
        id="bad-json",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "text": "ECHO " + "x" * 4096}},
        413,
        {"error": "body_too_large"},
        id="oversized-form",
    ),
    pytest.param(
        {"method": "POST", "data": "x" * 4096, "headers": {"Content-Type": "text/plain"}},
        413,
        {"error": "body_too_large"},
        id="oversized-other-body",
    ),
    pytest.param(
        {"method": "POST", "data": b"<sms/>", "headers": {"Content-Type": "application/xml"}},
        415,
        {"error": "unsupported_media_type"},
        id="unsupported-type",
    ),
]


@pytest.mark.parametrize(("request_args", "status", "expected"), BAD_POSTS)
async def test_bad_input_is_refused_with_a_json_error_and_nothing_is_published(
    stack: Stack,
    amqp: AbstractRobustConnection,
    request_args: dict[str, Any],
    status: int,
    expected: dict[str, str],
) -> None:
    args = dict(request_args)
    method = args.pop("method")
    async with stack.http.request(method, f"{stack.ingress}/receiveSMS", **args) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        body = await response.json()
    assert {key: body.get(key) for key in expected} == expected
    assert body["message"]
    await asyncio.sleep(0.2)
    assert await queue_length(amqp, ROUTER_QUEUE) == 0
    assert await queue_length(amqp, UNMATCHED_QUEUE) == 0
    assert await stack.received(1, within=0.2) == []


async def test_every_service_is_healthy_and_ready(stack: Stack) -> None:
    for base in (
        stack.ingress,
        stack.router,
        stack.outbound,
        stack.adapters["echo"],
        stack.gateway,
    ):
        for path in ("/healthz", "/readyz"):
            async with stack.http.get(base + path) as response:
                assert response.status == 200, (base, path, await response.text())
