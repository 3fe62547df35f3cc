"""The broadcaster application: fans broadcasts out, and counts their delivery events.

A worker of its own rather than a task inside the api: a fan-out of millions runs for minutes,
needs its own memory and CPU budget (the api keeps answering meanwhile), scales by replicas on
its queue, and can die and be restarted without losing its place (see `fanout`).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from ulid import ULID

from twoway.broadcasts import BroadcastStore
from twoway.broker import Consumer, Publisher
from twoway.gateways.config import load_gateways
from twoway.messages import DeliveryEvent, StartBroadcast
from twoway.optouts import OptOutStore
from twoway.service import (
    AMQP_CONNECTION,
    MONGO_DB,
    PUBLISHER,
    amqp_context,
    consumer_context,
    create_base_app,
    mongo_context,
    open_consumer_channel,
)
from twoway.subscriptions import SubscriptionStore
from twoway.topology import BROADCAST_EVENTS_QUEUE, declare_broadcast_queues
from twoway_broadcaster.fanout import FanOut
from twoway_broadcaster.settings import BroadcasterSettings
from twoway_broadcaster.tally import DeliveryTally

STOPPING = web.AppKey("stopping", asyncio.Event)


def create_app(settings: BroadcasterSettings) -> web.Application:
    """Fails at once, before connecting, if the gateways file is missing or invalid."""
    gateways = load_gateways(settings.gateways_file)
    app = create_base_app()
    app[STOPPING] = asyncio.Event()

    async def stop_fanning_out(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(stop_fanning_out)

    async def build_fan_out(app: web.Application) -> Consumer[StartBroadcast]:
        channel = await open_consumer_channel(app, settings.parallel_broadcasts)
        queue = await declare_broadcast_queues(channel)
        subscriptions = SubscriptionStore(app[MONGO_DB], settings.default_region)
        await subscriptions.ensure_indexes()
        optouts = OptOutStore(app[MONGO_DB])
        await optouts.ensure_indexes()  # one query per batch: it must not scan
        fan_out = FanOut(
            connection=app[AMQP_CONNECTION],
            publisher=await Publisher.open(app[AMQP_CONNECTION], settings.publish_timeout),
            broadcasts=BroadcastStore(app[MONGO_DB]),
            subscriptions=subscriptions,
            optouts=optouts,
            gateways=gateways,
            settings=settings,
            worker=str(ULID()),
            stopping=app[STOPPING],
        )
        return Consumer(
            queue,
            StartBroadcast,
            fan_out.handle,
            app[PUBLISHER],
            max_deliveries=settings.max_deliveries,
        )

    async def build_tally(app: web.Application) -> Consumer[DeliveryEvent]:
        channel = await open_consumer_channel(app, settings.events_prefetch)
        queue = await channel.get_queue(BROADCAST_EVENTS_QUEUE, ensure=True)
        tally = DeliveryTally(BroadcastStore(app[MONGO_DB]), settings.events_prefetch)
        return Consumer(
            queue,
            DeliveryEvent,
            tally.handle,
            app[PUBLISHER],
            max_deliveries=settings.max_deliveries,
        )

    app.cleanup_ctx.append(amqp_context(settings, "broadcaster"))
    app.cleanup_ctx.append(mongo_context(settings, "broadcaster"))
    app.cleanup_ctx.append(consumer_context(build_fan_out, settings.shutdown_grace))
    app.cleanup_ctx.append(consumer_context(build_tally, settings.shutdown_grace))
    return app
