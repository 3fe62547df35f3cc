"""Opt-out compliance and dedupe end to end: SMS posted to ingress the way a gateway posts them,
answers read back from the gateway simulator, every service on real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import drain
from tests.support.stack import SHORT_CODE, Stack, running_stack
from twoway.messages import DeliveryEvent
from twoway.sdk import Adapter, AdapterSettings
from twoway.topology import EVENTS_EXCHANGE
from twoway_echo.adapter import adapter as echo_adapter
from twoway_router.settings import RouterSettings

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

SENDER = "+15551234567"
REPLIES = RouterSettings()


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], tmp_path: Path, amqp: AbstractRobustConnection
) -> AsyncIterator[Stack]:
    def adapters(_gateway: str) -> Iterable[tuple[Adapter, AdapterSettings]]:
        return [(echo_adapter, make_settings(AdapterSettings))]

    async with running_stack(make_settings, tmp_path, adapters) as running:
        yield running


async def failed_events(amqp: AbstractRobustConnection, queue: str) -> list[DeliveryEvent]:
    """The `failed` events that reached `queue`, once there is one."""
    for _ in range(10):
        taken = await drain(amqp, queue, expect=1)
        events = [DeliveryEvent.model_validate_json(message.body) for message in taken]
        failed = [event for event in events if event.status == "failed"]
        if failed:
            return failed
    return []


async def test_stop_blocks_later_replies_until_start(
    stack: Stack, amqp: AbstractRobustConnection
) -> None:
    channel = await amqp.channel()
    events = await channel.declare_queue(exclusive=True)
    await events.bind(EVENTS_EXCHANGE, routing_key="#")

    await stack.send_mo(SENDER, "STOP")
    [confirmation] = await stack.received(1)
    assert (confirmation["to"], confirmation["from"], confirmation["text"]) == (
        SENDER,
        SHORT_CODE,
        REPLIES.optout_reply,
    )

    await stack.send_mo(SENDER, "ECHO are you there")
    [refused] = await failed_events(amqp, events.name)
    assert (refused.detail, refused.adapter) == ("opted_out", "echo")

    await stack.send_mo(SENDER, "HELP")  # answered even while opted out
    await stack.send_mo(SENDER, "START")
    await stack.send_mo(SENDER, "ECHO back again")
    received = await stack.received(4)
    # outbound sends concurrently: the last three may reach the gateway in any order
    assert received[0]["text"] == REPLIES.optout_reply
    assert sorted(message["text"] for message in received[1:]) == sorted(
        [REPLIES.help_reply, REPLIES.optin_reply, "back again"]
    )
    await channel.close()


async def test_a_gateways_retried_post_is_answered_once(stack: Stack) -> None:
    await stack.send_mo(SENDER, "ECHO only once")
    await stack.send_mo(SENDER, "ECHO only once")  # the gateway retries: a new message id
    await stack.send_mo(SENDER, "ECHO and then this")
    received = await stack.received(3, within=2)
    assert sorted(message["text"] for message in received) == ["and then this", "only once"]
