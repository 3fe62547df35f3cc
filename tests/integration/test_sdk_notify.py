"""The SDK's `notify` and `send` on a real broker and database, with the broadcaster running.

A handler's `context.notify` and the adapter's own `adapter.context.notify` reach every
subscriber of the event source exactly once, except numbers opted out of the short code, and
nobody else; `send` publishes exactly one `OutboundSMS` in the adapter's name.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import adapter_queues, delete_queues, drain, listening
from tests.support.servers import serving
from tests.support.stack import SHORT_CODE, gateways_file
from tests.support.waiting import until
from twoway.broadcasts import BROADCASTS, Broadcast, BroadcastStore
from twoway.broker import Publisher
from twoway.messages import InboundSMS, OutboundSMS
from twoway.optouts import OptOutStore
from twoway.sdk import Adapter, AdapterSettings, HandlerContext
from twoway.storage import Document
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    BROADCAST_ADAPTER,
    BROADCAST_EVENTS_QUEUE,
    BROADCASTS_QUEUE,
    HEADER_HANDLER,
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    dead_letter_queue,
    declare_exchanges,
    declare_work_queue,
    outbound_key,
)
from twoway_broadcaster.app import create_app as create_broadcaster
from twoway_broadcaster.settings import BroadcasterSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NAME = "weather"
DELAYS = [1]
TEXTER = "+15551234567"
RAIN_SUBSCRIBERS = [f"+1555010{n:04d}" for n in range(12)]
OPTED_OUT = RAIN_SUBSCRIBERS[3]
OPTED_OUT_ELSEWHERE = RAIN_SUBSCRIBERS[5]
"""Opted out of another short code only: still notified."""
SUN_SUBSCRIBERS = ["+15550209999", RAIN_SUBSCRIBERS[0]]


@dataclass
class Weather:
    """The adapter under test, and what its handlers' calls returned."""

    adapter: Adapter
    broadcasts: list[Broadcast] = field(default_factory=list)
    sent: list[OutboundSMS] = field(default_factory=list)


def build_weather() -> Weather:
    adapter = Adapter(NAME)
    weather = Weather(adapter)
    rain = adapter.event_source("Rain", description="rain warnings")
    adapter.event_source("Sun")

    @adapter.handler({"keyword": "RAIN"})
    async def warn(context: HandlerContext) -> None:
        weather.broadcasts.append(await context.notify(rain.name, "Rain at 7: take an umbrella."))

    @adapter.handler({"keyword": "TELL"})
    async def tell(context: HandlerContext) -> None:
        weather.sent.append(await context.send("(555) 020-1234", "Your friend says hi."))

    return weather


@dataclass(frozen=True)
class Running:
    weather: Weather
    amqp: AbstractRobustConnection
    publisher: Publisher
    outbound: str
    """A queue taking everything published to `sms.outbound`."""
    db: AsyncDatabase[Document]

    async def text(self, handler: str, text: str) -> InboundSMS:
        """An SMS for `handler`, as the router delivers it."""
        message = InboundSMS(gateway_id="sim", sender=TEXTER, recipient=SHORT_CODE, text=text)
        await self.publisher.publish(
            message, exchange=ADAPTERS_EXCHANGE, routing_key=NAME, headers={HEADER_HANDLER: handler}
        )
        return message

    async def published(self, expect: int) -> list[OutboundSMS]:
        """Exactly `expect` messages published to `sms.outbound` (it waits for one more)."""
        messages = await drain(self.amqp, self.outbound, expect=expect + 1, within=1.0)
        assert len(messages) == expect
        return [OutboundSMS.model_validate_json(message.body) for message in messages]

    async def finished(self, broadcast_id: str) -> Broadcast:
        store = BroadcastStore(self.db)
        deadline = asyncio.get_running_loop().time() + 15
        while (broadcast := await store.get(broadcast_id)) is None or broadcast.status in (
            "queued",
            "running",
        ):
            assert asyncio.get_running_loop().time() < deadline, broadcast
            await asyncio.sleep(0.05)
        return broadcast


