"""The router application: consumes `router.inbound`, dispatches to adapter queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from twoway.broker import Consumer
from twoway.control import control_context
from twoway.conversations import ConversationStore
from twoway.dedupe import DedupeStore
from twoway.messages import InboundSMS
from twoway.optouts import OptOutStore
from twoway.registry import HandlerRegistry
from twoway.service import (
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
    declare_unmatched_queue,
    declare_work_queue,
    inbound_key,
)
from twoway_router.compliance import Compliance
from twoway_router.router import Router
from twoway_router.settings import RouterSettings
from twoway_router.unmatched import UnmatchedRecord

ROUTER = web.AppKey("router", Router)


def _router(settings: RouterSettings) -> CleanupContext:
    """Builds the router over its stores (creating their indexes) once the connections are up."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        db, publisher = app[MONGO_DB], app[PUBLISHER]
        optouts = OptOutStore(db)
        dedupe = DedupeStore(db)
        unmatched = UnmatchedRecord(db, timedelta(seconds=settings.unmatched_retention_seconds))
        for store in (optouts, dedupe, unmatched):
            await store.ensure_indexes()
        app[ROUTER] = Router(
            settings,
            HandlerRegistry(db),
            publisher,
            Compliance(settings, optouts, publisher),
            dedupe,
            unmatched,
            conversations=ConversationStore(db),
        )
        yield

    return context


def create_app(settings: RouterSettings) -> web.Application:
    app = create_base_app()

    async def build_consumer(app: web.Application) -> Consumer[InboundSMS]:
        channel = await open_consumer_channel(app, settings.prefetch)
        queue = await declare_work_queue(
            channel, ROUTER_QUEUE, exchange=INBOUND_EXCHANGE, binding_keys=[inbound_key("#")]
        )
        await declare_unmatched_queue(channel)
        return Consumer(
            queue,
            InboundSMS,
            app[ROUTER].route,
            app[PUBLISHER],
            max_deliveries=settings.max_deliveries,
        )

    app.cleanup_ctx.append(amqp_context(settings, "router"))
    app.cleanup_ctx.append(mongo_context(settings, "router"))
    app.cleanup_ctx.append(_router(settings))
    app.cleanup_ctx.append(
        control_context(lambda app: app[ROUTER], settings.registry_refresh_seconds)
    )
    app.cleanup_ctx.append(consumer_context(build_consumer, settings.shutdown_grace))
    return app
