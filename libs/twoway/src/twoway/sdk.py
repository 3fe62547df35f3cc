"""The adapter SDK: write an adapter as a few decorated async functions.

    adapter = Adapter("echo")

    @adapter.handler({"keyword": "ECHO"})
    async def echo(context: HandlerContext) -> None:
        await context.reply(context.message.text.partition(" ")[2])

    if __name__ == "__main__":
        adapter.main()

At start-up the adapter registers its handlers in the handler registry (MongoDB) and tells every
router through `sms.control`; then it consumes its own queue, `adapter.<name>`, and calls the
handler the router chose. A handler's replies are confirmed by the broker before the inbound SMS is
acked, so a crash in between redelivers the SMS rather than losing the reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from pydantic import Field

from twoway import metrics
from twoway.broker import Consumer, Publisher, PublishFailed, Reject
from twoway.logs import configure_logging
from twoway.messages import HandlerRegistration, HandlersChanged, InboundSMS, OutboundSMS
from twoway.phone import normalise_phone
from twoway.registry import HandlerRegistry
from twoway.routing import validate_registration
from twoway.service import (
    MONGO_DB,
    PUBLISHER,
    amqp_context,
    consumer_context,
    create_base_app,
    mongo_context,
    open_consumer_channel,
    run_service,
)
from twoway.settings import WorkerSettings
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    CONTROL_EXCHANGE,
    HEADER_HANDLER,
    OUTBOUND_EXCHANGE,
    adapter_queue,
    declare_work_queue,
    outbound_key,
)

log = structlog.get_logger(__name__)


class AdapterSettings(WorkerSettings):
    """Settings of an adapter process (`TWOWAY_` environment variables)."""

    port: int = Field(default=9110, ge=0, le=65535)


class HandlerContext:
    """What a handler gets: the inbound SMS, and ways to answer it."""

    def __init__(
        self, adapter: str, message: InboundSMS, publisher: Publisher, settings: AdapterSettings
    ) -> None:
        self.adapter = adapter
        self.message = message
        self._publisher = publisher
        self._settings = settings
        self.log = log.bind(adapter=adapter)

    @property
    def words(self) -> list[str]:
        """The words of the SMS after its keyword."""
        return self.message.text.split()[1:]

    async def reply(self, text: str) -> OutboundSMS:
        """Answer the sender, through the gateway the SMS came from."""
        outbound = self.message.reply(text, adapter=self.adapter)
        await self._publish(outbound)
        return outbound

    async def send(
        self, to: str, text: str, *, gateway_id: str | None = None, sender: str | None = None
    ) -> OutboundSMS:
        """Send an SMS to any number (normalised to E.164), as part of handling this one."""
        outbound = OutboundSMS(
            correlation_id=self.message.correlation_id or self.message.message_id,
            trace=self.message.trace,
            to=normalise_phone(to, self._settings.default_region),
            from_=sender,
            text=text,
            gateway_id=gateway_id,
            adapter=self.adapter,
        )
        await self._publish(outbound)
        return outbound

    async def _publish(self, outbound: OutboundSMS) -> None:
        await self._publisher.publish(
            outbound, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key(outbound.gateway_id)
        )


Handler = Callable[[HandlerContext], Awaitable[None]]


@dataclass(frozen=True)
class RegisteredHandler:
    registration: HandlerRegistration
    function: Handler


class Adapter:
    """An adapter: a named set of SMS event handlers, run as one worker process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, RegisteredHandler] = {}

    def handler(
        self,
        filter: Mapping[str, str | list[str] | dict[str, str]] | None = None,
        *,
        name: str | None = None,
        priority: int = 0,
        gateway_id: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for SMS that match `filter` (empty: every SMS).

        An invalid filter raises `FilterError` here, at import time, naming the field.
        """

        def register(function: Handler) -> Handler:
            registration = HandlerRegistration(
                adapter=self.name,
                handler=name or function.__name__,
                filter=dict(filter or {}),
                priority=priority,
                gateway_id=gateway_id,
            )
            validate_registration(registration)
            if registration.handler in self._handlers:
                raise ValueError(
                    f"adapter {self.name!r} already has a handler {registration.handler!r}"
                )
            self._handlers[registration.handler] = RegisteredHandler(registration, function)
            return function

        return register

    @property
    def registrations(self) -> Sequence[HandlerRegistration]:
        return [handler.registration for handler in self._handlers.values()]

    async def dispatch(
        self,
        message: InboundSMS,
        handler_name: str,
        publisher: Publisher,
        settings: AdapterSettings,
    ) -> None:
        """Run the handler called `handler_name` on `message`."""
        registered = self._handlers.get(handler_name)
        if registered is None:
            raise Reject(f"adapter {self.name!r} has no handler {handler_name!r}")
        context = HandlerContext(self.name, message, publisher, settings)
        with structlog.contextvars.bound_contextvars(adapter=self.name, handler=handler_name):
            await registered.function(context)
            log.info("sms_handled")
        metrics.HANDLED.labels(adapter=self.name).inc()

    async def register_handlers(self, registry: HandlerRegistry, publisher: Publisher) -> None:
        """Write this adapter's handler set to the registry and tell the routers."""
        await registry.ensure_indexes()
        await registry.replace_adapter_handlers(self.name, self.registrations)
        try:
            await publisher.publish(
                HandlersChanged(adapter=self.name),
                exchange=CONTROL_EXCHANGE,
                routing_key="",
                mandatory=False,
            )
        except PublishFailed as error:
            log.warning("handlers_changed_not_announced", error=str(error))
        log.info("handlers_registered", handlers=[h.handler for h in self.registrations])

    def create_app(self, settings: AdapterSettings) -> web.Application:
        app = create_base_app()
        app.cleanup_ctx.append(amqp_context(settings, f"adapter-{self.name}"))
        app.cleanup_ctx.append(mongo_context(settings, f"adapter-{self.name}"))

        async def registration(app: web.Application) -> AsyncIterator[None]:
            await self.register_handlers(HandlerRegistry(app[MONGO_DB]), app[PUBLISHER])
            yield

        async def build_consumer(app: web.Application) -> Consumer[InboundSMS]:
            channel = await open_consumer_channel(app, settings.prefetch)
            queue = await declare_work_queue(
                channel,
                adapter_queue(self.name),
                exchange=ADAPTERS_EXCHANGE,
                binding_keys=[self.name],
            )
            publisher = app[PUBLISHER]

            async def handle(message: InboundSMS, incoming: AbstractIncomingMessage) -> None:
                handler_name = str(incoming.headers.get(HEADER_HANDLER, ""))
                await self.dispatch(message, handler_name, publisher, settings)

            return Consumer(queue, InboundSMS, handle, publisher)

        app.cleanup_ctx.append(registration)
        app.cleanup_ctx.append(consumer_context(build_consumer, settings.shutdown_grace))
        return app

    def main(self, settings: AdapterSettings | None = None) -> None:
        """Run this adapter until SIGINT/SIGTERM (the entry point of an adapter process)."""
        settings = settings or AdapterSettings()
        configure_logging(settings, f"adapter-{self.name}")
        run_service(self.create_app(settings), settings, settings.port)
