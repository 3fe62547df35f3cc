"""The adapter SDK: write an adapter as a few decorated async functions.

    adapter = Adapter("echo")

    @adapter.handler({"keyword": "ECHO"})
    async def echo(context: HandlerContext) -> None:
        await context.reply(context.message.text.partition(" ")[2])

    if __name__ == "__main__":
        adapter.main()

At start-up the adapter declares and consumes its own queue, `adapter.<name>`, then registers its
handlers in the handler registry (MongoDB) and tells every router through `sms.control` (in this
order, so that a router never routes to a queue that does not exist yet); it calls the handler the
router chose. A handler's replies are confirmed by the broker before the inbound SMS is
acked, so a crash in between redelivers the SMS rather than losing the reply.

Handlers call back-ends with `context.http` (`twoway.sdk_http`), hold conversations with
`context.ask` and `@adapter.step` (`twoway.conversations`), and run under the failure policy of
`twoway.handler_policy`: retried later, then one polite reply and a dead letter
(docs/write-an-adapter.md).

An adapter that wants to know what became of the SMS it sent registers `@adapter.on_delivery`:
it then also consumes `adapter.<name>.events`, the `DeliveryEvent`s outbound and ingress publish
for its messages (key `<status>.<name>` on `sms.events`), under the same failure policy (retried
later, then a dead letter; no reply to anyone). An adapter without it declares no such queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import aiohttp
import structlog
from aiohttp import web
from pydantic import Field, JsonValue

from twoway import metrics
from twoway.broadcasts import Broadcast
from twoway.broker import Consumer, Publisher, PublishFailed, Reject, repeat_headers
from twoway.consumed import Delivery
from twoway.conversations import (
    AdapterConversations,
    Conversation,
    ConversationSettings,
    ConversationStore,
    answered_conversation,
)
from twoway.handler_policy import FailurePolicy, HandlerPolicySettings
from twoway.logs import configure_logging
from twoway.messages import (
    DeliveryEvent,
    HandlerRegistration,
    HandlersChanged,
    InboundSMS,
    OutboundSMS,
    Subscription,
    derive_message_id,
)
from twoway.ordering import KeyedSequencer
from twoway.registry import HandlerRegistry
from twoway.routing import validate_registration
from twoway.sdk_http import HTTP_SESSION, BackendClient, BackendClientSettings, http_session_context
from twoway.sdk_subscriptions import (
    ADAPTER_CONTEXT,
    AdapterContext,
    DeclaredEventSource,
    subscription_contexts,
)
from twoway.service import (
    MONGO_DB,
    PUBLISHER,
    ConsumerFactory,
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
    OUTBOUND_EXCHANGE,
    adapter_queue,
    declare_delivery_events_queue,
    declare_work_queue,
    outbound_key,
)

log = structlog.get_logger(__name__)

ANNOUNCE_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
"""Seconds before each retry of a `HandlersChanged` announcement the broker did not confirm."""


class AdapterSettings(
    HandlerPolicySettings, BackendClientSettings, ConversationSettings, WorkerSettings
):
    """Settings of an adapter process (`TWOWAY_` environment variables); the failure policy's,
    the back-end client's and conversations' own fields are documented in their modules."""

    port: int = Field(default=9110, ge=0, le=65535)


def _policy_retry_delays(settings: AdapterSettings) -> list[int]:
    """The delay queues the failure policy parks messages in (seconds, ascending)."""
    return sorted(set(settings.handler_retry_delays))


class HandlerContext:
    """What a handler gets: the inbound SMS, and ways to answer it.

    Everything a handling sends (`reply`, `ask`, `send`, `notify`) gets an id derived from the
    SMS's id, the adapter, `scope` (the handler's name) and its place in the handling: 1st, 2nd,
    ... (`twoway.messages.derive_message_id`). A handling that runs again (the adapter died before
    acking the SMS, the broker redelivered it, the failure policy retries it) sends the same
    ids, marked as possible repeats when it knows it may be one (`repeat`), and outbound sends
    each id once. So a handler may reply first and fail later without the texter getting the
    reply twice, provided it sends one thing after another (two sends started together may swap
    ids between runs) and sends in the same order each time.
    """

    def __init__(
        self,
        adapter: str,
        message: InboundSMS,
        publisher: Publisher,
        settings: AdapterSettings,
        *,
        scope: Sequence[str],
        repeat: bool = False,
        http: aiohttp.ClientSession | None = None,
        conversations: AdapterConversations | None = None,
        conversation: Conversation | None = None,
        services: AdapterContext | None = None,
    ) -> None:
        self.adapter = adapter
        self.message = message
        self._scope = tuple(scope)
        self._repeat = repeat
        self._sent = 0
        self._publisher = publisher
        self._settings = settings
        self._services = services
        self._http = http
        self._conversations = conversations
        self.conversation = conversation
        """The conversation this SMS answers (see `ask`), else None."""

    @cached_property
    def http(self) -> BackendClient:
        """The adapter's HTTP client for back-end calls (see `twoway.sdk_http`)."""
        if self._http is None:
            raise RuntimeError("no HTTP session: run the adapter through Adapter.create_app")
        return BackendClient(self._http, self._settings, self.message)

    async def ask(
        self,
        question: str,
        *,
        next: str,
        state: Mapping[str, JsonValue] | None = None,
        ttl: float | None = None,
    ) -> OutboundSMS:
        """Reply with `question`; the sender's next SMS, whatever it says, goes to this adapter's
        handler `next` (usually a `step`), with `state` in `context.conversation.state`.
        Unanswered, the question expires after `ttl` seconds (default `conversation_ttl`)."""
        if self._conversations is None:
            raise RuntimeError("no conversation store: run the adapter through Adapter.create_app")
        outbound = self.message.reply(question, message_id=self._next_id(), adapter=self.adapter)
        await self._conversations.ask(
            self.message,
            question_id=outbound.message_id,
            next_handler=next,
            state=state,
            ttl=ttl,
            answering=self.conversation,
        )
        await self._publish(outbound)
        return outbound

    @property
    def services(self) -> AdapterContext:
        """What the adapter can do beyond this SMS (`twoway.sdk_subscriptions.AdapterContext`)."""
        if self._services is None:
            raise RuntimeError("no adapter context: run the adapter through Adapter.create_app")
        return self._services

    async def subscribe(
        self,
        event_source: str,
        phone: str | None = None,
        *,
        user_id: str | None = None,
        alias: str | None = None,
        options: dict[str, JsonValue] | None = None,
    ) -> tuple[Subscription, bool]:
        """Subscribe `phone` (default: the sender) to `event_source`, to be notified through
        the gateway this SMS came from; returns the subscription and whether it is new."""
        return await self.services.subscribe(
            event_source,
            phone or self.message.sender,
            gateway_id=self.message.gateway_id,
            user_id=user_id,
            alias=alias,
            options=options,
        )

    async def unsubscribe(self, event_source: str, phone: str | None = None) -> bool:
        """Unsubscribe `phone` (default: the sender); whether it was subscribed."""
        return await self.services.unsubscribe(event_source, phone or self.message.sender)

    async def get_subscription(
        self, event_source: str, phone: str | None = None
    ) -> Subscription | None:
        """`phone`'s (default: the sender's) subscription to `event_source`, or None."""
        return await self.services.get_subscription(event_source, phone or self.message.sender)

    async def notify(self, event_source: str, text: str) -> Broadcast:
        """Send `text` to every subscriber of `event_source` (see `AdapterContext.notify`)."""
        return await self.services.notify(
            event_source,
            text,
            correlation_id=self.message.correlation_id or self.message.message_id,
            broadcast_id=self._next_id(),
        )

    @property
    def words(self) -> list[str]:
        """The words of the SMS after its keyword."""
        return self.message.text.split()[1:]

    async def reply(self, text: str) -> OutboundSMS:
        """Answer the sender, through the gateway the SMS came from."""
        outbound = self.message.reply(text, message_id=self._next_id(), adapter=self.adapter)
        await self._publish(outbound)
        return outbound

    async def send(
        self, to: str, text: str, *, gateway_id: str | None = None, sender: str | None = None
    ) -> OutboundSMS:
        """Send an SMS to any number (normalised to E.164), as part of handling this one."""
        return await self.services.send(
            to,
            text,
            gateway_id=gateway_id,
            sender=sender,
            correlation_id=self.message.correlation_id or self.message.message_id,
            trace=self.message.trace,
            message_id=self._next_id(),
            repeat=self._repeat,
        )

    def _next_id(self) -> str:
        """The id of the next thing this handling sends."""
        self._sent += 1
        return derive_message_id(
            self.message.message_id, self.adapter, *self._scope, str(self._sent)
        )

    async def _publish(self, outbound: OutboundSMS) -> None:
        await self._publisher.publish(
            outbound,
            exchange=OUTBOUND_EXCHANGE,
            routing_key=outbound_key(outbound.gateway_id, outbound.priority),
            headers=repeat_headers(self._repeat),
        )


