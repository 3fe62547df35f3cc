"""A hostile post cannot hold up the next SMS: refused or parked, and routing goes on.

A 64 KB multipart text of control characters once reached the router, which built an AMQP header
from it past RabbitMQ's frame limit, lost its connection and crash-looped on the redelivery.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.stack import Stack, just, running_stack
from twoway_echo.adapter import adapter as echo_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

SENDER = "+15551234567"
BODY_LIMIT = 128 * 1024
CONTROL_CHARACTERS = "".join(map(chr, [*range(0x01, 0x09), *range(0x0E, 0x1C)]))


@pytest.fixture
async def stack(make_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        make_settings,
        tmp_path,
        just(echo_adapter, make_settings),
        ingress_settings={"max_body_bytes": BODY_LIMIT},
    ) as stack:
        yield stack


async def router_reconnects(stack: Stack) -> float:
    """How often the router's broker connection was lost and made again (its own metric)."""
    async with stack.http.get(f"{stack.router}/metrics") as response:
        text = await response.text()
    found = re.search(r'^twoway_broker_reconnects_total\{service="router"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def multipart(text: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("from", SENDER)
    form.add_field("to", "12345")
    form.add_field("text", text)
    return form


async def post(stack: Stack, text: str) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(f"{stack.ingress}/receiveSMS", data=multipart(text)) as response:
        return response.status, await response.json()


async def test_a_hostile_64kb_post_then_an_echo_answered_within_a_second(stack: Stack) -> None:
    reconnects_before = await router_reconnects(stack)
    hostile = (CONTROL_CHARACTERS * (64 * 1024 // len(CONTROL_CHARACTERS) + 1))[: 64 * 1024]

    status, refusal = await post(stack, hostile)
    assert (status, refusal["error"], refusal["field"]) == (422, "too_long", "text")
    # The longest text ingress takes, one word (ten UCS-2 segments): parked as unmatched.
    status, _ = await post(stack, "\u3042" * 670)
    assert status == 202

    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await post(stack, "ECHO still here")
    assert status == 202
    [reply] = await stack.received(1, within=1.0)
    assert loop.time() - started < 1.0
    assert reply["text"] == "still here"
    assert reply["to"] == SENDER
    assert await router_reconnects(stack) == reconnects_before
