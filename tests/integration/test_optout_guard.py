"""Outbound's opt-out guard, with the gateway simulator as the gateway, on a real broker and
MongoDB-speaking server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain
from tests.support.numbers import TEST_DESTINATIONS
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broker import Publisher
from twoway.gateways.config import GatewaysConfig
from twoway.message_log import LOG_COLLECTION, EventRecorder, MessageLog
from twoway.messages import DeliveryEvent, OptOutChanged, OutboundSMS
from twoway.optouts import Exemption, OptOutStore
from twoway.storage import Document
from twoway.topology import (
    CONTROL_EXCHANGE,
    EVENTS_EXCHANGE,
    OUTBOUND_EXCHANGE,
    declare_exchanges,
    outbound_key,
)
from twoway_gateway_sim.settings import GatewaySimSettings
from twoway_gateway_sim.simulator import create_app as create_gateway_sim
from twoway_outbound.app import create_app as create_outbound
from twoway_outbound.optout_guard import OPTOUT_GUARD, OptOutGuard
from twoway_outbound.settings import OutboundSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

PHONE = "+14155552671"
OTHER_PHONE = "+14155550000"
PROGRESS = ("accepted", "retrying")
"""Statuses of a message still on its way."""


@dataclass
class Outbound:
    app: web.Application
    publisher: Publisher
    store: OptOutStore
    events: str
    gateway: str
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection

    @property
    def guard(self) -> OptOutGuard:
        return self.app[OPTOUT_GUARD]

    async def send(self, text: str, **fields: Any) -> OutboundSMS:
        message = OutboundSMS(**{"to": PHONE, "text": text, "gateway_id": "sim", **fields})
        await self.publisher.publish(
            message, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key(message.gateway_id)
        )
        return message

    async def event_for(self, message: OutboundSMS) -> DeliveryEvent:
        """The outcome of `message`: its first event after `accepted` and `retrying` (events of
        other messages are passed over)."""
        for _ in range(10):
            for taken in await drain(self.amqp, self.events, expect=1):
                event = DeliveryEvent.model_validate_json(taken.body)
                if event.outbound_id == message.message_id and event.status not in PROGRESS:
                    return event
        raise AssertionError(f"no event for {message.message_id}")

    async def delivered_to(self, phone: str) -> list[str]:
        async with self.http.get(f"{self.gateway}/messages") as response:
            received: list[dict[str, Any]] = await response.json()
        return [record["text"] for record in received if record["to"] == phone]


@pytest.fixture
async def start_outbound(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> AsyncIterator[Callable[[], Any]]:
    """`await start_outbound()`: outbound in front of the gateway simulator (default sender
    12345), with a private queue on `sms.events`. Opt-outs stored before it starts are loaded."""
    async with AsyncExitStack() as running:
        http = await running.enter_async_context(aiohttp.ClientSession())
        gateway = await running.enter_async_context(
            serving(create_gateway_sim(make_settings(GatewaySimSettings)))
        )
        gateways = tmp_path / "gateways.yaml"
        gateways.write_text(
            "default_gateway: sim\ngateways:\n  - id: sim\n    type: mobilefirst-http\n"
            f"    url: {gateway}/sendSMS\n    default_sender: '12345'\n    timeout: 2\n"
            f"    destinations: {TEST_DESTINATIONS}\n"
        )
        publisher = await Publisher.open(amqp, confirm_timeout=5)
        await declare_exchanges(publisher.channel)
        running.push_async_callback(publisher.channel.close)
        events = await publisher.channel.declare_queue(exclusive=True)
        await events.bind(EVENTS_EXCHANGE, routing_key="#")
        store = OptOutStore(mongo_db)
        await store.ensure_indexes()

        async def start() -> Outbound:
            app = create_outbound(make_settings(OutboundSettings, gateways_file=gateways))
            await running.enter_async_context(serving(app))
            return Outbound(app, publisher, store, events.name, gateway, http, amqp)

        yield start


async def test_a_message_to_an_opted_out_number_is_refused(start_outbound: Any) -> None:
    outbound: Outbound = await start_outbound()
    await outbound.store.opt_out(PHONE, "12345")
    await outbound.publisher.publish(
        OptOutChanged(phone=PHONE), exchange=CONTROL_EXCHANGE, routing_key=""
    )
    await until(lambda: outbound.guard.index.may_refuse(PHONE, "12345"))
    refused = await outbound.send("Your balance is 12.00", adapter="bank")
    event = await outbound.event_for(refused)
    assert (event.status, event.detail, event.adapter, event.gateway_id) == (
        "failed",
        "opted_out",
        "bank",
        "sim",
    )
    sent = await outbound.send("hello", to=OTHER_PHONE)
    assert (await outbound.event_for(sent)).status == "sent"
    assert await outbound.delivered_to(PHONE) == []


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({}, "failed"),
        ({"from_": "12345"}, "failed"),
        ({"from_": "67890"}, "sent"),
    ],
    ids=["gateway-default-sender", "same-short-code", "other-short-code"],
)
async def test_the_opt_out_is_per_short_code(
    start_outbound: Any, fields: dict[str, Any], status: str
) -> None:
    outbound: Outbound = await start_outbound()
    await outbound.store.opt_out(PHONE, "12345")
    await outbound.guard.reload()
    message = await outbound.send("news", **fields)
    assert (await outbound.event_for(message)).status == status


async def test_the_routers_confirmation_is_exempt(start_outbound: Any) -> None:
    confirmation = OutboundSMS(
        to=PHONE, from_="12345", text="You are unsubscribed", adapter="router"
    )
    outbound: Outbound = await start_outbound()
    await outbound.store.opt_out(PHONE, "12345", Exemption.of(confirmation))
    await outbound.guard.reload()
    await outbound.publisher.publish(
        confirmation, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key(None)
    )
    assert (await outbound.event_for(confirmation)).status == "sent"
    assert await outbound.delivered_to(PHONE) == ["You are unsubscribed"]
    # the same id with other words is not the confirmation
    forged = confirmation.model_copy(update={"text": "Buy now!"})
    await outbound.publisher.publish(
        forged, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key(None)
    )
    assert await outbound.delivered_to(PHONE) == ["You are unsubscribed"]


async def test_opt_outs_stored_before_start_are_loaded(
    start_outbound: Any, mongo_db: AsyncDatabase[Document]
) -> None:
    store = OptOutStore(mongo_db)
    await asyncio.gather(*(store.opt_out(f"+1415555{n:04d}", "12345") for n in range(3)))
    outbound: Outbound = await start_outbound()
    assert len(outbound.guard.index) == 3
    refused = await outbound.send("hello", to="+14155550001")
    assert (await outbound.event_for(refused)).detail == "opted_out"


async def test_a_stale_copy_never_refuses_a_number_that_opted_back_in(
    start_outbound: Any,
) -> None:
    outbound: Outbound = await start_outbound()
    await outbound.store.opt_out(PHONE, "12345")
    await outbound.guard.reload()
    await outbound.store.opt_in(PHONE, "12345")  # not announced: the copy is stale
    message = await outbound.send("welcome back")
    assert (await outbound.event_for(message)).status == "sent"
    assert not outbound.guard.index.may_refuse(PHONE, "12345")  # and the index caught up


class SnapshotStore(OptOutStore):
    """Lists opt-outs as they were before `meanwhile` ran: a cursor that had passed them."""

    meanwhile: Callable[[], Awaitable[None]]

    async def entries(self) -> AsyncIterator[tuple[str, str]]:
        snapshot = [entry async for entry in super().entries()]
        await self.meanwhile()
        for entry in snapshot:
            yield entry


async def test_an_opt_out_announced_during_a_reload_is_not_lost(
    mongo_db: AsyncDatabase[Document], amqp: AbstractRobustConnection
) -> None:
    store = SnapshotStore(mongo_db)
    gateways = GatewaysConfig.model_validate(
        {
            "default_gateway": "sim",
            "gateways": [{"id": "sim", "type": "mobilefirst-http", "url": "http://127.0.0.1:1/"}],
        }
    )
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    events = EventRecorder(MessageLog(mongo_db[LOG_COLLECTION]), publisher)
    guard = OptOutGuard(store, gateways, events)

    async def opt_out_and_announce() -> None:
        await store.opt_out(PHONE, "12345")
        await guard.apply(OptOutChanged(phone=PHONE))

    store.meanwhile = opt_out_and_announce
    await guard.reload()
    assert guard.index.may_refuse(PHONE, "12345")