@pytest.fixture
async def running(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> AsyncIterator[Running]:
    broadcast_queues = [BROADCASTS_QUEUE, BROADCAST_EVENTS_QUEUE]
    await delete_queues(
        amqp,
        [
            *adapter_queues(NAME, DELAYS),
            *broadcast_queues,
            *(dead_letter_queue(queue) for queue in broadcast_queues),
        ],
    )
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    await declare_work_queue(  # outbound's, which the broadcaster checks it fans out into
        publisher.channel,
        OUTBOUND_BULK_QUEUE,
        exchange=OUTBOUND_EXCHANGE,
        binding_keys=[outbound_key("*", "bulk")],
    )
    weather = build_weather()
    adapter_settings = make_settings(AdapterSettings, handler_retry_delays=DELAYS)
    broadcaster_settings = make_settings(
        BroadcasterSettings,
        gateways_file=gateways_file(tmp_path, "http://127.0.0.1:9"),
        batch_size=5,
    )
    async with (
        listening(amqp, OUTBOUND_EXCHANGE, "outbound.#") as outbound,
        serving(weather.adapter.create_app(adapter_settings)),
        serving(create_broadcaster(broadcaster_settings)),
    ):
        context = weather.adapter.context
        for phone in RAIN_SUBSCRIBERS:
            await context.subscribe("weather.Rain", phone)
        for phone in SUN_SUBSCRIBERS:
            await context.subscribe("weather.Sun", phone)
        optouts = OptOutStore(mongo_db)
        await optouts.opt_out(OPTED_OUT, SHORT_CODE)
        await optouts.opt_out(OPTED_OUT_ELSEWHERE, "99999")
        yield Running(weather, amqp, publisher, outbound, mongo_db)
    await publisher.channel.close()


async def test_a_handlers_notify_reaches_each_subscriber_once_but_not_the_opted_out(
    running: Running,
) -> None:
    await running.text("warn", "RAIN")
    notified = await running.published(len(RAIN_SUBSCRIBERS) - 1)

    [requested] = running.weather.broadcasts
    broadcast = await running.finished(requested.broadcast_id)
    assert (broadcast.status, broadcast.event_source) == ("completed", "weather.Rain")
    assert (broadcast.targeted, broadcast.queued, broadcast.skipped_opted_out) == (
        len(RAIN_SUBSCRIBERS),
        len(RAIN_SUBSCRIBERS) - 1,
        1,
    )
    counts = Counter(sms.to for sms in notified)
    assert sorted(counts) == sorted(set(RAIN_SUBSCRIBERS) - {OPTED_OUT})
    assert set(counts.values()) == {1}
    for sms in notified:
        assert sms.text == "Rain at 7: take an umbrella."
        assert (sms.priority, sms.adapter) == ("bulk", BROADCAST_ADAPTER)
        assert sms.correlation_id == broadcast.broadcast_id


async def test_an_sms_handled_twice_notifies_once(running: Running) -> None:
    """A second handling of one SMS (a retry, a redelivery) asks for the broadcast the first
    made (its id is derived from the SMS's): no second broadcast, nobody notified twice."""
    inbound = await running.text("warn", "RAIN")
    await running.published(len(RAIN_SUBSCRIBERS) - 1)
    [first] = running.weather.broadcasts
    await running.finished(first.broadcast_id)

    await running.publisher.publish(
        inbound, exchange=ADAPTERS_EXCHANGE, routing_key=NAME, headers={HEADER_HANDLER: "warn"}
    )
    await until(lambda: len(running.weather.broadcasts) == 2)
    again = running.weather.broadcasts[1]
    assert (again.broadcast_id, again.status) == (first.broadcast_id, "completed")
    assert await running.db[BROADCASTS].count_documents({}) == 1


async def test_the_adapters_own_notify_reaches_only_that_sources_subscribers(
    running: Running,
) -> None:
    requested = await running.weather.adapter.context.notify("weather.Sun", "Sunny all day.")
    notified = await running.published(len(SUN_SUBSCRIBERS))

    assert sorted(sms.to for sms in notified) == sorted(SUN_SUBSCRIBERS)
    assert {sms.text for sms in notified} == {"Sunny all day."}
    broadcast = await running.finished(requested.broadcast_id)
    assert (broadcast.status, broadcast.queued) == ("completed", len(SUN_SUBSCRIBERS))


async def test_send_publishes_one_sms_in_the_adapters_name(running: Running) -> None:
    inbound = await running.text("tell", "TELL")
    [told] = await running.published(1)

    [returned] = running.weather.sent
    assert told == returned
    assert (told.to, told.text, told.adapter, told.priority) == (
        "+15550201234",  # normalised in the default region
        "Your friend says hi.",
        NAME,
        "reply",
    )
    assert told.correlation_id == inbound.message_id

    sent = await running.weather.adapter.context.send(TEXTER, "Outside any SMS.")
    [published] = await running.published(1)
    assert published == sent
    assert (published.to, published.adapter, published.correlation_id) == (TEXTER, NAME, None)