Handler = Callable[[HandlerContext], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryContext:
    """What an `on_delivery` callback gets beside the event."""

    adapter: str
    services: AdapterContext
    """Subscriptions, notifications and sends (`twoway.sdk_subscriptions.AdapterContext`)."""
    http: BackendClient
    """The adapter's back-end client (`twoway.sdk_http`); its calls carry the event's ids."""


DeliveryCallback = Callable[[DeliveryEvent, DeliveryContext], Awaitable[None]]


async def _nothing_to_undo(_reason: str) -> None:
    """A delivery event given up on answers no one: its dead letter keeps it."""


@dataclass(frozen=True)
class RegisteredHandler:
    function: Handler
    registration: HandlerRegistration | None
    """None for a conversation `step`: it receives answers, never SMS by filter."""
    timeout: float | None = None


class Adapter:
    """An adapter: a named set of SMS event handlers, run as one worker process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, RegisteredHandler] = {}
        self._event_sources: dict[str, DeclaredEventSource] = {}
        self._on_delivery: DeliveryCallback | None = None
        self._context: AdapterContext | None = None

    def event_source(self, name: str, *, description: str = "") -> DeclaredEventSource:
        """Declare the event source `<adapter>.<name>` (MobileFirst `createEventSource`); its
        `on_subscribe` / `on_unsubscribe` decorators register callbacks."""
        declared = DeclaredEventSource(self.name, name, description)
        if declared.name in self._event_sources:
            raise ValueError(f"adapter {self.name!r} already has an event source {name!r}")
        self._event_sources[declared.name] = declared
        return declared

    @property
    def context(self) -> AdapterContext:
        """Subscriptions, notifications and sends outside any one SMS, while the adapter runs."""
        if self._context is None:
            raise RuntimeError(f"adapter {self.name!r} is not running")
        return self._context

    def handler(
        self,
        filter: Mapping[str, str | list[str] | dict[str, str]] | None = None,
        *,
        name: str | None = None,
        priority: int = 0,
        gateway_id: str | None = None,
        timeout: float | None = None,
        ordered: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for SMS that match `filter` (empty: every SMS).

        An invalid filter raises `FilterError` here, at import time, naming the field.
        `timeout` (seconds) overrides the `handler_timeout` setting for this handler.
        `ordered`: one sender's SMS are handled one at a time, in the order they arrived (in
        each replica of the adapter; see the README's "Ordering").
        """

        def register(function: Handler) -> Handler:
            registration = HandlerRegistration(
                adapter=self.name,
                handler=name or function.__name__,
                filter=dict(filter or {}),
                priority=priority,
                gateway_id=gateway_id,
                ordered=ordered,
            )
            validate_registration(registration)
            self._add(registration.handler, RegisteredHandler(function, registration, timeout))
            return function

        return register

    def step(
        self, *, name: str | None = None, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as a conversation step: it takes no SMS by filter,
        only answers to `context.ask(..., next=<its name>)`."""

        def register(function: Handler) -> Handler:
            self._add(name or function.__name__, RegisteredHandler(function, None, timeout))
            return function

        return register

    def on_delivery(self, callback: DeliveryCallback) -> DeliveryCallback:
        """Register the decorated function for the `DeliveryEvent`s of the SMS this adapter sent
        (replies, `context.send`, `adapter.context.send`; not broadcasts, whose events the
        broadcaster counts): `accepted`, `retrying`, `sent`, `unknown`, `delivered`, `failed`,
        `expired`.

        It is called as `callback(event, context)` (a `DeliveryContext`), with `adapter`,
        `outbound_id` and `status` bound in the log context; the event is acked once it returns.
        One that raises or outlasts `handler_timeout` follows the handlers' failure policy:
        retried later, then dead-lettered to `adapter.<name>.events.dead`.
        """
        if self._on_delivery is not None:
            raise ValueError(f"adapter {self.name!r} already has an on_delivery callback")
        self._on_delivery = callback
        return callback

    def _add(self, name: str, handler: RegisteredHandler) -> None:
        if name in self._handlers:
            raise ValueError(f"adapter {self.name!r} already has a handler {name!r}")
        self._handlers[name] = handler

    @property
    def registrations(self) -> Sequence[HandlerRegistration]:
        return [h.registration for h in self._handlers.values() if h.registration is not None]

    async def dispatch(self, context: HandlerContext, handler_name: str) -> None:
        """Run the handler called `handler_name` on `context.message`."""
        registered = self._handlers.get(handler_name)
        if registered is None:
            raise Reject(f"adapter {self.name!r} has no handler {handler_name!r}")
        with structlog.contextvars.bound_contextvars(adapter=self.name, handler=handler_name):
            await registered.function(context)
            log.info("sms_handled")
        metrics.HANDLED.labels(adapter=self.name).inc()

    async def register_handlers(
        self,
        registry: HandlerRegistry,
        publisher: Publisher,
        *,
        retry_delays: Sequence[float] = ANNOUNCE_RETRY_DELAYS,
    ) -> None:
        """Write this adapter's handler set to the registry and tell the routers; an announcement
        the broker does not confirm is retried after each of `retry_delays`, then logged (the
        routers' reload timer picks the set up then)."""
        await registry.ensure_indexes()
        await registry.replace_adapter_handlers(self.name, self.registrations)
        log.info("handlers_registered", handlers=[h.handler for h in self.registrations])
        for retry_in in (*retry_delays, None):
            try:
                await publisher.publish(
                    HandlersChanged(adapter=self.name),
                    exchange=CONTROL_EXCHANGE,
                    routing_key="",
                    mandatory=False,
                )
                return
            except PublishFailed as error:
                if retry_in is None:
                    log.warning("handlers_changed_not_announced", error=str(error))
                else:
                    log.info("handlers_changed_retry", retry_in=retry_in, error=str(error))
                    await asyncio.sleep(retry_in)

    def create_app(self, settings: AdapterSettings) -> web.Application:
        app = create_base_app()
        app.cleanup_ctx.append(amqp_context(settings, f"adapter-{self.name}"))
        app.cleanup_ctx.append(mongo_context(settings, f"adapter-{self.name}"))
        app.cleanup_ctx.append(http_session_context(settings, f"adapter-{self.name}"))
        app.cleanup_ctx.extend(subscription_contexts(self.name, self._event_sources, settings))

        async def expose_context(app: web.Application) -> AsyncIterator[None]:
            self._context = app[ADAPTER_CONTEXT]
            yield
            self._context = None

        app.cleanup_ctx.append(expose_context)

        async def registration(app: web.Application) -> AsyncIterator[None]:
            await self.register_handlers(HandlerRegistry(app[MONGO_DB]), app[PUBLISHER])
            yield

        async def build_consumer(app: web.Application) -> Consumer[InboundSMS]:
            store = ConversationStore(app[MONGO_DB])
            await store.ensure_indexes()
            channel = await open_consumer_channel(app, settings.prefetch)
            queue = await declare_work_queue(
                channel,
                adapter_queue(self.name),
                exchange=ADAPTERS_EXCHANGE,
                binding_keys=[self.name],
                retry_delays=_policy_retry_delays(settings),
            )
            publisher = app[PUBLISHER]
            policy = FailurePolicy(self.name, queue.name, settings, publisher)
            conversations = AdapterConversations(store, self.name, self._handlers, settings)
            senders = KeyedSequencer()  # ordered handlers: one sender's SMS one at a time

            async def handle(message: InboundSMS, delivery: Delivery) -> None:
                handler_name = delivery.handler or ""
                answered = answered_conversation(message, delivery)
                repeat = delivery.may_repeat

                def context(
                    scope: Sequence[str], conversation: Conversation | None = None
                ) -> HandlerContext:
                    return HandlerContext(
                        self.name,
                        message,
                        publisher,
                        settings,
                        scope=scope,
                        repeat=repeat,
                        http=app[HTTP_SESSION],
                        conversations=conversations,
                        conversation=conversation,
                        services=app[ADAPTER_CONTEXT],
                    )

                async def run() -> None:
                    conversation = await conversations.load(answered) if answered else None
                    if answered and conversation is None:
                        raise Reject("the conversation this SMS answers is no longer open")
                    await self.dispatch(context([handler_name], conversation), handler_name)
                    if answered:
                        await conversations.close(answered)

                async def give_up(_reason: str) -> None:
                    if answered:
                        await conversations.close(answered)
                    if settings.failure_reply:
                        # Its own scope: its id is none of the handler's replies'.
                        await context([handler_name, "failure_reply"]).reply(settings.failure_reply)

                registered = self._handlers.get(handler_name)
                registration = registered.registration if registered else None
                ordered = registration is not None and registration.ordered
                async with senders.hold(message.sender if ordered else None):
                    await policy.run(
                        delivery,
                        run,
                        handler_timeout=registered.timeout if registered else None,
                        give_up=give_up,
                    )

            return Consumer(
                queue, InboundSMS, handle, publisher, max_deliveries=settings.max_deliveries
            )

        if self._on_delivery is not None:
            # Before the SMS consumer: the events of its first replies find the queue.
            build_events = self._delivery_consumer(self._on_delivery, settings)
            app.cleanup_ctx.append(consumer_context(build_events, settings.shutdown_grace))
        # The queue before the handlers: routers route to it as soon as they learn of them.
        app.cleanup_ctx.append(consumer_context(build_consumer, settings.shutdown_grace))
        app.cleanup_ctx.append(registration)
        return app

    def _delivery_consumer(
        self, callback: DeliveryCallback, settings: AdapterSettings
    ) -> ConsumerFactory:
        """Builds the consumer of `adapter.<name>.events` that runs `callback` under the policy."""

        async def build(app: web.Application) -> Consumer[DeliveryEvent]:
            channel = await open_consumer_channel(app, settings.prefetch)
            queue = await declare_delivery_events_queue(
                channel, self.name, _policy_retry_delays(settings)
            )
            publisher = app[PUBLISHER]
            policy = FailurePolicy(self.name, queue.name, settings, publisher)

            async def handle(event: DeliveryEvent, delivery: Delivery) -> None:
                context = DeliveryContext(
                    self.name,
                    app[ADAPTER_CONTEXT],
                    BackendClient(app[HTTP_SESSION], settings, event),
                )

                async def run() -> None:
                    await callback(event, context)
                    log.info("delivery_event_handled")

                with structlog.contextvars.bound_contextvars(
                    adapter=self.name, outbound_id=event.outbound_id, status=event.status
                ):
                    await policy.run(delivery, run, handler_timeout=None, give_up=_nothing_to_undo)

            return Consumer(
                queue, DeliveryEvent, handle, publisher, max_deliveries=settings.max_deliveries
            )

        return build

    def main(self, settings: AdapterSettings | None = None) -> None:
        """Run this adapter until SIGINT/SIGTERM (the entry point of an adapter process)."""
        settings = settings or AdapterSettings()
        configure_logging(settings, f"adapter-{self.name}")
        run_service(self.create_app(settings), settings, settings.port)
