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

from tests.support.broker import drain, listening, queue_length
from tests.support.stack import Stack, running_stack
from twoway.phone import InvalidPhoneNumber, parse_gateway_number
from twoway.sdk import Adapter, AdapterSettings
from twoway.topology import INBOUND_EXCHANGE, UNMATCHED_QUEUE
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


FORM = "application/x-www-form-urlencoded"


def phone_refusal(raw: str) -> str:
    """What ingress answers for `from=<raw>`: twoway.phone's own words for the bad number."""
    with pytest.raises(InvalidPhoneNumber) as refused:
        parse_gateway_number(raw, "auto", "US")
    return f"from: {refused.value}"


BAD_POSTS = [
    pytest.param(
        {"method": "GET", "params": {"to": "12345", "text": "ECHO hi"}},
        422,
        {
            "error": "missing_field",
            "message": "from is required",
            "field": "from",
        },
        id="missing-from",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "to": "12345"}},
        422,
        {
            "error": "missing_field",
            "message": "text is required: the message text",
            "field": "text",
        },
        id="missing-text",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": "not a number", "text": "ECHO hi"}},
        422,
        {"error": "invalid_field", "message": phone_refusal("not a number"), "field": "from"},
        id="invalid-from",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": '{"from": "+15551234567", "text": ',
            "headers": {"Content-Type": "application/json"},
        },
        400,
        {
            "error": "invalid_json",
            "message": "the body is not valid JSON: Expecting value: line 1 column 34 (char 33)",
        },
        id="bad-json",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": b"from=%2B15551234567&text=\xff",
            "headers": {"Content-Type": FORM},
        },
        400,
        {
            "error": "bad_body",
            "message": "the body is not utf-8 text (invalid start byte at byte 25)",
        },
        id="form-not-utf8",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": b"from=%2B15551234567&text=hi",
            "headers": {"Content-Type": f"{FORM}; charset=bogus"},
        },
        400,
        {"error": "bad_body", "message": "the body's charset is unknown (unknown encoding: bogus)"},
        id="form-unknown-charset",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": b"from=%2B15551234567&text=hi",
            "headers": {"Content-Type": "multipart/form-data"},
        },
        400,
        {
            "error": "bad_body",
            "message": "the body is not a well-formed form "
            "(boundary missed for Content-Type: multipart/form-data)",
        },
        id="multipart-without-boundary",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "text": "ECHO " + "x" * 4096}},
        413,
        {"error": "body_too_large", "message": "Request Entity Too Large"},
        id="oversized-form",
    ),
    pytest.param(
        {"method": "POST", "data": "x" * 4096, "headers": {"Content-Type": "text/plain"}},
        413,
        {"error": "body_too_large", "message": "Request Entity Too Large"},
        id="oversized-other-body",
    ),
    pytest.param(
        {"method": "POST", "data": b"<sms/>", "headers": {"Content-Type": "application/xml"}},
        415,
        {
            "error": "unsupported_media_type",
            "message": "post a form (application/x-www-form-urlencoded or multipart/form-data)"
            " or a JSON object",
        },
        id="unsupported-type",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": b'{"from": "+15551234567", "text": "ECHO \\ud800"}',
            "headers": {"Content-Type": "application/json"},
        },
        422,
        {
            "error": "invalid_text",
            "message": "text is not valid Unicode text (surrogates not allowed)",
            "field": "text",
        },
        id="json-lone-surrogate",
    ),
    pytest.param(
        {
            "method": "POST",
            "data": "[" * 1000 + "]" * 1000,
            "headers": {"Content-Type": "application/json"},
        },
        400,
        {"error": "invalid_json", "message": "the JSON body is nested too deeply"},
        id="json-nested-deep",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "to": "12345x", "text": "ECHO hi"}},
        422,
        {
            "error": "unknown_recipient",
            "message": "recipient '******' is not one of gateway 'sim''s own numbers",
            "field": "to",
        },
        id="recipient-not-ours",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "to": "MyBank", "text": "ECHO hi"}},
        422,
        {
            "error": "unknown_recipient",
            "message": "recipient '******' is not one of gateway 'sim''s own numbers",
            "field": "to",
        },
        id="recipient-spoofed-sender-id",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "text": "ECHO " + "x" * 1700}},
        422,
        {
            "error": "too_long",
            "message": "text is longer than 1600 characters",
            "field": "text",
        },
        id="text-too-long",
    ),
    pytest.param(
        {"method": "POST", "data": {"from": SENDER, "text": "hi", "keyword": "K" * 33}},
        422,
        {
            "error": "too_long",
            "message": "keyword is longer than 32 characters",
            "field": "keyword",
        },
        id="keyword-too-long",
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
    async with listening(amqp, INBOUND_EXCHANGE, "inbound.#") as published:
        async with stack.http.request(method, f"{stack.ingress}/receiveSMS", **args) as response:
            assert response.status == status
            assert response.content_type == "application/json"
            assert await response.json() == expected
        await asyncio.sleep(0.2)
        assert await queue_length(amqp, published) == 0
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
