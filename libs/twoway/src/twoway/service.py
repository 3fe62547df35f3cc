"""What every service process shares: health routes, resource contexts and the runner.

Each service has a `create_app(settings) -> web.Application` factory. Resources (the AMQP
connection, the MongoDB client, consumers) are opened and closed by `cleanup_ctx` entries, so
nothing connects at import time and `aiohttp.web.run_app` gives every service the same graceful
shutdown on SIGINT/SIGTERM: the listening socket closes at once (so every probe, readiness
included, fails from then on), requests in progress finish, consumers stop, in-flight messages
finish within the grace (or go back to their queue unacked), connections close, exit status 0.
Taking a pod out of its Service's endpoints before SIGTERM is the orchestrator's part (the
manifests' `preStop` sleep): once SIGTERM arrives nothing is left to announce through
`/readyz`. Queue workers serve only `/healthz`, `/readyz` and `/metrics`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import structlog
import uvloop
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from twoway import metrics
from twoway.broker import Consumer, Publisher, ReconnectDelay, connect
from twoway.settings import TwowaySettings
from twoway.storage import Document, database, mongo_client, ping
from twoway.topology import declare_exchanges
from twoway.tracing import trace_requests

log = structlog.get_logger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]

READY_CHECKS = web.AppKey("ready_checks", dict[str, ReadyCheck])
AMQP_CONNECTION = web.AppKey("amqp_connection", AbstractRobustConnection)
PUBLISHER = web.AppKey("publisher", Publisher)
MONGO_CLIENT = web.AppKey("mongo_client", AsyncMongoClient[Document])
MONGO_DB = web.AppKey("mongo_db", AsyncDatabase[Document])


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    results = {name: await check() for name, check in request.app[READY_CHECKS].items()}
    ready = all(results.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": results},
        status=200 if ready else 503,
    )


async def _metrics(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def create_base_app(
    *, middlewares: Sequence[Middleware] = (), client_max_size: int = 1024**2
) -> web.Application:
    """An application with `/healthz`, `/readyz` (every registered check) and `/metrics`, and a
    trace span per request (`twoway.tracing`) around `middlewares`."""
    app = web.Application(
        middlewares=[trace_requests, *middlewares], client_max_size=client_max_size
    )
    app[READY_CHECKS] = {}
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


def amqp_context(settings: TwowaySettings, service: str) -> CleanupContext:
    """Opens the robust AMQP connection and a confirming publisher; declares the exchanges."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        reconnect = ReconnectDelay(settings.reconnect_interval, settings.reconnect_jitter)
        connection = await connect(settings.amqp_url, service, reconnect)
        publisher = await Publisher.open(connection, settings.publish_timeout)
        await declare_exchanges(publisher.channel)
        app[AMQP_CONNECTION] = connection
        app[PUBLISHER] = publisher
        reconnects = metrics.BROKER_RECONNECTS.labels(service=service)
        connection.reconnect_callbacks.add(lambda *_: reconnects.inc())

        async def broker_ready() -> bool:
            return publisher.ready

        app[READY_CHECKS]["broker"] = broker_ready
        log.info("broker_connected")
        yield
        await connection.close()

    return context


def mongo_context(
    settings: TwowaySettings, service: str, *, ready_check: bool = True
) -> CleanupContext:
    """Opens the MongoDB client. `ready_check=False`: the service stays ready without the
    database (ingress, whose MO path never touches it)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        client = mongo_client(settings, service)
        app[MONGO_CLIENT] = client
        app[MONGO_DB] = database(client, settings)

        async def database_ready() -> bool:
            return await ping(client)

        if ready_check:
            app[READY_CHECKS]["database"] = database_ready
        yield
        await client.close()

    return context


def run_service(app: web.Application, settings: TwowaySettings, port: int) -> None:
    """Serve `app` on uvloop until SIGINT/SIGTERM, then shut down gracefully."""
    log.info("service_starting", host=settings.host, port=port)
    web.run_app(
        app,
        host=settings.host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=10.0,
        loop=uvloop.new_event_loop(),
    )
    log.info("service_stopped")


ConsumerFactory = Callable[[web.Application], Awaitable[Consumer[Any]]]


def consumer_context(build: ConsumerFactory, grace: float) -> CleanupContext:
    """Starts the consumer `build` makes; on shutdown stops it and lets in-flight work finish."""

    async def context(_app: web.Application) -> AsyncIterator[None]:
        consumer = await build(_app)
        await consumer.start()
        log.info("consuming", queue=consumer.queue_name)
        yield
        await consumer.stop(grace)
        log.info("consumer_stopped", queue=consumer.queue_name)

    return context


async def open_consumer_channel(app: web.Application, prefetch: int) -> AbstractChannel:
    """A channel of its own for consuming, with the prefetch from settings."""
    channel = await app[AMQP_CONNECTION].channel()
    await channel.set_qos(prefetch_count=prefetch)
    return channel
