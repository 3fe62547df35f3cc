"""Ordered handlers on a real broker: one sender's SMS are handled one at a time, in order, while
an unordered handler takes them concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import delete_queues
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broker import Publisher
from twoway.messages import InboundSMS
from twoway.sdk import Adapter, AdapterSettings, HandlerContext
from twoway.topology import ADAPTERS_EXCHANGE, HEADER_HANDLER, adapter_queue

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NAME = "ordering"
SENDER = "+14155552671"


def sleepy_adapter(handled: list[str]) -> Adapter:
    """`ORDERED <seconds>` and `FREE <seconds>`: each sleeps, then notes the SMS's text."""
    adapter = Adapter(NAME)

    async def sleep_then_note(context: HandlerContext) -> None:
        await asyncio.sleep(float(context.words[0]))
        handled.append(context.message.text)

    adapter.handler({"keyword": "ORDERED"}, name="ordered", ordered=True)(sleep_then_note)
    adapter.handler({"keyword": "FREE"}, name="free")(sleep_then_note)
    return adapter


async def test_an_ordered_handler_keeps_each_senders_order(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> None:
    await delete_queues(amqp, [adapter_queue(NAME)])
    handled: list[str] = []
    adapter = sleepy_adapter(handled)
    assert [r.ordered for r in adapter.registrations] == [True, False]
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    async with serving(adapter.create_app(make_settings(AdapterSettings, prefetch=16))):
        texts = {
            "ordered": ["ORDERED 0.2", "ORDERED 0", "ORDERED 0.1"],
            "free": ["FREE 0.2", "FREE 0", "FREE 0.1"],
        }
        for handler, batch in texts.items():
            for text in batch:
                message = InboundSMS(gateway_id="sim", sender=SENDER, text=text)
                await publisher.publish(
                    message,
                    exchange=ADAPTERS_EXCHANGE,
                    routing_key=NAME,
                    headers={HEADER_HANDLER: handler},
                )
        await until(lambda: len(handled) == 6)
    await publisher.channel.close()
    assert [text for text in handled if text.startswith("ORDERED")] == texts["ordered"]
    assert [text for text in handled if text.startswith("FREE")] == [
        "FREE 0",
        "FREE 0.1",
        "FREE 0.2",
    ]
