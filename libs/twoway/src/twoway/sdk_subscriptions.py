"""The SDK's subscriptions and notifications (MobileFirst `createEventSource`, `subscribeSMS`,
`unsubscribeSMS`, `getSMSSubscription` and notifications to every subscriber).

    news = adapter.event_source("News", description="Morning headlines")

    @news.on_subscribe
    async def welcome(context: AdapterContext, subscription: Subscription) -> None:
        await context.send(subscription.phone, "Welcome to the news!")

An adapter declares its event sources (`Adapter.event_source`); at start-up they are written to
the event-source registry, so the api, `/subscribeSMS` and JOIN/LEAVE accept them. Whoever
subscribes or unsubscribes a number (an SMS, the web servlet, the api, the adapter itself), the
source's callbacks run in the adapter process, from its `adapter.<name>.subscriptions` queue.

`AdapterContext` is what an adapter can do outside any one SMS: subscribe, unsubscribe, look up,
`notify` every subscriber of an event source (a broadcast) and `send` to one number. It is
`adapter.context` while the adapter runs, the first argument of every callback, and what
`HandlerContext`'s own subscribe/unsubscribe/get_subscription/notify use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime

import structlog
from aiohttp import web
from pydantic import JsonValue

from twoway.broadcasts import Broadcast, Broadcasts, open_subscription_services
from twoway.broker import Consumer, Publisher, repeat_headers
from twoway.consumed import Delivery
from twoway.messages import (
    EventSource,
    OutboundSMS,
    Subscription,
    SubscriptionChanged,
    new_message_id,
)
from twoway.phone import normalise_phone
from twoway.service import (
    MONGO_DB,
    PUBLISHER,
    CleanupContext,
    consumer_context,
    open_consumer_channel,
)
from twoway.settings import WorkerSettings
from twoway.subscriptions import Subscriptions
from twoway.topology import (
    OUTBOUND_EXCHANGE,
    declare_subscription_events_queue,
    outbound_key,
)

log = structlog.get_logger(__name__)


class AdapterContext:
    """Subscriptions, notifications and sends, for an adapter outside any one SMS."""

    def __init__(
        self,
        adapter: str,
        publisher: Publisher,
        subscriptions: Subscriptions,
        broadcasts: Broadcasts,
        default_region: str,
    ) -> None:
        self.adapter = adapter
        self._publisher = publisher
        self._subscriptions = subscriptions
        self._broadcasts = broadcasts
        self._default_region = default_region

    async def subscribe(
        self,
        event_source: str,
        phone: str,
        *,
        gateway_id: str | None = None,
        user_id: str | None = None,
        alias: str | None = None,
        options: dict[str, JsonValue] | None = None,
    ) -> tuple[Subscription, bool]:
        """Subscribe `phone` to `event_source` (idempotent): the subscription, and whether this
        call created it. Raises `UnknownEventSource`, or `InvalidPhoneNumber`."""
        return await self._subscriptions.subscribe(
            event_source,
            phone,
            gateway_id=gateway_id,
            user_id=user_id,
            alias=alias,
            options=options,
        )

    async def unsubscribe(self, event_source: str, phone: str) -> bool:
        """Unsubscribe `phone`; whether it was subscribed."""
        return await self._subscriptions.unsubscribe(event_source, phone)

    async def get_subscription(self, event_source: str, phone: str) -> Subscription | None:
        return await self._subscriptions.get_subscription(event_source, phone)

    async def event_sources(self) -> list[EventSource]:
        """Every declared event source (this adapter's and the others')."""
        return await self._subscriptions.sources.list()

    async def notify(
        self,
        event_source: str,
        text: str,
        *,
        gateway_id: str | None = None,
        sender: str | None = None,
        not_after: datetime | None = None,
        correlation_id: str | None = None,
        broadcast_id: str | None = None,
    ) -> Broadcast:
        """Send `text` to every subscriber of `event_source` (not to opted-out numbers): the
        broadcaster fans it out; follow it with the api's `GET /broadcasts/{id}`. With a
        `broadcast_id` given (a derived one: `twoway.messages.derive_message_id`), asking again
        is the same broadcast, not a second one (see `Broadcasts.request`)."""
        return await self._broadcasts.request(
            event_source,
            text,
            gateway_id=gateway_id,
            sender=sender,
            not_after=not_after,
            correlation_id=correlation_id,
            broadcast_id=broadcast_id,
        )

    async def send(
        self,
        to: str,
        text: str,
        *,
        gateway_id: str | None = None,
        sender: str | None = None,
        correlation_id: str | None = None,
        trace: Mapping[str, str] | None = None,
        message_id: str | None = None,
        repeat: bool = False,
    ) -> OutboundSMS:
        """Send an SMS to one number (normalised to E.164). Its `message_id` is a new one unless
        given: give a derived one (`twoway.messages.derive_message_id`) to send once however
        often the code that sends it runs, and `repeat` when this run may be such a repeat
        (outbound then checks its record of sent messages first)."""
        outbound = OutboundSMS(
            message_id=message_id or new_message_id(),
            correlation_id=correlation_id,
            trace=dict(trace or {}),
            to=normalise_phone(to, self._default_region),
            from_=sender,
            text=text,
            gateway_id=gateway_id,
            adapter=self.adapter,
        )
        await self._publisher.publish(
            outbound,
            exchange=OUTBOUND_EXCHANGE,
            routing_key=outbound_key(outbound.gateway_id, outbound.priority),
            headers=repeat_headers(repeat),
        )
        return outbound


SubscriptionCallback = Callable[[AdapterContext, Subscription], Awaitable[None]]


class DeclaredEventSource:
    """An event source of an adapter, with its optional on-subscribe / on-unsubscribe callbacks
    (decorators)."""

    def __init__(self, adapter: str, name: str, description: str) -> None:
        self.source = EventSource(
            name=f"{adapter}.{name}", adapter=adapter, description=description
        )
        self.subscribed: SubscriptionCallback | None = None
        self.unsubscribed: SubscriptionCallback | None = None

    @property
    def name(self) -> str:
        """The full name, `Adapter.Source`: what subscribe and notify take."""
        return self.source.name

    def on_subscribe(self, callback: SubscriptionCallback) -> SubscriptionCallback:
        self.subscribed = callback
        return callback

    def on_unsubscribe(self, callback: SubscriptionCallback) -> SubscriptionCallback:
        self.unsubscribed = callback
        return callback


ADAPTER_CONTEXT = web.AppKey("adapter_context", AdapterContext)


def subscription_contexts(
    adapter: str, sources: Mapping[str, DeclaredEventSource], settings: WorkerSettings
) -> list[CleanupContext]:
    """The adapter's cleanup contexts for subscriptions: one declares `sources` in the registry
    and builds the `AdapterContext` (`app[ADAPTER_CONTEXT]`); when a source has callbacks,
    another consumes the adapter's subscription events and runs them."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        publisher = app[PUBLISHER]
        subscriptions, broadcasts = await open_subscription_services(
            app[MONGO_DB], publisher, settings.default_region
        )
        await subscriptions.sources.replace_adapter_sources(
            adapter, [declared.source for declared in sources.values()]
        )
        app[ADAPTER_CONTEXT] = AdapterContext(
            adapter, publisher, subscriptions, broadcasts, settings.default_region
        )
        yield

    async def build_callbacks(app: web.Application) -> Consumer[SubscriptionChanged]:
        channel = await open_consumer_channel(app, settings.prefetch)
        queue = await declare_subscription_events_queue(channel, adapter)
        services = app[ADAPTER_CONTEXT]

        async def handle(event: SubscriptionChanged, _delivery: Delivery) -> None:
            declared = sources.get(event.subscription.event_source)
            if declared is None:
                log.info("subscription_event_ignored", event_source=event.subscription.event_source)
                return
            changed = declared.subscribed if event.change == "subscribed" else declared.unsubscribed
            if changed is not None:
                await changed(services, event.subscription)

        return Consumer(
            queue,
            SubscriptionChanged,
            handle,
            app[PUBLISHER],
            max_deliveries=settings.max_deliveries,
        )

    contexts: list[CleanupContext] = [context]
    if any(declared.subscribed or declared.unsubscribed for declared in sources.values()):
        contexts.append(consumer_context(build_callbacks, settings.shutdown_grace))
    return contexts
