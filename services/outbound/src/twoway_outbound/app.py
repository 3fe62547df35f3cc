"""The outbound application: consumes `outbound.send` and pushes each SMS to its gateway."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from twoway.broker import Consumer
from twoway.gateways.config import load_gateways
from twoway.messages import OutboundSMS
from twoway.service import (
    PUBLISHER,
    amqp_context,
    consumer_context,
    create_base_app,
    open_consumer_channel,
)
from twoway.topology import OUTBOUND_EXCHANGE, OUTBOUND_QUEUE, declare_work_queue, outbound_key
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


def create_app(settings: OutboundSettings) -> web.Application:
    """Fails at once, before connecting, if the gateways file or a secret is missing."""
    gateways = load_gateways(settings.gateways_file)
    secrets = {gateway.id: gateway.secrets(os.environ) for gateway in gateways.gateways}
    app = create_base_app()

    async def build_consumer(app: web.Application) -> Consumer[OutboundSMS]:
        channel = await open_consumer_channel(app, settings.prefetch)
        queue = await declare_work_queue(
            channel,
            OUTBOUND_QUEUE,
            exchange=OUTBOUND_EXCHANGE,
            binding_keys=[outbound_key("#")],
            retry_delays=sorted(set(settings.retry_delays)),
        )
        sender = Sender(
            gateways,
            secrets,
            app[HTTP_SESSION],
            app[PUBLISHER],
            settings.retry_delays,
            settings.max_attempts,
        )
        return Consumer(queue, OutboundSMS, sender.handle, app[PUBLISHER])

    app.cleanup_ctx.append(amqp_context(settings, "outbound"))
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(consumer_context(build_consumer, settings.shutdown_grace))
    return app
