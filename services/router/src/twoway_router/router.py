"""The router: for each inbound SMS, decide who answers it, and dispatch it.

In order, for each SMS (`Router.route`):
1. dedupe: a gateway's repeated post of an SMS already taken is dropped (`twoway.dedupe`);
2. compliance: STOP / START / HELP are answered by the router itself (`compliance`);
   then an answer: an SMS from a number an adapter asked a question (`context.ask`) goes to the
   adapter's waiting handler, whatever it says (`twoway.conversations`);
3. matching: the in-memory handler table (`twoway.routing.RoutingTable`) picks the handler and
   the SMS goes to its adapter's queue;
4. unmatched: counted, recorded, and given the configured fallback (`unmatched`).

SMS from one sender go through these steps one at a time, in queue order (`KeyedSequencer`),
so "STOP" followed by "ECHO hi" is never routed the other way round; SMS from different senders
are handled concurrently, up to the prefetch. The handler table is reloaded when an adapter
announces a change on `sms.control`, and every `registry_refresh_seconds` as a safety net.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog

from twoway import metrics
from twoway.broker import Publisher, repeat_headers
from twoway.consumed import Delivery
from twoway.conversations import ConversationStore, route_answer
from twoway.dedupe import DedupeStore, dedupe_key
from twoway.messages import (
    AnyMessage,
    HandlerRegistration,
    HandlersChanged,
    InboundSMS,
    derive_message_id,
)
from twoway.ordering import KeyedSequencer
from twoway.registry import HandlerRegistry
from twoway.routing import FilterError, RoutingTable, validate_registration
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    HEADER_HANDLER,
    HEADER_REASON,
    UNMATCHED_QUEUE,
)
from twoway_router.compliance import ROUTER_NAME, Compliance, send_sms
from twoway_router.settings import RouterSettings, UnmatchedFallback
from twoway_router.unmatched import UnmatchedRecord, choose_fallback

log = structlog.get_logger(__name__)


def valid_registrations(registrations: list[HandlerRegistration]) -> list[HandlerRegistration]:
    """The registrations whose filters compile; the others are logged and left out."""
    valid = []
    for registration in registrations:
        try:
            validate_registration(registration)
        except FilterError as error:
            log.error(
                "handler_filter_invalid",
                adapter=registration.adapter,
                handler=registration.handler,
                field=error.field,
                error=str(error),
            )
        else:
            valid.append(registration)
    return valid


class Router:
    def __init__(
        self,
        settings: RouterSettings,
        registry: HandlerRegistry,
        publisher: Publisher,
        compliance: Compliance,
        dedupe: DedupeStore,
        unmatched: UnmatchedRecord,
        conversations: ConversationStore | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._publisher = publisher
        self._compliance = compliance
        self._dedupe = dedupe
        self._unmatched = unmatched
        self._conversations = conversations
        self._reload_lock = asyncio.Lock()
        self._senders = KeyedSequencer()
        self.table = RoutingTable([])

    async def reload(self) -> None:
        async with self._reload_lock:
            registrations = valid_registrations(await self._registry.load_all())
            self.table = RoutingTable(registrations)
        log.info("handler_table_loaded", handlers=len(self.table))

    async def apply(self, message: AnyMessage) -> None:
        if isinstance(message, HandlersChanged):
            await self.reload()

    async def route(self, message: InboundSMS, delivery: Delivery) -> None:
        async with self._senders.hold(message.sender):
            if not await self._first_copy(message):
                return
            if await self._compliance.handle(message, repeat=delivery.may_repeat):
                return
            if self._conversations is not None and await route_answer(
                self._conversations, self._publisher, message, delivery
            ):
                return  # an open conversation outranks every keyword handler
            started = time.perf_counter()
            registration = self.table.match(message)
            metrics.ROUTING_SECONDS.observe(time.perf_counter() - started)
            if registration is None:
                await self._unmatched_fallback(message, delivery)
            else:
                await self._dispatch(registration, message, delivery)

    async def _first_copy(self, message: InboundSMS) -> bool:
        """False when `message` is a gateway's repeated post of an SMS already taken."""
        key = dedupe_key(
            message,
            id_retention=timedelta(seconds=self._settings.dedupe_id_retention_seconds),
            content_window=timedelta(seconds=self._settings.dedupe_window_seconds),
        )
        if key is None or await self._dedupe.claim(key, message.message_id):
            return True
        metrics.DUPLICATES.labels(gateway=message.gateway_id).inc()
        log.info(
            "sms_duplicate_dropped",
            gateway_id=message.gateway_id,
            gateway_message_id=message.gateway_message_id,
        )
        return False

    async def _dispatch(
        self,
        registration: HandlerRegistration,
        message: InboundSMS,
        delivery: Delivery,
    ) -> None:
        await self._publisher.forward(
            delivery,
            exchange=ADAPTERS_EXCHANGE,
            routing_key=registration.adapter,
            headers={HEADER_HANDLER: registration.handler, **repeat_headers(delivery.may_repeat)},
        )
        metrics.ROUTED.labels(adapter=registration.adapter).inc()
        log.info(
            "sms_routed",
            adapter=registration.adapter,
            handler=registration.handler,
            keyword=message.keyword,
        )

    async def _unmatched_fallback(self, message: InboundSMS, delivery: Delivery) -> None:
        fallback = choose_fallback(self._settings.unmatched_fallbacks, message)
        metrics.UNMATCHED.inc()
        log.warning(
            "sms_unmatched",
            keyword=message.keyword,
            gateway_id=message.gateway_id,
            recipient=message.recipient,
            fallback=fallback.action,
        )
        await self._unmatched.record(message, fallback)
        await self._apply_fallback(fallback, message, delivery)
        metrics.UNMATCHED_FALLBACKS.labels(action=fallback.action).inc()

    async def _apply_fallback(
        self, fallback: UnmatchedFallback, message: InboundSMS, delivery: Delivery
    ) -> None:
        if fallback.action == "reply":
            reply = message.reply(
                fallback.text,
                message_id=derive_message_id(message.message_id, ROUTER_NAME, "unmatched"),
                adapter=ROUTER_NAME,
            )
            await send_sms(self._publisher, reply, repeat=delivery.may_repeat)
            return
        reason = f"no handler matched keyword {message.keyword!r}"
        if fallback.action == "handler":
            registration = self.table.registration(fallback.adapter, fallback.handler)
            if registration is not None:
                await self._dispatch(registration, message, delivery)
                return
            reason += f"; fallback handler {fallback.adapter}.{fallback.handler} is not registered"
            log.error(
                "fallback_handler_missing", adapter=fallback.adapter, handler=fallback.handler
            )
        await self._park(delivery, reason)

    async def _park(self, delivery: Delivery, reason: str) -> None:
        await self._publisher.forward(
            delivery,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=UNMATCHED_QUEUE,
            headers={HEADER_REASON: reason},
        )
