"""Handling something twice sends nothing twice: an adapter's handler run again (a retry after it
replied and failed, the broker's redelivery of an SMS it handled but did not ack), the router
answering a redelivered SMS (a STOP confirmation, an unmatched fallback reply) and a broadcast's
fan-out run again from the start. Each re-run sends the same message ids
(`twoway.messages.derive_message_id`), and the gateway simulator receives each SMS once.

A redelivery is made as RabbitMQ makes one after a consumer died holding a message: a copy of
the message is taken from the stopped service's queue on a channel that closes without acking,
so the broker puts it back flagged `redelivered`. Outbound is restarted before the re-run, so
nothing it remembers in memory helps: the copy is dropped on its record in the message log.
Each test waits for outbound's event for the copy ("already sent; not sent again") before
counting what the gateway received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from pamqp.common import FieldValue
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import adapter_queues, delete_queues, drain, listening, topology_queues
from tests.support.servers import serving
from tests.support.stack import SHORT_CODE, gateways_file
from twoway.broadcasts import BROADCASTS, Broadcasts, BroadcastStore, broadcast_message_id
from twoway.broker import Publisher
from twoway.messages import (
    DeliveryEvent,
    Envelope,
    EventSource,
    InboundSMS,
    StartBroadcast,
    derive_message_id,
)
from twoway.sdk import Adapter, AdapterSettings, HandlerContext
from twoway.storage import Document
from twoway.subscriptions import EventSourceRegistry, SubscriptionStore
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    BROADCAST_EVENTS_QUEUE,
    BROADCASTS_QUEUE,
    EVENTS_EXCHANGE,
    HEADER_HANDLER,
    INBOUND_EXCHANGE,
    ROUTER_QUEUE,
    adapter_queue,
    dead_letter_queue,
    declare_exchanges,
    inbound_key,
)
from twoway_broadcaster.app import create_app as create_broadcaster
from twoway_broadcaster.settings import BroadcasterSettings
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_gateway_sim.simulator import create_app as create_gateway_sim
from twoway_outbound.app import create_app as create_outbound
from twoway_outbound.settings import OutboundSettings
from twoway_router.app import create_app as create_router
from twoway_router.settings import RouterSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NAME = "twice"
SENDER = "+15551234567"
ALREADY_SENT = "already sent; not sent again"


@dataclass
class World:
    """The gateway simulator, a restartable outbound and a view of the delivery events."""

    amqp: AbstractRobustConnection
    publisher: Publisher
    http: aiohttp.ClientSession
    gateway: str
    gateways: Path
    events: str
    make_settings: Callable[..., Any]

    def outbound(self) -> AbstractAsyncContextManager[str]:
        """A fresh outbound process (nothing in memory from an earlier one)."""
        return serving(
            create_outbound(self.make_settings(OutboundSettings, gateways_file=self.gateways))
        )

    async def received(self) -> list[str]:
        """The numbers the gateway simulator received an SMS for."""
        async with self.http.get(f"{self.gateway}/messages") as response:
            return [message["to"] for message in await response.json()]

    async def sent(self, *message_ids: str, detail: str | None = None) -> None:
        """Wait for outbound's `sent` event for each of `message_ids` (with `detail`, when
        given), in whatever order they come."""
        waiting = set(message_ids)
        deadline = asyncio.get_running_loop().time() + 15
        while waiting and asyncio.get_running_loop().time() < deadline:
            for taken in await drain(self.amqp, self.events, expect=1, within=0.5):
                event = DeliveryEvent.model_validate_json(taken.body)
                if event.status == "sent" and detail in (None, event.detail):
                    waiting.discard(event.outbound_id)
        assert not waiting, f"no sent event ({detail}) for {sorted(waiting)}"

    async def redeliver(
        self, queue: str, message: Envelope, headers: dict[str, FieldValue] | None = None
    ) -> None:
        """Put `message` in `queue` flagged `redelivered`, as after a consumer died holding it."""
        await self.publisher.publish(message, exchange="", routing_key=queue, headers=headers)
        channel = await self.amqp.channel()
        taken = await (await channel.get_queue(queue)).get(no_ack=False, timeout=5)
        assert taken.message_id == message.message_id
        await channel.close()  # unacked: back in the queue, redelivered


@pytest.fixture
async def world(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[World]:
    queues = [BROADCASTS_QUEUE, BROADCAST_EVENTS_QUEUE, dead_letter_queue(BROADCASTS_QUEUE)]
    await delete_queues(amqp, [*topology_queues([NAME]), *adapter_queues(NAME, [1]), *queues])
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    async with (
        aiohttp.ClientSession() as http,
        serving(create_gateway_sim(make_settings(GatewaySimSettings))) as gateway,
        listening(amqp, EVENTS_EXCHANGE, "#") as events,
    ):
        gateways = gateways_file(tmp_path, gateway)
        yield World(amqp, publisher, http, gateway, gateways, events, make_settings)
    await publisher.channel.close()


def inbound(text: str) -> InboundSMS:
    return InboundSMS(gateway_id="sim", sender=SENDER, recipient=SHORT_CODE, text=text)


def build_adapter(runs: list[str]) -> Adapter:
    adapter = Adapter(NAME)

    @adapter.handler({"keyword": "BAL"})
    async def balance(context: HandlerContext) -> None:
        runs.append("balance")
        await context.reply("Your balance is 42.00")
        if len(runs) == 1:
            raise RuntimeError("failed after replying")

    @adapter.handler({"keyword": "HI"})
    async def hello(context: HandlerContext) -> None:
        runs.append("hello")
        await context.reply("Hello")
        await context.send("+15557654321", "Your friend said hello")

    return adapter


def adapter_settings(world: World) -> AdapterSettings:
    settings: AdapterSettings = world.make_settings(
        AdapterSettings, handler_retry_delays=[1], handler_max_attempts=3
    )
    return settings


async def test_a_handler_retried_after_it_replied_sends_the_reply_once(world: World) -> None:
    runs: list[str] = []
    message = inbound("BAL")
    reply_id = derive_message_id(message.message_id, NAME, "balance", "1")
    async with world.outbound(), serving(build_adapter(runs).create_app(adapter_settings(world))):
        await world.publisher.publish(
            message,
            exchange=ADAPTERS_EXCHANGE,
            routing_key=NAME,
            headers={HEADER_HANDLER: "balance"},
        )
        await world.sent(reply_id)
        await world.sent(reply_id, detail=ALREADY_SENT)  # the retry's copy
    assert runs == ["balance", "balance"]
    assert await world.received() == [SENDER]


async def test_an_sms_redelivered_to_the_adapter_sends_its_reply_and_sends_once(
    world: World,
) -> None:
    runs: list[str] = []
    adapter = build_adapter(runs)
    message = inbound("HI")
    reply_id, send_id = (derive_message_id(message.message_id, NAME, "hello", n) for n in "12")
    async with world.outbound():
        async with serving(adapter.create_app(adapter_settings(world))):
            await world.publisher.publish(
                message,
                exchange=ADAPTERS_EXCHANGE,
                routing_key=NAME,
                headers={HEADER_HANDLER: "hello"},
            )
            await world.sent(reply_id, send_id)
        await world.redeliver(adapter_queue(NAME), message, {HEADER_HANDLER: "hello"})
    async with world.outbound(), serving(adapter.create_app(adapter_settings(world))):
        await world.sent(reply_id, send_id, detail=ALREADY_SENT)
    assert runs == ["hello", "hello"]
    assert sorted(await world.received()) == [SENDER, "+15557654321"]


@pytest.mark.parametrize(
    ("text", "scope"),
    [("STOP", "opt_out"), ("HELP", "help"), ("what", "unmatched")],
    ids=["stop-confirmation", "help-answer", "unmatched-fallback-reply"],
)
async def test_an_sms_redelivered_to_the_router_is_answered_once(
    world: World, text: str, scope: str
) -> None:
    settings = world.make_settings(
        RouterSettings,
        registry_refresh_seconds=3600,
        unmatched_fallbacks=[{"action": "reply", "text": "Nobody handles that"}],
    )
    message = inbound(text)
    reply_id = derive_message_id(message.message_id, "router", scope)
    async with world.outbound():
        async with serving(create_router(settings)):
            await world.publisher.publish(
                message, exchange=INBOUND_EXCHANGE, routing_key=inbound_key("sim")
            )
            await world.sent(reply_id)
        await world.redeliver(ROUTER_QUEUE, message)
    async with world.outbound(), serving(create_router(settings)):
        await world.sent(reply_id, detail=ALREADY_SENT)
    assert await world.received() == [SENDER]


async def test_an_sms_the_router_dispatches_again_is_answered_once_by_the_adapter(
    world: World,
) -> None:
    """The router handled the SMS but died before acking it: it dispatches it again, marked as
    a possible repeat, and the adapter marks its answers so."""
    runs: list[str] = []
    adapter = build_adapter(runs)
    router_settings = world.make_settings(RouterSettings, registry_refresh_seconds=3600)
    message = inbound("HI")
    reply_id, send_id = (derive_message_id(message.message_id, NAME, "hello", n) for n in "12")
    async with serving(adapter.create_app(adapter_settings(world))):
        async with world.outbound():
            async with serving(create_router(router_settings)):
                await world.publisher.publish(
                    message, exchange=INBOUND_EXCHANGE, routing_key=inbound_key("sim")
                )
                await world.sent(reply_id, send_id)
            await world.redeliver(ROUTER_QUEUE, message)
        async with world.outbound(), serving(create_router(router_settings)):
            await world.sent(reply_id, send_id, detail=ALREADY_SENT)
    assert runs == ["hello", "hello"]
    assert sorted(await world.received()) == [SENDER, "+15557654321"]


async def test_a_broadcast_fanned_out_again_from_the_start_is_sent_once(
    world: World, mongo_db: AsyncDatabase[Document]
) -> None:
    phones = [f"+1555000{n:04d}" for n in range(3)]
    sources = EventSourceRegistry(mongo_db)
    await sources.replace_adapter_sources("bank", [EventSource(name="bank.News", adapter="bank")])
    subscriptions = SubscriptionStore(mongo_db, "US")
    await subscriptions.ensure_indexes()
    for phone in phones:
        await subscriptions.subscribe("bank.News", phone)
    store = BroadcastStore(mongo_db)
    settings = world.make_settings(BroadcasterSettings, gateways_file=world.gateways)
    async with world.outbound():
        async with serving(create_broadcaster(settings)):
            broadcast = await Broadcasts(store, sources, world.publisher).request(
                "bank.News", "Markets are up"
            )
            await world.sent(*(broadcast_message_id(broadcast, phone) for phone in phones))
        # As if the fan-out's progress was lost in a crash: it runs again from the start.
        await mongo_db[BROADCASTS].update_one(
            {"_id": broadcast.broadcast_id},
            {"$set": {"status": "queued", "checkpoint": None, "lease_until": None}},
        )
        command = StartBroadcast(broadcast_id=broadcast.broadcast_id)
        await world.redeliver(BROADCASTS_QUEUE, command)
    async with world.outbound(), serving(create_broadcaster(settings)):
        ids = (broadcast_message_id(broadcast, phone) for phone in phones)
        await world.sent(*ids, detail=ALREADY_SENT)
    assert sorted(await world.received()) == phones
