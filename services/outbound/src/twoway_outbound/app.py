"""The outbound application: sends each SMS of `outbound.send` (replies) and `outbound.bulk` to
its gateway, and writes what became of each to the message log (then on `sms.events`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from twoway.broker import Consumer
from twoway.gateways.config import GatewaysConfig, load_gateways
from twoway.message_log import LOG_COLLECTION, EventRecorder, MessageLog
from twoway.messages import OutboundSMS
from twoway.service import (
    MONGO_DB,
    PUBLISHER,
    CleanupContext,
    ConsumerFactory,
    amqp_context,
    consumer_context,
    create_base_app,
    mongo_context,
    open_consumer_channel,
)
from twoway.topology import (
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    OUTBOUND_QUEUE,
    declare_work_queue,
    outbound_key,
)
from twoway_outbound.ledger import SentLedger
from twoway_outbound.optout_guard import OPTOUT_GUARD, optout_guard_context
from twoway_outbound.ratelimit import WINDOWS_COLLECTION, RateLimiters
from twoway_outbound.recipient_caps import COUNTS_COLLECTION, RecipientCaps
from twoway_outbound.retries import RetryPolicy
from twoway_outbound.sender import Sender
from twoway_outbound.settings import OutboundSettings

HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        headers={"User-Agent": "twoway-outbound"},
        connector=aiohttp.TCPConnector(limit=256),
    ) as session:
        app[HTTP_SESSION] = session
        yield


@dataclass(frozen=True)
class Stores:
    """What outbound keeps in MongoDB: the message log (with the record of what was sent), the
    rate windows and the per-recipient counts."""

    events: EventRecorder
    ledger: SentLedger
    limiters: RateLimiters
    caps: RecipientCaps


STORES = web.AppKey("outbound_stores", Stores)


def _stores_context(settings: OutboundSettings, gateways: GatewaysConfig) -> CleanupContext:
    async def context(app: web.Application) -> AsyncIterator[None]:
        database = app[MONGO_DB]
        rates = {g.id: g.rate_limit for g in gateways.gateways if g.rate_limit is not None}
        caps = {g.id: g.recipient_limit for g in gateways.gateways if g.recipient_limit}
        message_log = MessageLog(database[LOG_COLLECTION])
        stores = Stores(
            EventRecorder(message_log, app[PUBLISHER]),
            SentLedger(message_log),
            RateLimiters(database[WINDOWS_COLLECTION], rates),
            RecipientCaps(database[COUNTS_COLLECTION], caps),
        )
        await message_log.ensure_indexes(settings.message_log_ttl)
        await stores.limiters.ensure_indexes()
        await stores.caps.ensure_indexes()
        app[STORES] = stores
        yield

    return context


def create_app(settings: OutboundSettings) -> web.Application:
    """Fails at once, before connecting, if the gateways file or a secret is missing."""
    gateways = load_gateways(settings.gateways_file)
    secrets = gateways.secrets(
        os.environ, reference_secret=settings.reference_secret.get_secret_value()
    )
    app = create_base_app()
    retries = RetryPolicy(settings.retry_delays, settings.max_attempts, settings.retry_max_age)

    def sender_consumer(queue_name: str, binding_key: str) -> ConsumerFactory:
        async def build(app: web.Application) -> Consumer[OutboundSMS]:
            channel = await open_consumer_channel(app, settings.prefetch)
            queue = await declare_work_queue(
                channel,
                queue_name,
                exchange=OUTBOUND_EXCHANGE,
                binding_keys=[binding_key],
                retry_delays=retries.queue_delays,
            )
            if queue_name == OUTBOUND_QUEUE:  # bound to every key before bulk had its queue
                await queue.unbind(OUTBOUND_EXCHANGE, outbound_key("#"))
            stores = app[STORES]
            sender = Sender(
                queue_name,
                gateways,
                secrets,
                app[HTTP_SESSION],
                app[PUBLISHER],
                stores.events,
                stores.ledger,
                stores.limiters,
                stores.caps,
                retries,
                settings.default_region,
            )
            guarded = app[OPTOUT_GUARD].wrap(sender.handle)
            return Consumer(
                queue, OutboundSMS, guarded, app[PUBLISHER], max_deliveries=settings.max_deliveries
            )

        return build

    grace = settings.shutdown_grace
    app.cleanup_ctx.append(amqp_context(settings, "outbound"))
    app.cleanup_ctx.append(mongo_context(settings, "outbound"))
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(_stores_context(settings, gateways))
    app.cleanup_ctx.append(optout_guard_context(gateways, settings.optout_refresh_seconds))
    app.cleanup_ctx.append(
        consumer_context(sender_consumer(OUTBOUND_QUEUE, outbound_key("*")), grace)
    )
    app.cleanup_ctx.append(
        consumer_context(sender_consumer(OUTBOUND_BULK_QUEUE, outbound_key("*", "bulk")), grace)
    )
    return app
