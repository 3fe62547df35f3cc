"""The router application: consumes `router.inbound`, dispatches to adapter queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from twoway.broker import Consumer
from twoway.messages import InboundSMS
from twoway.registry import HandlerRegistry
from twoway.service import (
    AMQP_CONNECTION,
    MONGO_DB,
    PUBLISHER,
    CleanupContext,
    amqp_context,
    consumer_context,
    create_base_app,
    mongo_context,
    open_consumer_channel,
)
from twoway.topology import (
    INBOUND_EXCHANGE,
    ROUTER_QUEUE,
    declare_control_queue,
    declare_unmatched_queue,
    declare_work_queue,
    inbound_key,
)
from twoway_router.router import Router
from twoway_router.settings import RouterSettings

log = structlog.get_logger(__name__)

ROUTER = web.AppKey("router", Router)


def _handler_table(settings: RouterSettings) -> CleanupContext:
    """Loads the handler table and keeps it fresh: on each sms.control message, and on a timer."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        router = Router(HandlerRegistry(app[MONGO_DB]), app[PUBLISHER])
        app[ROUTER] = router
        channel = await app[AMQP_CONNECTION].channel()
        control = await declare_control_queue(channel)

        async def on_control(message: AbstractIncomingMessage) -> None:
            async with message.process():
                await router.reload()

        await control.consume(on_control)
        await router.reload()

        async def refresh() -> None:
            while True:
                await asyncio.sleep(settings.registry_refresh_seconds)
                try:
                    await router.reload()
                except Exception as error:
                    log.warning("handler_table_refresh_failed", error=str(error))

        refresher = asyncio.create_task(refresh())
        yield
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await channel.close()

    return context


def create_app(settings: RouterSettings) -> web.Application:
    app = create_base_app()

    async def build_consumer(app: web.Application) -> Consumer[InboundSMS]:
        channel = await open_consumer_channel(app, settings.prefetch)
        queue = await declare_work_queue(
            channel, ROUTER_QUEUE, exchange=INBOUND_EXCHANGE, binding_keys=[inbound_key("#")]
        )
        await declare_unmatched_queue(channel)
        return Consumer(queue, InboundSMS, app[ROUTER].route, app[PUBLISHER])

    app.cleanup_ctx.append(amqp_context(settings, "router"))
    app.cleanup_ctx.append(mongo_context(settings, "router"))
    app.cleanup_ctx.append(_handler_table(settings))
    app.cleanup_ctx.append(consumer_context(build_consumer, settings.shutdown_grace))
    return app
